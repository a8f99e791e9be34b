package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/daemon"
	"github.com/litefs-dev/litefs/internal/testenv"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/replica"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Retention deletes what no restore within the window needs: snapshots
// older than the newest one taken before the window, and the segments it
// covers; never the newest snapshot and its chain.
func TestRetention(t *testing.T) {
	e := newEnv(t, "1h")
	e.extra = ""
	clock := &fakeClock{now: time.Now()}
	cfg := e.config()
	cfg.DBs[0].Replica.Retention = config.Duration(time.Hour)
	dm := daemon.New(cfg, testLogger(t))
	dm.Now = clock.Now
	if err := dm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.dm = dm
	t.Cleanup(func() {
		if e.dm == dm {
			e.stop()
		}
	})
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (x)`)
	var snaps []ltx.TXID
	snapshot := func() {
		for i := 0; i < 5; i++ {
			mustExec(t, db, `INSERT INTO t VALUES (?)`, i)
		}
		e.flush()
		txid, err := e.db().Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, txid)
		e.flush()
		clock.Add(40 * time.Minute)
	}
	for i := 0; i < 4; i++ { // snapshots at 0, 40, 80 and 120 minutes
		snapshot()
	}
	// Now = 160 min; the window starts at 100 min: the newest snapshot at or
	// before it is the one at 80 min (snaps[2]). Older ones go, with the
	// segments they cover.
	mustExec(t, db, `INSERT INTO t VALUES ('last')`)
	snapshot()
	ctx := context.Background()
	left, err := e.client().LTXFiles(ctx, replica.SnapshotLevel, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kept []ltx.TXID
	for _, s := range left {
		kept = append(kept, s.MaxTXID)
	}
	if len(kept) == 0 || kept[0] != snaps[2] {
		t.Fatalf("snapshots kept %v of %v; want from %d on", kept, snaps, snaps[2])
	}
	segs, err := e.client().LTXFiles(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if s.MaxTXID <= snaps[2] {
			t.Fatalf("segment %s-%s is covered by the base snapshot %s and should be gone", s.MinTXID, s.MaxTXID, snaps[2])
		}
	}
	// Every object boundary in the window still restores, and the latest is
	// live.
	bounds := append([]ltx.TXID{}, kept...)
	for _, s := range segs {
		bounds = append(bounds, s.MaxTXID)
	}
	for _, txid := range bounds {
		if _, err := replica.Restore(ctx, e.client(), replica.RestoreOptions{OutputPath: filepath.Join(t.TempDir(), "r.db"), TXID: txid}); err != nil {
			t.Fatalf("restore to %d inside the window: %v", txid, err)
		}
	}
	e.verify(db)
}

// `litefs mount -exec CMD` runs the command once the mount is ready and
// exits with its status; `litefs ltx` lists what the replica holds.
func TestExecAndLTXCommand(t *testing.T) {
	e := newEnv(t, "0s")
	bin := filepath.Join(testenv.Binaries(t), "litefs")
	cfgPath := filepath.Join(e.root, "litefs.toml")
	writeFile(t, cfgPath, e.configText())
	script := `test -d ` + e.mountDir + ` && grep -q " ` + e.mountDir + ` " /proc/mounts && exit 7`
	var out bytes.Buffer
	cmd := exec.Command(bin, "mount", "-config", cfgPath, "-exec", script)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("litefs mount -exec: %v, want exit status 7 from the command\n%s", err, out.String())
	}
	if isMounted(e.mountDir) {
		t.Fatal("still mounted after -exec's command exited")
	}

	e.start()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (x)`)
	mustExec(t, db, `INSERT INTO t VALUES (1)`)
	pos := e.flush()
	e.stop()
	ltxOut, err := exec.Command(bin, "ltx", "-config", cfgPath, filepath.Join(e.mountDir, "db")).CombinedOutput()
	if err != nil {
		t.Fatalf("litefs ltx: %v\n%s", err, ltxOut)
	}
	lines := strings.Split(strings.TrimSpace(string(ltxOut)), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "LEVEL") {
		t.Fatalf("litefs ltx printed:\n%s", ltxOut)
	}
	if !strings.Contains(string(ltxOut), "9      0000000000000001  0000000000000001") ||
		!strings.Contains(string(ltxOut), pos.TXID.String()) {
		t.Fatalf("litefs ltx does not list the snapshot and TXID %s:\n%s", pos.TXID, ltxOut)
	}
}

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// `restore -integrity-check` checks the temp file before the rename; a
// failed check leaves nothing at the target.
func TestRestoreIntegrityCheck(t *testing.T) {
	e := newEnv(t, "0s")
	e.start()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (x)`)
	mustExec(t, db, `INSERT INTO t VALUES (1)`)
	e.flush()
	out := filepath.Join(t.TempDir(), "r.db")
	res, err := exec.Command(filepath.Join(testenv.Binaries(t), "restore"), "-integrity-check", "-v", "-o", out, "file://"+e.replicaDir).CombinedOutput()
	if err != nil || !strings.Contains(string(res), "integrity check ok") {
		t.Fatalf("restore -integrity-check: %v\n%s", err, res)
	}
	integrity(t, openDB(t, out, "mode=ro"))

	bad := filepath.Join(t.TempDir(), "bad.db")
	_, err = replica.Restore(context.Background(), e.client(), replica.RestoreOptions{OutputPath: bad,
		Verify: func(string) error { return errors.New("not ok") }})
	if err == nil || !strings.Contains(err.Error(), "not ok") {
		t.Fatalf("restore with a failing check: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(bad)); len(ents) != 0 {
		t.Fatalf("a failed check left %v behind", ents)
	}
}
