package fs

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/testenv"
	"github.com/litefs-dev/litefs/staging"
)

func bothPassthroughModes(t *testing.T, f func(t *testing.T, passthrough bool)) {
	for _, pt := range []bool{false, true} {
		t.Run(fmt.Sprintf("passthrough=%v", pt), func(t *testing.T) { f(t, pt) })
	}
}

func TestStagingDirHidden(t *testing.T) {
	bothPassthroughModes(t, testStagingDirHidden)
}

func testStagingDirHidden(t *testing.T, passthrough bool) {
	data, mnt := mountT(t, passthrough, nil)
	if err := os.MkdirAll(filepath.Join(data, staging.DirName, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, staging.DirName, "x"), []byte("staged"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "regular"), []byte("hello"), 0o644); err != nil {
		t.Fatalf("write through mount: %v", err)
	}

	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if slices.Contains(names, staging.DirName) || !slices.Contains(names, "regular") {
		t.Errorf("mount lists %v: want regular and no %s", names, staging.DirName)
	}
	for _, p := range []string{staging.DirName, staging.DirName + "/x"} {
		if _, err := os.Stat(filepath.Join(mnt, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s through the mount: %v, want ENOENT", p, err)
		}
	}

	// Nothing can create, replace or remove it under its name either.
	refused := map[string]error{
		"mkdir":   os.Mkdir(filepath.Join(mnt, staging.DirName), 0o755),
		"create":  os.WriteFile(filepath.Join(mnt, staging.DirName), nil, 0o644),
		"symlink": os.Symlink("regular", filepath.Join(mnt, staging.DirName)),
		"link":    os.Link(filepath.Join(mnt, "regular"), filepath.Join(mnt, staging.DirName)),
		"rename":  os.Rename(filepath.Join(mnt, "regular"), filepath.Join(mnt, staging.DirName)),
		"remove":  os.RemoveAll(filepath.Join(mnt, staging.DirName)),
	}
	for op, err := range refused {
		if op == "remove" {
			continue // RemoveAll of a missing name succeeds: check the data below
		}
		if err == nil {
			t.Errorf("%s %s through the mount succeeded", op, staging.DirName)
		}
	}
	if b, err := os.ReadFile(filepath.Join(data, staging.DirName, "x")); err != nil || string(b) != "staged" {
		t.Errorf("staging content after the attempts: %q, %v", b, err)
	}

	// A regular file is an ordinary loopback file, both ways.
	b, err := os.ReadFile(filepath.Join(data, "regular"))
	if err != nil || string(b) != "hello" {
		t.Errorf("data dir sees %q, %v", b, err)
	}
	f, err := os.OpenFile(filepath.Join(mnt, "regular"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("J"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(mnt, "regular")); string(b) != "Jello" {
		t.Errorf("read back %q", b)
	}

	// Only the root's .litefs is special.
	if err := os.MkdirAll(filepath.Join(mnt, "sub", staging.DirName), 0o755); err != nil {
		t.Errorf("sub/%s: %v", staging.DirName, err)
	}
}

// TestWALFileOps drives each FUSE operation on a WAL by hand.
func TestWALFileOps(t *testing.T) {
	bothPassthroughModes(t, testWALFileOps)
}

func testWALFileOps(t *testing.T, passthrough bool) {
	rec := newRecDB()
	data, mnt := mountT(t, passthrough, map[string]DB{"sub/app.db": rec})
	if err := os.Mkdir(filepath.Join(mnt, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	wal := filepath.Join(mnt, "sub/app.db-wal")
	realWAL := filepath.Join(data, "sub/app.db-wal")

	f, err := os.OpenFile(wal, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := bytes.Repeat([]byte{0xAB}, 4096)
	// Unaligned on purpose: without direct_io the kernel would split it at
	// page-cache boundaries.
	if _, err := f.WriteAt(page, 32); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("header"), 0); err != nil {
		t.Fatal(err)
	}
	ops := rec.since(0)
	if len(ops) != 2 || ops[0] != (recOp{kind: "write", off: 32, n: 4096}) || ops[1] != (recOp{kind: "write", off: 0, n: 6}) {
		t.Errorf("want exactly WRITE(32, 4096) then WRITE(0, 6) (direct_io), got %+v", ops)
	}
	rec.checkShadow(t, realWAL)

	// Reads come from the real file.
	got := make([]byte, 6)
	if _, err := f.ReadAt(got, 0); err != nil || string(got) != "header" {
		t.Errorf("read back %q, %v", got, err)
	}

	mark := rec.len()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(100); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(wal, 10); err != nil { // by path: no file handle
		t.Fatal(err)
	}
	want := []recOp{{kind: "sync"}, {kind: "sync"}, {kind: "truncate", size: 100}, {kind: "truncate", size: 10}}
	if got := rec.since(mark); !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	rec.checkShadow(t, realWAL)
	if st, err := os.Stat(wal); err != nil || st.Size() != 10 {
		t.Errorf("size through the mount: %v, %v", st, err)
	}

	// An existing WAL opened (not created) through the mount is hooked too,
	// whether or not passthrough engaged on some other handle before.
	db, err := os.OpenFile(filepath.Join(mnt, "sub/app.db"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.WriteAt([]byte("db bytes"), 0); err != nil {
		t.Fatal(err)
	}
	db.Close()
	f.Close()
	if err := os.WriteFile(filepath.Join(data, "sub/app.db-wal"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	f2, err := os.OpenFile(wal, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	mark = rec.len()
	if _, err := f2.WriteAt([]byte("ab"), 2); err != nil {
		t.Fatal(err)
	}
	f2.Close()
	if got := rec.since(mark); len(got) != 1 || got[0] != (recOp{kind: "write", off: 2, n: 2}) {
		t.Errorf("write on a reopened WAL: %+v", got)
	}

	// Unlink, and a rename onto the WAL's name, are removals.
	mark = rec.len()
	if err := os.Remove(wal); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "sub/other"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "sub/other"), wal); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(wal, filepath.Join(mnt, "sub/away")); err != nil {
		t.Fatal(err)
	}
	if got := rec.since(mark); !slices.Equal(got, []recOp{{kind: "remove"}, {kind: "remove"}, {kind: "remove"}}) {
		t.Errorf("unlink, rename onto, rename away: %+v", got)
	}

	// A journal being created is announced after it exists.
	mark = rec.len()
	j, err := os.OpenFile(filepath.Join(mnt, "sub/app.db-journal"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	if got := rec.since(mark); !slices.Equal(got, []recOp{{kind: "journal"}}) {
		t.Errorf("journal create: %+v", got)
	}

	// Files of other names, and other dbs' names, never reach the DB.
	mark = rec.len()
	for _, name := range []string{"sub/app.db", "sub/app.db-shm", "app.db-wal", "sub/app.dbx-wal", "sub/x"} {
		if err := os.WriteFile(filepath.Join(mnt, name), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := rec.since(mark); len(got) != 0 {
		t.Errorf("non-WAL files reached the DB: %+v", got)
	}

	// Getxattr answers ENOSYS, which the kernel turns into EOPNOTSUPP for
	// good (and stops asking security.capability before writes).
	_, err = syscall.Getxattr(filepath.Join(mnt, "sub/x"), "user.test", make([]byte, 64))
	if !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Errorf("getxattr: %v, want EOPNOTSUPP", err)
	}
}

// TestHookErrorsReachApp: an error from the DB is the app's errno, and the
// operation it refused did not happen.
func TestHookErrorsReachApp(t *testing.T) {
	rec := newRecDB()
	data, mnt := mountT(t, false, map[string]DB{"db": rec})
	wal := filepath.Join(mnt, "db-wal")
	f, err := os.OpenFile(wal, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec.setFail("write", syscall.ENOSPC)
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("write: %v, want ENOSPC", err)
	}
	rec.setFail("write", errors.New("not an errno"))
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("write: %v, want EIO", err)
	}
	rec.setFail("write", nil)
	rec.setFail("sync", fmt.Errorf("staging: %w", syscall.EROFS))
	if err := f.Sync(); !errors.Is(err, syscall.EROFS) {
		t.Errorf("fsync: %v, want EROFS (wrapped errno)", err)
	}
	rec.setFail("truncate", syscall.EDQUOT)
	if err := f.Truncate(0); !errors.Is(err, syscall.EDQUOT) {
		t.Errorf("ftruncate: %v, want EDQUOT", err)
	}
	rec.setFail("remove", syscall.EBUSY)
	if err := os.Remove(wal); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("unlink: %v, want EBUSY", err)
	}
	if _, err := os.Stat(filepath.Join(data, "db-wal")); err != nil {
		t.Errorf("refused unlink removed the WAL: %v", err)
	}
	if st, _ := os.Stat(filepath.Join(data, "db-wal")); st != nil && st.Size() != 0 {
		t.Errorf("refused writes reached the WAL: size %d", st.Size())
	}

	// A DB that claims success without doing the operation: the app must not
	// believe it happened.
	for _, kind := range []string{"write", "sync", "truncate", "remove"} {
		rec.setFail(kind, errLie)
	}
	if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("write not done: %v, want EIO", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync not done: %v, want EIO", err)
	}
	if err := os.Truncate(wal, 5); !errors.Is(err, syscall.EIO) {
		t.Errorf("truncate not done: %v, want EIO", err)
	}
	if err := os.Remove(wal); !errors.Is(err, syscall.EIO) {
		t.Errorf("unlink not done: %v, want EIO", err)
	}
}

// TestDeadMountIsDetached: a daemon killed with -9 leaves a mount that answers
// ENOTCONN; the next Mount detaches it and serves.
func TestDeadMountIsDetached(t *testing.T) {
	testenv.RequireFUSE(t)
	data, mnt := t.TempDir(), t.TempDir()
	detachAtCleanup(t, mnt)
	cmd, out := startChild(t, envChildMount, data+"\n"+mnt)
	line, err := out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "mounted" {
		t.Fatalf("child mount: %q, %v", line, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "before"), []byte("1"), 0o644); err != nil {
		t.Fatalf("child's mount does not work: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat of the dead mount: %v, want ENOTCONN", err)
	}

	s, err := Mount(Options{DataDir: data, MountDir: mnt, Logger: testLogger()})
	if err != nil {
		t.Fatalf("Mount over a dead mount: %v", err)
	}
	unmountAtCleanup(t, s, mnt)
	if b, err := os.ReadFile(filepath.Join(mnt, "before")); err != nil || string(b) != "1" {
		t.Errorf("after remount: %q, %v", b, err)
	}
}

func TestLiveMountRefused(t *testing.T) {
	data, mnt := mountT(t, false, nil)
	_, err := Mount(Options{DataDir: data, MountDir: mnt, Logger: testLogger()})
	if err == nil || !strings.Contains(err.Error(), "already a live mount") {
		t.Fatalf("second Mount on a live mount: %v", err)
	}
	// The first mount is unharmed.
	if err := os.WriteFile(filepath.Join(mnt, "f"), nil, 0o644); err != nil {
		t.Errorf("first mount after the refused one: %v", err)
	}
}

func TestMountOptionErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(dir+"/d", 0o755); err != nil {
		t.Fatal(err)
	}
	for name, opt := range map[string]Options{
		"no data dir":   {MountDir: dir},
		"same dirs":     {DataDir: dir, MountDir: dir},
		"mount in data": {DataDir: dir, MountDir: dir + "/m"},
		"data in mount": {DataDir: dir + "/d", MountDir: dir},
		"absolute db":   {DataDir: dir + "/d", MountDir: dir + "/m", DBs: map[string]DB{"/db": newRecDB()}},
		"escaping db":   {DataDir: dir + "/d", MountDir: dir + "/m", DBs: map[string]DB{"../db": newRecDB()}},
		"staging db":    {DataDir: dir + "/d", MountDir: dir + "/m", DBs: map[string]DB{".litefs/db": newRecDB()}},
		"nil db":        {DataDir: dir + "/d", MountDir: dir + "/m", DBs: map[string]DB{"db": nil}},
		"duplicate db":  {DataDir: dir + "/d", MountDir: dir + "/m", DBs: map[string]DB{"db": newRecDB(), "./db": newRecDB()}},
		"missing data":  {DataDir: dir + "/nope", MountDir: dir + "/m"},
		"mount is file": {DataDir: dir + "/d", MountDir: "/dev/null"},
	} {
		if _, err := Mount(opt); err == nil {
			t.Errorf("%s: Mount succeeded", name)
		}
	}
}

// TestUnmountBusy: a file held open makes the kernel refuse a plain unmount;
// Unmount then detaches lazily and the open file keeps working.
func TestUnmountBusy(t *testing.T) {
	testenv.RequireFUSE(t)
	data, mnt := t.TempDir(), t.TempDir()
	detachAtCleanup(t, mnt)
	s, err := Mount(Options{DataDir: data, MountDir: mnt, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(mnt, "held"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Unmount(); err != nil {
		t.Fatalf("Unmount with a file open: %v", err)
	}
	t.Logf("busy unmount took %v", time.Since(start))
	if _, err := f.Write([]byte("still served")); err != nil {
		t.Errorf("write on a file open across a lazy detach: %v", err)
	}
	f.Close()
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after the last file closed")
	}
	if b, _ := os.ReadFile(filepath.Join(data, "held")); string(b) != "still served" {
		t.Errorf("data dir has %q", b)
	}
	if err := s.Unmount(); err != nil {
		t.Errorf("second Unmount: %v", err)
	}
}

// TestPassthroughUse reads go-fuse's request trace: without Passthrough no
// backing fd is ever registered; with it, whether the kernel took it is a fact
// of this machine, logged. WAL writes reach the DB either way (other tests).
func TestPassthroughUse(t *testing.T) {
	bothPassthroughModes(t, func(t *testing.T, passthrough bool) {
		testenv.RequireFUSE(t)
		trace := &testenv.LogBuffer{}
		data, mnt := t.TempDir(), t.TempDir()
		s, err := Mount(Options{DataDir: data, MountDir: mnt, DBs: map[string]DB{"db": newRecDB()},
			Passthrough: passthrough, Debug: true,
			Logger: slog.New(slog.NewTextHandler(trace, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		unmountAtCleanup(t, s, mnt)
		for _, name := range []string{"db", "db-shm", "other"} {
			if err := os.WriteFile(filepath.Join(mnt, name), make([]byte, 8192), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		registered := strings.Count(trace.String(), "BACKING_OPEN")
		writes := strings.Count(trace.String(), ": WRITE ")
		if !passthrough && registered != 0 {
			t.Errorf("Passthrough off, yet %d backing fds registered", registered)
		}
		if !passthrough && writes < 3 {
			t.Errorf("Passthrough off, yet the daemon saw %d writes for 3 files", writes)
		}
		t.Logf("passthrough=%v: %d backing fds registered, daemon saw %d WRITEs for 3 non-WAL files", passthrough, registered, writes)
	})
}
