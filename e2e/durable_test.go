package e2e

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica"
)

// replicaCount restores the replica's latest state and counts t's rows (0
// while the replica is empty).
func (e *s3env) replicaCount(t *testing.T) int64 {
	t.Helper()
	out := filepath.Join(t.TempDir(), "restored.db")
	if _, err := replica.Restore(context.Background(), e.client(), replica.RestoreOptions{OutputPath: out}); errors.Is(err, replica.ErrNoReplica) {
		return 0
	} else if err != nil {
		t.Fatalf("restore: %v", err)
	}
	return queryInt(t, out, `SELECT count(*) FROM t`)
}

func readyz(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// execAsync runs one statement on db and reports when it returned.
func execAsync(db *sql.DB, q string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := db.Exec(q)
		done <- err
	}()
	return done
}

// durability = "replica": every commit returns only once the replica holds
// it, even at synchronous=NORMAL and a 1 s sync-interval (the waiting commit
// uploads at once); with S3 hung a commit does not return, /readyz goes
// unready after readiness-max-lag and litefs_commits_waiting says 1; once
// S3 is back it returns, and the replica holds it.
func TestDurableReplica(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	e := newS3Env(t, srv, "db", "1s")
	e.repExtra = `durability = "replica"`
	e.httpExtra = `readiness-max-lag = "1s"`
	e.startProcess()
	db := e.open("_journal_mode=WAL&_synchronous=NORMAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
	var slowest time.Duration
	for i := 1; i <= 5; i++ {
		t0 := time.Now()
		mustExec(t, db, `INSERT INTO t (v) VALUES ('durable')`)
		slowest = max(slowest, time.Since(t0))
		if n := e.replicaCount(t); n != int64(i) {
			t.Fatalf("commit %d returned, yet the replica holds %d rows", i, n)
		}
	}
	if slowest >= time.Second {
		t.Fatalf("a durable commit took %v: it waited for the 1 s sync-interval instead of uploading at once", slowest)
	}
	t.Logf("slowest durable commit with S3 up: %v", slowest)

	srv.Pause(t)
	t.Cleanup(func() { srv.Resume(t) })
	done := execAsync(db, `INSERT INTO t (v) VALUES ('waits for S3')`)
	waitFor(t, 10*time.Second, "/readyz not ready while the commit waits", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the commit returned (%v) while S3 was hung", err)
		default:
		}
		return readyz(t, e.httpAddr) == 503
	})
	if n := metric(t, e.httpAddr, "litefs_commits_waiting"); n != 1 {
		t.Fatalf("litefs_commits_waiting = %v, want 1", n)
	}
	srv.Resume(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the waiting commit failed once S3 was back: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the waiting commit did not return after S3 came back")
	}
	if n := e.replicaCount(t); n != 6 {
		t.Fatalf("replica holds %d rows after the waited commit, want 6", n)
	}
	waitFor(t, 10*time.Second, "/readyz ready again", func() bool { return readyz(t, e.httpAddr) == 200 })
	if n := metric(t, e.httpAddr, "litefs_durable_commit_seconds_count"); n < 6 {
		t.Fatalf("litefs_durable_commit_seconds counted %v commits, want ≥ 6", n)
	}
}

// durability = "replica-on-fsync": with S3 hung a NORMAL commit returns at
// once, a FULL one waits until S3 is back (PRAGMA synchronous decides, per
// connection).
func TestDurableReplicaOnFsync(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	e := newS3Env(t, srv, "db", "1s")
	e.repExtra = `durability = "replica-on-fsync"`
	e.startProcess()
	normal := e.open("_journal_mode=WAL&_synchronous=NORMAL")
	normal.SetMaxOpenConns(1)
	mustExec(t, normal, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
	full := e.open("_journal_mode=WAL&_synchronous=FULL")
	full.SetMaxOpenConns(1)
	mustExec(t, full, `INSERT INTO t (v) VALUES ('full, S3 up')`)
	if n := e.replicaCount(t); n != 1 {
		t.Fatalf("a FULL commit returned, yet the replica holds %d rows", n)
	}

	srv.Pause(t)
	t.Cleanup(func() { srv.Resume(t) })
	t0 := time.Now()
	for i := 0; i < 20; i++ {
		mustExec(t, normal, `INSERT INTO t (v) VALUES ('normal, S3 hung')`)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("20 NORMAL commits took %v with S3 hung: they must not wait", d)
	}
	done := execAsync(full, `INSERT INTO t (v) VALUES ('full, S3 hung')`)
	select {
	case err := <-done:
		t.Fatalf("a FULL commit returned (%v) while S3 was hung", err)
	case <-time.After(1500 * time.Millisecond):
	}
	srv.Resume(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the FULL commit failed once S3 was back: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the FULL commit did not return after S3 came back")
	}
	if n := e.replicaCount(t); n != 22 {
		t.Fatalf("replica holds %d rows after the FULL commit, want 22 (everything before its fsync)", n)
	}
}

// A durable commit waits through a partition while another daemon takes
// the lapsed lease and writes the replica: when the partition heals, the
// first daemon is fenced and the waiting commit gets an error, never
// success.
func TestDurableCommitFencedGetsError(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	a := newS3Env(t, srv, "db", "0s")
	a.leaseTTL = "2s"
	a.repExtra = `durability = "replica"`
	pa := s3test.StartProxy(t, srv.Endpoint)
	a.endpoint = pa.URL
	a.start()
	adb := a.open("_journal_mode=WAL")
	adb.SetMaxOpenConns(1)
	mustExec(t, adb, `CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, v BLOB)`)
	insertRows(t, adb, "a", 5)

	cut := pa.Inject(s3test.Fault{Action: s3test.Reset, Times: -1})
	done := execAsync(adb, `INSERT INTO t (who) VALUES ('a, waiting')`)

	takeOverLapsedLease(t, srv, 5)
	select {
	case err := <-done:
		t.Fatalf("the waiting commit returned (%v) during the partition", err)
	default:
	}
	pa.Remove(cut)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the waiting commit returned success after its daemon was fenced")
		}
		t.Logf("the waiting commit failed as it must: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the waiting commit never returned after the partition healed")
	}
	if st, err := a.db().State(); st != litefs.StateStopped {
		t.Fatalf("first daemon not fenced: %v %v", st, err)
	}
	// Its shutdown says it is fenced and keeps the commit staged: expected.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.env.dm.Shutdown(ctx); err == nil || !strings.Contains(err.Error(), "fenced") {
		t.Fatalf("the fenced daemon's shutdown: %v", err)
	}
	a.env.dm = nil
}
