package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/internal/testenv"
)

// mountTmpfs mounts a tmpfs of the given size at dir, unmounted at cleanup
// (register it before anything that must be gone first, like a daemon).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
}

// freeBytes is what an unprivileged writer may still write on dir's
// filesystem.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// writeFiller writes n bytes (or until the disk is full) to path.
func writeFiller(t *testing.T, path string, n int64) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var written int64
	for written < n {
		m, err := f.Write(buf[:min(int64(len(buf)), n-written)])
		written += int64(m)
		if err != nil {
			break
		}
	}
	return written
}

// sqliteKind names an error's SQLite primary code.
func sqliteKind(err error) string {
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrFull:
			return "SQLITE_FULL"
		case sqlite3.ErrIoErr:
			return "SQLITE_IOERR"
		}
		return fmt.Sprintf("SQLite code %d (%v)", se.Code, se.Code)
	}
	return "not a SQLite error"
}

// fullRun is what one run of the disk-full workload saw.
type fullRun struct {
	acked    []int64        // ids of the rows whose commit succeeded
	firstAt  int            // attempt that failed first
	firstErr error          // its error
	kinds    map[string]int // every error by SQLite kind
	texts    map[string]int // and by text
	recovery int            // attempts after space returned until a commit succeeded
}

func (r *fullRun) String() string {
	return fmt.Sprintf("first error at commit %d: %v (%s); %d acknowledged; errors by kind %v; by text %v; first commit after space returned: attempt %d",
		r.firstAt, r.firstErr, sqliteKind(r.firstErr), len(r.acked), r.kinds, r.texts, r.recovery)
}

