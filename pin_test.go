package litefs

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/litefs-dev/litefs/fs"
)

// While pinned, SQLite cannot checkpoint (so the database file's pages and
// the WAL's frames stay put); once released it can.
func TestPinWALBlocksCheckpoints(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("/dev/fuse is absent")
	}
	dir := t.TempDir()
	data, mnt := filepath.Join(dir, "data"), filepath.Join(dir, "mnt")
	os.MkdirAll(data, 0o755)
	srv, err := fs.Mount(fs.Options{DataDir: data, MountDir: mnt, Passthrough: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount() })
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(mnt, "db")+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{`PRAGMA wal_autocheckpoint=0`, `CREATE TABLE t (x)`, `INSERT INTO t VALUES (1)`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	checkpoint := func() int {
		var busy, log, done int
		if err := db.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &log, &done); err != nil {
			t.Fatal(err)
		}
		return busy
	}
	unpin, err := pinWAL(context.Background(), filepath.Join(mnt, "db"))
	if err != nil {
		t.Fatal(err)
	}
	if busy := checkpoint(); busy != 1 {
		t.Fatalf("checkpoint while pinned: busy=%d, want 1", busy)
	}
	if fi, err := os.Stat(filepath.Join(data, "db-wal")); err != nil || fi.Size() == 0 {
		t.Fatalf("the WAL was truncated while pinned: %v %v", fi, err)
	}
	unpin()
	if busy := checkpoint(); busy != 0 {
		t.Fatalf("checkpoint after unpin: busy=%d, want 0", busy)
	}
}
