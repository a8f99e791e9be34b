package fs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// TestSQLiteWALHooks drives real SQLite through the mount and checks what the
// DB is handed against what reached the data dir.
func TestSQLiteWALHooks(t *testing.T) {
	bothPassthroughModes(t, testSQLiteWALHooks)
}

func testSQLiteWALHooks(t *testing.T, passthrough bool) {
	rec := newRecDB()
	data, mnt := mountT(t, passthrough, map[string]DB{"db": rec})
	realWAL := filepath.Join(data, "db-wal")
	c := startSQL(t, "file:"+filepath.Join(mnt, "db")+"?_journal_mode=WAL")

	// No checkpoints of our own making: the WAL only grows until we say so.
	c.must("PRAGMA wal_autocheckpoint=0")
	// A tiny page cache forces spills, so frames are rewritten in place.
	c.must("PRAGMA cache_size=5")
	c.must("CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB)")
	for i := 0; i < 30; i++ {
		c.must("INSERT INTO t(tag, v) VALUES ('" + strconv.Itoa(i) + "', randomblob(3000))")
	}
	c.must("BEGIN")
	for i := 0; i < 300; i++ {
		c.must("INSERT INTO t(tag, v) VALUES ('big', randomblob(2000))")
	}
	c.must("UPDATE t SET v = randomblob(100) WHERE id % 3 = 0")
	c.must("COMMIT")
	c.must("BEGIN")
	c.must("INSERT INTO t(tag, v) VALUES ('rolled back', randomblob(50000))")
	c.must("ROLLBACK")

	st, err := os.Stat(realWAL)
	if err != nil || st.Size() < 100_000 {
		t.Fatalf("real WAL: %v, %v: want a WAL of several hundred KiB", st, err)
	}
	rec.checkShadow(t, realWAL)
	if rec.count("write") < 100 || rec.count("sync") == 0 {
		t.Errorf("writes %d, syncs %d: want many writes and at least one sync", rec.count("write"), rec.count("sync"))
	}

	// TRUNCATE checkpoint: Setattr(size=0) on the WAL.
	mark := rec.len()
	c.must("PRAGMA wal_checkpoint(TRUNCATE)")
	var truncs []int64
	for _, op := range rec.since(mark) {
		if op.kind == "truncate" {
			truncs = append(truncs, op.size)
		}
	}
	if len(truncs) != 1 || truncs[0] != 0 {
		t.Errorf("checkpoint(TRUNCATE) arrived as truncates %v, want [0]", truncs)
	}
	rec.checkShadow(t, realWAL)

	// The WAL restarts from offset 0 with a new header.
	mark = rec.len()
	for i := 0; i < 5; i++ {
		c.must("INSERT INTO t(tag, v) VALUES ('after', randomblob(500))")
	}
	if ops := rec.since(mark); len(ops) == 0 || ops[0].kind != "write" || ops[0].off != 0 || ops[0].n != 32 {
		t.Errorf("first op after the restart: %+v, want the 32-byte header write at 0", ops[:min(len(ops), 1)])
	}
	rec.checkShadow(t, realWAL)
	integrityOK(t, c)

	// Closing the last connection checkpoints and unlinks the WAL.
	mark = rec.len()
	c.close()
	ops := rec.since(mark)
	if len(ops) == 0 || ops[len(ops)-1].kind != "remove" {
		t.Errorf("close: ops %+v, want a RemoveWAL last", ops)
	}
	if _, err := os.Stat(realWAL); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WAL after close: %v", err)
	}
	rec.checkShadow(t, realWAL)

	// Leaving WAL mode writes through a rollback journal.
	mark = rec.len()
	c2 := startSQL(t, "file:"+filepath.Join(mnt, "db"))
	if mode := c2.must("PRAGMA journal_mode=DELETE"); mode != "delete" {
		t.Fatalf("journal_mode=DELETE: %q", mode)
	}
	if n := countKind(rec.since(mark), "journal"); n == 0 {
		t.Errorf("PRAGMA journal_mode=DELETE created no journal seen by the DB: ops %+v", rec.since(mark))
	}
	c2.must("INSERT INTO t(tag) VALUES ('rollback mode')")
	integrityOK(t, c2)
	c2.close()
	t.Logf("ops: %d writes, %d syncs, %d truncates, %d removes, %d journals",
		rec.count("write"), rec.count("sync"), rec.count("truncate"), rec.count("remove"), rec.count("journal"))
}

func countKind(ops []recOp, kind string) int {
	n := 0
	for _, op := range ops {
		if op.kind == kind {
			n++
		}
	}
	return n
}

// TestSQLiteHookErrorFailsWrite: a DB that refuses a WAL write with ENOSPC
// makes the app's statement fail with SQLite's "full" error, and the database
// stays sound.
func TestSQLiteHookErrorFailsWrite(t *testing.T) {
	bothPassthroughModes(t, testSQLiteHookErrorFailsWrite)
}

func testSQLiteHookErrorFailsWrite(t *testing.T, passthrough bool) {
	rec := newRecDB()
	data, mnt := mountT(t, passthrough, map[string]DB{"db": rec})
	c := startSQL(t, "file:"+filepath.Join(mnt, "db")+"?_journal_mode=WAL")
	c.must("CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB)")
	c.must("INSERT INTO t(tag) VALUES ('before')")

	rec.setFail("write", syscall.ENOSPC)
	_, err := c.query("INSERT INTO t(tag) VALUES ('refused')")
	rec.setFail("write", nil)
	if err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("insert with WriteWAL failing ENOSPC: %v, want SQLite's 'database or disk is full'", err)
	}
	c.must("INSERT INTO t(tag) VALUES ('after')")
	if tags := c.must("SELECT group_concat(tag) FROM (SELECT tag FROM t ORDER BY id)"); tags != "before,after" {
		t.Errorf("rows: %q", tags)
	}
	integrityOK(t, c)
	rec.checkShadow(t, filepath.Join(data, "db-wal"))
}

// TestSQLiteConcurrentWriters: three writer processes through the mount leave
// a sound database with every row, and the DB saw every byte of the WAL.
func TestSQLiteConcurrentWriters(t *testing.T) {
	bothPassthroughModes(t, testSQLiteConcurrentWriters)
}

func testSQLiteConcurrentWriters(t *testing.T, passthrough bool) {
	rec := newRecDB()
	data, mnt := mountT(t, passthrough, map[string]DB{"db": rec})
	path := filepath.Join(mnt, "db")
	c := startSQL(t, "file:"+path+"?_journal_mode=WAL&_busy_timeout=20000")
	c.must("CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB)")

	const writers, rows = 3, 150
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := 0; i < writers; i++ {
		cmd, _ := startChild(t, envChildWriter, path+"\n"+strconv.Itoa(rows)+"\nproc"+strconv.Itoa(i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("writer: %v", err)
	}

	if n := c.must("SELECT count(*) FROM t"); n != strconv.Itoa(writers*rows) {
		t.Errorf("rows: %s; want %d", n, writers*rows)
	}
	integrityOK(t, c)
	// Our connection is still open, so the WAL is still there to compare.
	rec.checkShadow(t, filepath.Join(data, "db-wal"))
	restarts := 0
	for _, op := range rec.since(0) {
		if op.kind == "write" && op.off == 0 && op.n == 32 {
			restarts++
		}
	}
	t.Logf("ops: %d writes (%d WAL headers), %d syncs, %d truncates, %d removes",
		rec.count("write"), restarts, rec.count("sync"), rec.count("truncate"), rec.count("remove"))
}
