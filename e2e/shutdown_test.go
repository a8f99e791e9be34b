package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/s3test"
)

// SIGTERM while S3 fails the first PUT and half of all requests for 5 s: the daemon keeps retrying within shutdown-timeout (30 s) instead of
// leaving everything staged, exits 0, and the replica holds every commit.
func TestShutdownRetriesUploads(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	p := s3test.StartProxy(t, srv.Endpoint)
	e := newS3Env(t, srv, "db", "1h") // nothing uploads before the shutdown
	e.endpoint = p.URL
	cmd := e.startProcess()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
	for i := 0; i < 200; i++ {
		mustExec(t, db, `INSERT INTO t (v) VALUES (?)`, strings.Repeat("x", 100+i))
	}
	want := dump(t, db)
	db.Close()

	// The first PUTs of the shutdown fail for certain: as many as the SDK's
	// own attempts (3), so the flush itself fails and the daemon's retry
	// path is taken. Half of all requests fail for 5 s.
	first := p.Inject(s3test.Fault{Method: "PUT", Times: 3, Action: s3test.Status, Status: http.StatusInternalServerError})
	half := p.Inject(s3test.Fault{Match: fraction(0.5), Times: -1, Action: s3test.Status, Status: http.StatusServiceUnavailable})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // the length of the fault window, not a wait for the daemon
	p.Remove(half)
	select {
	case <-e.done:
	case <-time.After(40 * time.Second):
		t.Fatalf("litefs mount did not exit within shutdown-timeout:\n%s", e.logs)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("litefs mount exited %d, want 0:\n%s", code, e.logs)
	}
	log := e.logs.String()
	for _, w := range []string{"retrying until shutdown-timeout", "shut down cleanly"} {
		if !strings.Contains(log, w) {
			t.Fatalf("log does not say %q:\n%s", w, log)
		}
	}
	if p.Applied(first) == 0 {
		t.Fatal("the shutdown's first PUT did not fail: the test proved nothing")
	}
	t.Logf("requests failed by the 50%% fault: %d", p.Applied(half))
	out, _ := e.restore(0)
	got := openDB(t, out, "mode=ro")
	integrity(t, got)
	if d := dump(t, got); d != want {
		t.Fatalf("restored content differs from what the app committed:\nrestored: %.300s\nwant:     %.300s", d, want)
	}
	if n := queryInt(t, filepath.Join(e.dataDir, "db"), `SELECT count(*) FROM t`); n != 200 {
		t.Fatalf("volume has %d rows, want 200", n)
	}
}