// diskFullWorkload commits 8 KB rows one by one, checkpointing (TRUNCATE)
// every 25, until the disk is full and 30 attempts more; then it deletes
// the filler and commits until one succeeds, then 20 more that must.
func diskFullWorkload(t *testing.T, db *sql.DB, filler string) *fullRun {
	t.Helper()
	r := &fullRun{kinds: map[string]int{}, texts: map[string]int{}}
	failures := 0
	id := int64(0)
	for attempt := 1; attempt < 5000 && failures < 30; attempt++ {
		id++
		var err error
		if attempt%25 == 0 {
			_, err = db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
		} else if _, err = db.Exec(`INSERT INTO t (id, v) VALUES (?, randomblob(8000))`, id); err == nil {
			r.acked = append(r.acked, id)
		}
		if err != nil {
			if failures == 0 {
				r.firstAt, r.firstErr = attempt, err
			}
			failures++
			r.kinds[sqliteKind(err)]++
			r.texts[err.Error()]++
		}
	}
	if failures == 0 {
		t.Fatalf("the disk never filled up")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for r.recovery = 1; ; r.recovery++ {
		id++
		_, err := db.Exec(`INSERT INTO t (id, v) VALUES (?, randomblob(100))`, id)
		if err == nil {
			r.acked = append(r.acked, id)
			break
		}
		if r.recovery == 50 {
			t.Fatalf("no commit succeeds after space returned: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; i < 20; i++ {
		id++
		if _, err := db.Exec(`INSERT INTO t (id, v) VALUES (?, randomblob(100))`, id); err != nil {
			t.Fatalf("commit %d after space returned: %v", i, err)
		}
		r.acked = append(r.acked, id)
	}
	return r
}

// checkAcked asserts every acknowledged row is in db.
func checkAcked(t *testing.T, db *sql.DB, acked []int64, where string) {
	t.Helper()
	integrity(t, db)
	have := map[int64]bool{}
	rows, err := db.Query(`SELECT id FROM t`)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		have[id] = true
	}
	rows.Close()
	for _, id := range acked {
		if !have[id] {
			t.Fatalf("%s: row %d, whose commit succeeded, is missing (%d rows present, %d acknowledged)", where, id, len(have), len(acked))
		}
	}
}

// The data dir on an 8 MiB tmpfs fills up under a write load through
// litefs, and the same load runs on a native 8 MiB tmpfs: the app gets the
// same kind of errors through litefs as without it (SQLITE_FULL or an I/O
// error; both runs are logged), nothing acknowledged is lost (checked
// after space returns and after a restart), and the daemon recovers when
// space returns (a filler file is deleted): commits replicate again and
// restore = live.
func TestDiskFull(t *testing.T) {
	testenv.RequireFUSE(t)
	// Native first.
	native := filepath.Join(t.TempDir(), "native")
	mountTmpfs(t, native, "8m")
	writeFiller(t, filepath.Join(native, "filler"), 3<<20)
	ndb := openDB(t, filepath.Join(native, "db"), "_journal_mode=WAL")
	ndb.SetMaxOpenConns(1)
	mustExec(t, ndb, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	nrun := diskFullWorkload(t, ndb, filepath.Join(native, "filler"))
	checkAcked(t, ndb, nrun.acked, "native, space back")
	ndb.Close()
	ndb = openDB(t, filepath.Join(native, "db"), "")
	checkAcked(t, ndb, nrun.acked, "native, reopened")
	ndb.Close()
	t.Logf("native tmpfs: %v", nrun)

	e := newEnv(t, "50ms")
	// As much free space as the native run while the disk fills (5 MiB), and
	// room for a snapshot once the filler goes: the first flush after
	// space returns may snapshot the whole database beside its WAL.
	mountTmpfs(t, e.dataDir, "12m") // before start: unmounted after the daemon stops
	var logs testenv.LogBuffer
	e.startLogged(&logs)
	writeFiller(t, filepath.Join(e.dataDir, "filler"), 7<<20)
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	lrun := diskFullWorkload(t, db, filepath.Join(e.dataDir, "filler"))
	t.Logf("litefs, data dir on tmpfs: %v", lrun)
	for kind := range lrun.kinds {
		if kind != "SQLITE_FULL" && kind != "SQLITE_IOERR" {
			t.Errorf("through litefs the app got %s errors on a full disk; without litefs: %v", kind, nrun.kinds)
		}
	}
	if sqliteKind(lrun.firstErr) != sqliteKind(nrun.firstErr) {
		t.Logf("NOTE: the first error differs: %s through litefs, %s without", sqliteKind(lrun.firstErr), sqliteKind(nrun.firstErr))
	}
	if st, err := e.db().State(); st != litefs.StateReplicating {
		t.Fatalf("after space returned the database is %s: %v\nlog:\n%s", st, err, logs.String())
	}
	checkAcked(t, db, lrun.acked, "litefs, space back")
	e.verify(db)
	if n := strings.Count(logs.String(), "level=ERROR"); n > 0 {
		t.Logf("the daemon logged %d errors while the disk was full", n)
	}

	// Restart: everything acknowledged is still there and replicates.
	db.Close()
	e.stop()
	logs.Reset()
	e.startLogged(&logs)
	db = e.open("_journal_mode=WAL")
	checkAcked(t, db, lrun.acked, "litefs, after a restart")
	mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(100))`)
	e.verify(db)
	if strings.Contains(logs.String(), "taking a snapshot") {
		t.Logf("NOTE: the restart took a new snapshot: %s", logs.String())
	}
	e.checkOneHistory(1)
}

// The volume fills up while a batch is being frozen: the freeze of the
// staged log fails (ENOSPC writing the frozen object), a small commit still
// fits in the log, space returns, and the next flush must upload both the
// batch that failed and the commit after it: one unbroken history, restore
// = live.
func TestDiskFullDuringFreeze(t *testing.T) {
	e := newEnv(t, "1h") // the uploader waits: only explicit flushes freeze
	mountTmpfs(t, e.dataDir, "8m")
	e.start()
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	e.flush()
	for i := 0; i < 40; i++ {
		mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(3000))`)
	}
	staged := e.db().Pos()
	// Staged records reach the log file in batches; SQLite syncs the WAL
	// before a checkpoint, and litefs writes them then: so they take their
	// space before the free space is measured.
	mustExec(t, db, `PRAGMA wal_checkpoint(PASSIVE)`)

	// Leave 64 KiB free: less than the frozen batch needs, more than one
	// small commit does.
	filler := filepath.Join(e.dataDir, "filler")
	writeFiller(t, filler, freeBytes(t, e.dataDir)-64<<10)
	err := e.db().Flush(context.Background())
	if err == nil {
		t.Fatalf("the flush froze and uploaded %d transactions with 64 KiB free: the test did not fill the disk enough", staged.TXID)
	}
	t.Logf("flush on a full volume: %v", err)
	mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(100))`)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := e.db().Flush(context.Background()); err != nil {
		t.Fatalf("flush once space returned: %v", err)
	}
	if p, r := e.db().Pos(), e.db().ReplicaPos(); r.TXID != p.TXID {
		t.Fatalf("replica at TXID %d, staged %d", r.TXID, p.TXID)
	}
	e.checkOneHistory(1)
	e.verify(db)
}
