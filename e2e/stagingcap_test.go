package e2e

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/staging"
)

// stagedBytes is what the staging directory of db holds on disk.
func stagedBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil && fi.Name() != "pos" && fi.Name() != "overflow" {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// 20 MiB of commits against a 2 MiB staging-max-bytes while S3 hangs:
// staging never holds more than the cap plus one record, no commit fails
// or waits for S3, the gap is logged with its TXID range and counted, and
// once S3 is back a new snapshot (streamed: the database is far larger
// than the cap) makes restore = live.
func TestStagingCapDuringOutage(t *testing.T) {
	const (
		capBytes = 2 << 20
		rowBytes = 10 << 10
		rows     = 2048 // 20 MiB
	)
	srv := s3test.StartVersityGW(t)
	e := newS3Env(t, srv, "db", "100ms")
	e.repExtra = `staging-max-bytes = "2MiB"`
	e.startProcess()
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	waitFor(t, 30*time.Second, "the table in the replica", func() bool {
		return metric(t, e.httpAddr, "litefs_replica_txid") == metric(t, e.httpAddr, "litefs_db_txid")
	})

	srv.Pause(t)
	t.Cleanup(func() { srv.Resume(t) })
	dir := filepath.Join(e.dataDir, staging.DirName, "db")
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n := stagedBytes(dir); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	var slowest time.Duration
	for i := 0; i < rows; i++ {
		t0 := time.Now()
		if _, err := db.Exec(`INSERT INTO t (v) VALUES (randomblob(?))`, rowBytes); err != nil {
			t.Fatalf("commit %d with S3 hung and staging at its cap: %v", i, err)
		}
		slowest = max(slowest, time.Since(t0))
	}
	close(stop)
	<-sampled

	// One record: a 10 KiB row touches a few pages (the row's overflow
	// pages, the leaf, the header page); 8 is generous at 4 KiB a page.
	limit := int64(capBytes) + staging.RecordSize(4096, 8)
	t.Logf("staging peak %d bytes (cap %d, limit %d); slowest commit %v", peak.Load(), capBytes, limit, slowest)
	if peak.Load() > limit {
		t.Fatalf("staging peaked at %d bytes, over the cap %d plus one record", peak.Load(), capBytes)
	}
	if slowest > 2*time.Second {
		t.Fatalf("a commit took %v with S3 hung: commits must not wait for S3", slowest)
	}
	if !strings.Contains(e.logs.String(), "staging reached staging-max-bytes") {
		t.Fatalf("no overflow logged:\n%s", e.logs)
	}

	srv.Resume(t)
	waitFor(t, 120*time.Second, "the replica caught up once S3 is back", func() bool {
		return metric(t, e.httpAddr, "litefs_replica_txid") == metric(t, e.httpAddr, "litefs_db_txid") &&
			metric(t, e.httpAddr, "litefs_staging_bytes") == 0
	})
	log := e.logs.String()
	for _, want := range []string{"streamed a snapshot to the replica", "history gap", "from_txid=", "to_txid="} {
		if !strings.Contains(log, want) {
			t.Fatalf("log does not say %q:\n%s", want, log)
		}
	}
	if n := metric(t, e.httpAddr, "litefs_history_gaps_total"); n != 1 {
		t.Fatalf("litefs_history_gaps_total = %v, want 1", n)
	}
	out, _ := e.restore(0)
	got := openDB(t, out, "mode=ro")
	integrity(t, got)
	if d, want := dump(t, got), dump(t, db); d != want {
		t.Fatalf("restore differs from live after the overflow")
	}
	if n := queryInt(t, got, `SELECT count(*) FROM t`); n != rows {
		t.Fatalf("restored %d rows, want %d", n, rows)
	}
}

// A database larger than half of staging-max-bytes is never staged whole:
// its first snapshot, and one asked for with POST /debug/snapshot while that
// one is pending, are streamed to the replica; the TXID the endpoint answers
// is the snapshot the replica holds.
func TestSnapshotLargerThanCapStreamed(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	e := newS3Env(t, srv, "db", "1s")
	e.repExtra = `staging-max-bytes = "1MiB"`
	plain := openDB(t, filepath.Join(e.dataDir, "db"), "_journal_mode=WAL")
	mustExec(t, plain, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	for i := 0; i < 30; i++ {
		mustExec(t, plain, `INSERT INTO t (v) VALUES (randomblob(100000))`) // 3 MiB
	}
	plain.Close()
	e.startProcess()
	resp, err := http.Post("http://"+e.httpAddr+"/debug/snapshot", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var txid ltx.TXID
	if resp.StatusCode != 200 {
		t.Fatalf("snapshot: %d %s", resp.StatusCode, body)
	}
	f := strings.Fields(string(body))
	if len(f) != 2 {
		t.Fatalf("snapshot answered %q", body)
	}
	if txid, err = ltx.ParseTXID(f[1]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the answered snapshot in the replica", func() bool {
		snaps, err := e.client().LTXFiles(context.Background(), 9, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snaps {
			if s.MaxTXID == txid {
				return true
			}
		}
		return false
	})
	if !strings.Contains(e.logs.String(), "streamed a snapshot to the replica") {
		t.Fatalf("no snapshot was streamed:\n%s", e.logs)
	}
	if n := stagedBytes(filepath.Join(e.dataDir, staging.DirName, "db")); n > 1<<20 {
		t.Fatalf("staging holds %d bytes, over the 1 MiB cap", n)
	}
	db := e.open("_journal_mode=WAL")
	out, _ := e.restore(0)
	if d, want := dump(t, openDB(t, out, "mode=ro")), dump(t, db); d != want {
		t.Fatal("restore of the streamed snapshot differs from live")
	}
}
