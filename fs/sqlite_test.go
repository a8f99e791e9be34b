package fs

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func openConn(t *testing.T, dsn string) (*sql.DB, *sql.Conn) {
	t.Helper()
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(withTimeout(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return db, conn
}

func mustExec(t *testing.T, conn *sql.Conn, q string, args ...any) {
	t.Helper()
	if _, err := conn.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func integrityOK(t *testing.T, conn *sql.Conn) {
	t.Helper()
	var res string
	if err := conn.QueryRowContext(context.Background(), "PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check: %q, %v", res, err)
	}
}

// TestSQLiteWALHooks drives real SQLite through the mount and checks what the
// DB is handed against what reached the data dir.
func TestSQLiteWALHooks(t *testing.T) {
	bothPassthroughModes(t, testSQLiteWALHooks)
}

func testSQLiteWALHooks(t *testing.T, passthrough bool) {
	rec := newRecDB()
	data, mnt := mountT(t, passthrough, map[string]DB{"db": rec})
	realWAL := filepath.Join(data, "db-wal")
	db, conn := openConn(t, "file:"+filepath.Join(mnt, "db")+"?_journal_mode=WAL")

	// No checkpoints of our own making: the WAL only grows until we say so.
	mustExec(t, conn, "PRAGMA wal_autocheckpoint=0")
	// A tiny page cache forces spills, so frames are rewritten in place.
	mustExec(t, conn, "PRAGMA cache_size=5")
	mustExec(t, conn, "CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB)")
	for i := 0; i < 30; i++ {
		mustExec(t, conn, "INSERT INTO t(tag, v) VALUES (?, randomblob(3000))", strconv.Itoa(i))
	}
	mustExec(t, conn, "BEGIN")
	for i := 0; i < 300; i++ {
		mustExec(t, conn, "INSERT INTO t(tag, v) VALUES ('big', randomblob(2000))")
	}
	mustExec(t, conn, "UPDATE t SET v = randomblob(100) WHERE id % 3 = 0")
	mustExec(t, conn, "COMMIT")
	mustExec(t, conn, "BEGIN")
	mustExec(t, conn, "INSERT INTO t(tag, v) VALUES ('rolled back', randomblob(50000))")
	mustExec(t, conn, "ROLLBACK")

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
	mustExec(t, conn, "PRAGMA wal_checkpoint(TRUNCATE)")
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
		mustExec(t, conn, "INSERT INTO t(tag, v) VALUES ('after', randomblob(500))")
	}
	if ops := rec.since(mark); len(ops) == 0 || ops[0].kind != "write" || ops[0].off != 0 || ops[0].n != 32 {
		t.Errorf("first op after the restart: %+v, want the 32-byte header write at 0", ops[:min(len(ops), 1)])
	}
	rec.checkShadow(t, realWAL)
	integrityOK(t, conn)

	// Closing the last connection checkpoints and unlinks the WAL.
	mark = rec.len()
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
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
	db2, conn2 := openConn(t, "file:"+filepath.Join(mnt, "db"))
	var mode string
	if err := conn2.QueryRowContext(context.Background(), "PRAGMA journal_mode=DELETE").Scan(&mode); err != nil || mode != "delete" {
		t.Fatalf("journal_mode=DELETE: %q, %v", mode, err)
	}
	if n := countKind(rec.since(mark), "journal"); n == 0 {
		t.Errorf("PRAGMA journal_mode=DELETE created no journal seen by the DB: ops %+v", rec.since(mark))
	}
	mustExec(t, conn2, "INSERT INTO t(tag) VALUES ('rollback mode')")
	integrityOK(t, conn2)
	conn2.Close()
	db2.Close()
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
	rec := newRecDB()
	data, mnt := mountT(t, true, map[string]DB{"db": rec})
	_, conn := openConn(t, "file:"+filepath.Join(mnt, "db")+"?_journal_mode=WAL")
	mustExec(t, conn, "CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB)")
	mustExec(t, conn, "INSERT INTO t(tag) VALUES ('before')")

	rec.setFail("write", syscall.ENOSPC)
	_, err := conn.ExecContext(context.Background(), "INSERT INTO t(tag) VALUES ('refused')")
	rec.setFail("write", nil)
	if err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("insert with WriteWAL failing ENOSPC: %v, want SQLite's 'database or disk is full'", err)
	}
	mustExec(t, conn, "INSERT INTO t(tag) VALUES ('after')")
	var tags string
	if err := conn.QueryRowContext(context.Background(), "SELECT group_concat(tag) FROM t ORDER BY id").Scan(&tags); err != nil || tags != "before,after" {
		t.Errorf("rows: %q, %v", tags, err)
	}
	integrityOK(t, conn)
	rec.checkShadow(t, filepath.Join(data, "db-wal"))
}

// TestSQLiteConcurrentWriters: writers in two other processes and this one,
// all through the mount, leave a sound database with every row, and the DB
// saw every byte of the WAL.
func TestSQLiteConcurrentWriters(t *testing.T) {
	bothPassthroughModes(t, testSQLiteConcurrentWriters)
}

func testSQLiteConcurrentWriters(t *testing.T, passthrough bool) {
	rec := newRecDB()
	data, mnt := mountT(t, passthrough, map[string]DB{"db": rec})
	path := filepath.Join(mnt, "db")
	_, conn := openConn(t, "file:"+path+"?_journal_mode=WAL&_busy_timeout=20000")
	mustExec(t, conn, "CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB)")

	const rows = 150
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := 0; i < 2; i++ {
		tag := "proc" + strconv.Itoa(i)
		cmd, _ := startChild(t, envChildWriter, path+"\n"+strconv.Itoa(rows)+"\n"+tag)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := insertRows(path, rows, "goroutine"); err != nil {
			errs <- err
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("writer: %v", err)
	}

	var n int
	if err := conn.QueryRowContext(context.Background(), "SELECT count(*) FROM t").Scan(&n); err != nil || n != 3*rows {
		t.Errorf("rows: %d, %v; want %d", n, err, 3*rows)
	}
	integrityOK(t, conn)
	// Our connection is still open, so the WAL is still there to compare.
	rec.checkShadow(t, filepath.Join(data, "db-wal"))
	t.Logf("ops: %d writes, %d syncs, %d truncates, %d removes",
		rec.count("write"), rec.count("sync"), rec.count("truncate"), rec.count("remove"))
}
