package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/checksum"

	"github.com/litefs-dev/litefs/internal/daemon"
	"github.com/litefs-dev/litefs/internal/testenv"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/replica"
)

// Stop and start the daemon ten times between write bursts: one unbroken
// history, no new snapshot, restore = live. Then a change to the database
// behind the mount while stopped makes the next start take a new snapshot
// 1-<N+1> and say why.
func TestResumeAcrossRestarts(t *testing.T) {
	e := newEnv(t, "1s")
	var logs testenv.LogBuffer
	for round := 0; round < 10; round++ {
		e.startLogged(&logs)
		db := e.open("_journal_mode=WAL")
		mustExec(t, db, `CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)`)
		for i := 0; i < 20; i++ {
			mustExec(t, db, `INSERT INTO t (v) VALUES (?)`, fmt.Sprint(round, i))
		}
		if round == 9 {
			e.verify(db)
		}
		db.Close()
		e.stop()
	}
	e.checkOneHistory(1)
	if n := strings.Count(logs.String(), "resuming replication"); n != 9 {
		t.Fatalf("resumed %d times in 9 restarts:\n%s", n, logs.String())
	}

	// Behind the mount, while stopped.
	direct := openDB(t, filepath.Join(e.dataDir, "db"), "_journal_mode=WAL")
	mustExec(t, direct, `INSERT INTO t (v) VALUES ('behind your back')`)
	direct.Close()
	max := ltx.TXID(e.replicaMaxTXID())
	logs.Reset()
	e.startLogged(&logs)
	if !strings.Contains(logs.String(), "written behind litefs's back") {
		t.Fatalf("the start did not say why it took a snapshot:\n%s", logs.String())
	}
	db := e.open("_journal_mode=WAL")
	e.verify(db)
	snaps, err := e.client().LTXFiles(context.Background(), replica.SnapshotLevel, 0)
	if err != nil {
		t.Fatal(err)
	}
	if last := snaps[len(snaps)-1]; last.MinTXID != 1 || last.MaxTXID != max+1 {
		t.Fatalf("newest snapshot %s-%s, want a new history 1-%d", last.MinTXID, last.MaxTXID, max+1)
	}
	e.checkOneHistory(2)
	var n int
	if err := openDB(t, e.restoreLatest(), "mode=ro").QueryRow(`SELECT count(*) FROM t WHERE v = 'behind your back'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("restore lacks the change made behind the mount: %d %v", n, err)
	}
}

func (e *env) restoreLatest() string {
	out, _ := e.restore(0)
	return out
}

// startLogged starts the daemon with its log captured.
func (e *env) startLogged(w *testenv.LogBuffer) *daemon.Daemon {
	e.t.Helper()
	dm := daemon.New(e.config(), logTo(w))
	if err := dm.Start(context.Background()); err != nil {
		e.t.Fatalf("start daemon: %v\n%s", err, w.String())
	}
	e.dm = dm
	e.t.Cleanup(func() {
		if e.dm == dm {
			e.stop()
		}
	})
	return dm
}

// A snapshot taken while a writer commits every 10 ms is the state at its
// TXID.
func TestSnapshotWhileWriting(t *testing.T) {
	e := newEnv(t, "0s")
	size := 256 << 20
	if testing.Short() {
		size = 16 << 20
	}
	// Fill it natively before the mount: the start-up snapshot takes it.
	native := openDB(t, filepath.Join(e.dataDir, "db"), "_journal_mode=WAL&_synchronous=OFF")
	mustExec(t, native, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	for filled := 0; filled < size; filled += 8 << 20 {
		tx, _ := native.Begin()
		for i := 0; i < 128; i++ {
			mustExec(t, tx, `INSERT INTO t (v) VALUES (randomblob(65536))`)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	native.Close()
	e.start()
	db := e.open("_journal_mode=WAL")
	e.flush()

	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			case <-tick.C:
			}
			if _, err := db.Exec(`UPDATE t SET v = randomblob(2000) WHERE id = ?`, i%64+1); err != nil {
				done <- err
				return
			}
		}
	}()
	for start := e.db().Pos().TXID; e.db().Pos().TXID < start+3; {
		time.Sleep(5 * time.Millisecond) // until the writer is under way
	}
	txid, err := e.db().Snapshot(context.Background())
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("writer during the snapshot: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	pos := e.flush()
	if pos.TXID <= txid {
		t.Fatalf("no commits during the snapshot (snapshot %d, now %d)", txid, pos.TXID)
	}
	// The snapshot alone restores the state at its TXID.
	plan, err := replica.Plan(context.Background(), e.client(), txid, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 1 || plan[0].Level != replica.SnapshotLevel || plan[0].MaxTXID != txid {
		t.Fatalf("restore to %d plans %v, want the new snapshot alone", txid, plan)
	}
	out, rpos := e.restore(txid)
	sum, err := checksum.DatabaseChecksum(out)
	if err != nil || sum != rpos.PostApplyChecksum {
		t.Fatalf("snapshot restore checksum %s (%v), recorded %s", sum, err, rpos.PostApplyChecksum)
	}
	integrity(t, openDB(t, out, "mode=ro"))
	// Latest state: checksums only (the rows are 256 MiB of blobs).
	pos = e.flush()
	if live := e.liveChecksum(); live != pos.Checksum {
		t.Fatalf("live checksum %s, tracked %s", live, pos.Checksum)
	}
	if out, rpos := e.restore(0); rpos.PostApplyChecksum != pos.Checksum {
		t.Fatalf("restored %s, live %s", rpos.PostApplyChecksum, pos.Checksum)
	} else if sum, err := checksum.DatabaseChecksum(out); err != nil || sum != pos.Checksum {
		t.Fatalf("restored file checksum %s (%v), live %s", sum, err, pos.Checksum)
	}
}

// Metrics scraped during a run: txid advances, lag goes to ~0 once writes
// stop, staging bytes return to 0.
func TestMetrics(t *testing.T) {
	e := newEnv(t, "200ms")
	dm := e.start()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (x)`)
	scrape := func() map[string]float64 {
		resp, err := http.Get("http://" + dm.HTTPAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		m := map[string]float64{}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "litefs_") {
				i := strings.LastIndexByte(line, ' ')
				v, _ := strconv.ParseFloat(line[i+1:], 64)
				m[line[:i]] = v
			}
		}
		return m
	}
	before := scrape()
	for i := 0; i < 100; i++ {
		mustExec(t, db, `INSERT INTO t VALUES (?)`, i)
	}
	during := scrape()
	if during[`litefs_db_txid{db="db"}`] < before[`litefs_db_txid{db="db"}`]+100 {
		t.Fatalf("txid %v then %v after 100 commits", before[`litefs_db_txid{db="db"}`], during[`litefs_db_txid{db="db"}`])
	}
	// Every commit is WAL writes through the daemon: timed per operation.
	if during[`litefs_fuse_op_seconds_count{op="write"}`] < 100 || during[`litefs_fuse_op_seconds_bucket{op="write",le="+Inf"}`] < 100 {
		t.Fatalf("litefs_fuse_op_seconds{op=write} counted %v writes after 100 commits", during[`litefs_fuse_op_seconds_count{op="write"}`])
	}
	if during[`litefs_staging_bytes{db="db"}`] == 0 {
		t.Fatalf("staging empty right after 100 commits with a 200ms sync interval: %v", during)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := scrape()
		if m[`litefs_replica_lag_seconds{db="db"}`] == 0 && m[`litefs_staging_bytes{db="db"}`] == 0 &&
			m[`litefs_replica_txid{db="db"}`] == m[`litefs_db_txid{db="db"}`] {
			if m[`litefs_upload_total{db="db",result="ok"}`] == 0 || m[`litefs_fenced{db="db"}`] != 0 {
				t.Fatalf("metrics after catching up: %v", m)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag never reached 0: %v", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SIGTERM during a write burst: after exit every committed transaction is in
// the replica (restore = what the app saw committed).
func TestSIGTERMDuringWrites(t *testing.T) {
	e := newEnv(t, "1h") // nothing uploads before the shutdown does
	cmd := e.startProcess()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
	committed := make(chan int, 1)
	go func() {
		n := 0
		for ; ; n++ {
			if _, err := db.Exec(`INSERT INTO t (v) VALUES ('x')`); err != nil {
				break
			}
			if n == 300 {
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		committed <- n
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("litefs mount exited: %v", err)
	}
	n := <-committed
	db.Close()
	out, _ := e.restore(0)
	var got int
	if err := openDB(t, out, "mode=ro").QueryRow(`SELECT count(*) FROM t`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got < n {
		t.Fatalf("replica holds %d rows, the app saw %d commits succeed", got, n)
	}
	if isMounted(e.mountDir) {
		t.Fatal("still mounted after SIGTERM")
	}
}

func isMounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mounts")
	return strings.Contains(string(b), " "+dir+" ")
}
