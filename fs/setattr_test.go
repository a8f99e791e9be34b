package fs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestChmod: a chmod through the mount, by path or by handle, changes the
// backing file's mode in the data dir, and the mount reports that mode, for
// every role of file. Mode 0000 included: go-fuse would report it as 0644
// unless told otherwise, and SQLite's tests chmod a -shm or WAL to 0000.
func TestChmod(t *testing.T) {
	bothPassthroughModes(t, testChmod)
}

func testChmod(t *testing.T, passthrough bool) {
	rec := newRecDB()
	data, mnt := mountT(t, passthrough, map[string]DB{"db": rec})
	if err := os.Mkdir(filepath.Join(mnt, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	// modeOf is what stat says, through the mount and in the data dir.
	modeOf := func(name string) (mount, backing uint32) {
		t.Helper()
		var m, b syscall.Stat_t
		if err := syscall.Stat(filepath.Join(mnt, name), &m); err != nil {
			t.Fatalf("stat %s through the mount: %v", name, err)
		}
		if err := syscall.Stat(filepath.Join(data, name), &b); err != nil {
			t.Fatalf("stat %s in the data dir: %v", name, err)
		}
		return m.Mode, b.Mode
	}
	check := func(name, how string, want uint32, typ uint32) {
		t.Helper()
		m, b := modeOf(name)
		if b != typ|want {
			t.Errorf("%s after %s %04o: data dir mode %o, want %o", name, how, want, b, typ|want)
		}
		if m != b {
			t.Errorf("%s after %s %04o: mount reports mode %o, data dir has %o", name, how, want, m, b)
		}
	}

	for _, name := range []string{"other", "db", "db-wal", "db-shm", "db-journal"} {
		p := filepath.Join(mnt, name)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		mark := rec.len()
		for _, mode := range []uint32{0, 0o400, 0o600, 0o640, 0o4755, 0o644} {
			if err := syscall.Chmod(p, mode); err != nil {
				t.Fatalf("chmod %s %04o: %v", name, mode, err)
			}
			check(name, "chmod", mode, syscall.S_IFREG)
		}
		// By handle (fchmod arrives as SETATTR with the handle: the
		// walFile's Setattr for the WAL).
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, mode := range []uint32{0, 0o600} {
			if err := f.Chmod(os.FileMode(mode)); err != nil {
				t.Fatalf("fchmod %s %04o: %v", name, mode, err)
			}
			check(name, "fchmod", mode, syscall.S_IFREG)
			var st syscall.Stat_t
			if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Mode != syscall.S_IFREG|mode {
				t.Errorf("fstat %s after fchmod %04o: mode %o, %v", name, mode, st.Mode, err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		// A mode change is not a size change: the WAL's DB sees nothing.
		if ops := rec.since(mark); len(ops) != 0 {
			t.Errorf("chmods of %s reached the DB: %+v", name, ops)
		}
	}
	if err := syscall.Chmod(filepath.Join(mnt, "dir"), 0); err != nil {
		t.Fatal(err)
	}
	check("dir", "chmod", 0, syscall.S_IFDIR)
	if err := syscall.Chmod(filepath.Join(mnt, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}

	if b, err := os.ReadFile(filepath.Join(data, "db-wal")); err != nil || string(b) != "x" {
		t.Errorf("WAL after the chmods: %q, %v", b, err)
	}
}
