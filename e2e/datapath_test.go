package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/litefs-dev/litefs/internal/checksum"

	"github.com/superfly/ltx"
)

// Single-row commits through the mount, restored and compared with live.
func TestSingleRowCommits(t *testing.T) {
	for _, sync := range []string{"NORMAL", "FULL"} {
		t.Run(sync, func(t *testing.T) {
			e := newEnv(t, "1s")
			e.start()
			db := e.open("_journal_mode=WAL&_synchronous=" + sync)
			mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
			for i := 0; i < 1000; i++ {
				mustExec(t, db, `INSERT INTO t (v) VALUES (?)`, fmt.Sprintf("row %d", i))
			}
			e.verify(db)
			if got := e.db().Pos().TXID; got < 1001 {
				t.Fatalf("TXID %d after 1,001 commits", got)
			}
		})
	}
}

// A transaction larger than the page cache spills and rewrites frames in
// place; a spilled transaction rolled back must never be replicated.
func TestSpillsAndRollback(t *testing.T) {
	e := newEnv(t, "1s")
	e.start()
	db := e.open("_journal_mode=WAL&_cache_size=10")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	for i := 0; i < 200; i++ {
		mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(500))`)
	}
	for round := 0; round < 3; round++ {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for pass := 0; pass < 5; pass++ {
			mustExec(t, tx, `UPDATE t SET v = randomblob(500 + ?)`, pass)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	e.verify(db)

	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for pass := 0; pass < 5; pass++ {
		mustExec(t, tx, `UPDATE t SET v = randomblob(700)`)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		mustExec(t, db, `UPDATE t SET v = randomblob(100) WHERE id = ?`, i+1)
	}
	e.verify(db)
}

// Checkpoints of every mode, auto-checkpoints, journal_size_limit, WAL
// restarts and the WAL's unlink on last close.
func TestCheckpointsAndRestarts(t *testing.T) {
	e := newEnv(t, "1s")
	e.start()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `PRAGMA wal_autocheckpoint=20`)
	mustExec(t, db, `PRAGMA journal_size_limit=8192`)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	modes := []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"}
	for i := 0; i < 40; i++ {
		for j := 0; j < 10; j++ {
			mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(300))`)
		}
		mustExec(t, db, fmt.Sprintf(`PRAGMA wal_checkpoint(%s)`, modes[i%len(modes)]))
	}
	e.verify(db)

	// The last connection closes: SQLite checkpoints and unlinks the WAL.
	db.Close()
	db = e.open("_journal_mode=WAL")
	for i := 0; i < 50; i++ {
		mustExec(t, db, `UPDATE t SET v = randomblob(200) WHERE id = ?`, i+1)
	}
	e.verify(db)
}

// One writer and several readers at once, one of them holding a long read
// transaction that keeps the WAL from being reset.
func TestWriterAndReaders(t *testing.T) {
	e := newEnv(t, "0s")
	e.start()
	w := e.open("_journal_mode=WAL")
	mustExec(t, w, `CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)`)
	mustExec(t, w, `INSERT INTO t (v) VALUES (0)`)

	long := e.open("_journal_mode=WAL")
	ltx, err := long.Begin()
	if err != nil {
		t.Fatal(err)
	}
	var before int
	if err := ltx.QueryRow(`SELECT count(*) FROM t`).Scan(&before); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	stop := make(chan struct{})
	for r := 0; r < 3; r++ {
		rd := e.open("_journal_mode=WAL")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var n int
				if err := rd.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < 500; i++ {
		mustExec(t, w, `INSERT INTO t (v) VALUES (?)`, i)
		if i%100 == 0 {
			mustExec(t, w, `PRAGMA wal_checkpoint(PASSIVE)`)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("reader: %v", err)
	}
	var still int
	if err := ltx.QueryRow(`SELECT count(*) FROM t`).Scan(&still); err != nil || still != before {
		t.Fatalf("long read transaction saw %d rows, then %d (%v)", before, still, err)
	}
	ltx.Rollback()
	e.verify(w)
}

// VACUUM, page sizes, a database that grows and shrinks. Each database is
// created through the mount in rollback mode, then switched to WAL.
func TestPageSizesVacuumGrowShrink(t *testing.T) {
	for _, ps := range []int{1024, 4096, 65536} {
		t.Run(fmt.Sprint(ps), func(t *testing.T) {
			e := newEnv(t, "1s")
			e.start()
			db := e.open("")
			db.SetMaxOpenConns(1)
			mustExec(t, db, fmt.Sprintf(`PRAGMA page_size=%d`, ps))
			mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
			mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(100))`)
			mustExec(t, db, `PRAGMA journal_mode=WAL`)
			for i := 0; i < 300; i++ {
				mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(2000))`)
			}
			e.verify(db)
			mustExec(t, db, `DELETE FROM t WHERE id > 20`)
			mustExec(t, db, `VACUUM`)
			e.verify(db)
			var pages int
			if err := db.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
				t.Fatal(err)
			}
			if got, _ := e.restoredPageCount(t); got != pages {
				t.Fatalf("restored %d pages, live %d", got, pages)
			}
			for i := 0; i < 100; i++ {
				mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(3000))`)
			}
			e.verify(db)
		})
	}
}

func (e *env) restoredPageCount(t *testing.T) (int, error) {
	out, _ := e.restore(0)
	db := openDB(t, out, "mode=ro")
	var n int
	err := db.QueryRow(`PRAGMA page_count`).Scan(&n)
	return n, err
}

// With sync-interval 0 and one transaction per object, restoring at every
// object boundary gives exactly the checksum recorded for that TXID: no
// transaction skipped or doubled.
func TestRestoreEveryBoundary(t *testing.T) {
	e := newEnv(t, "0s")
	e.start()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
	want := map[ltx.TXID]ltx.Checksum{}
	snap := e.flush()
	want[snap.TXID] = snap.Checksum
	for i := 0; i < 60; i++ {
		switch i % 4 {
		case 0, 1:
			mustExec(t, db, `INSERT INTO t (v) VALUES (?)`, strings.Repeat("x", i*37))
		case 2:
			mustExec(t, db, `UPDATE t SET v = v || 'y' WHERE id % 3 = ?`, i%3)
		case 3:
			mustExec(t, db, `DELETE FROM t WHERE id = ?`, i/2)
		}
		p := e.flush()
		if _, dup := want[p.TXID]; dup {
			t.Fatalf("commit %d produced no new TXID (%d)", i, p.TXID)
		}
		want[p.TXID] = p.Checksum
	}
	infos, err := e.client().LTXFiles(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 60 {
		t.Fatalf("%d level-0 objects for 60 transactions uploaded one by one", len(infos))
	}
	prev := snap.TXID
	for _, info := range infos {
		if info.MinTXID != prev+1 || info.MaxTXID != info.MinTXID {
			t.Fatalf("object %s-%s does not follow %s", info.MinTXID, info.MaxTXID, prev)
		}
		prev = info.MaxTXID
		out, pos := e.restore(info.MaxTXID)
		sum, err := checksum.DatabaseChecksum(out)
		if err != nil {
			t.Fatal(err)
		}
		if pos.TXID != info.MaxTXID || sum != want[info.MaxTXID] || pos.PostApplyChecksum != sum {
			t.Fatalf("restore at %s: got %s/%s, recorded %s", info.MaxTXID, pos.TXID, sum, want[info.MaxTXID])
		}
		integrity(t, openDB(t, out, "mode=ro"))
	}
}

var _ = sql.ErrNoRows
