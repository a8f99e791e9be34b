package fs

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// Child modes: the test binary re-executed to be another process.
const (
	envChildMount  = "LITEFS_FS_TEST_CHILD_MOUNT"  // "<data>\n<mnt>": mount, print "mounted", block
	envChildWriter = "LITEFS_FS_TEST_CHILD_WRITER" // "<db path>\n<rows>\n<tag>": insert rows, exit
)

func TestMain(m *testing.M) {
	if v := os.Getenv(envChildMount); v != "" {
		os.Exit(childMount(v))
	}
	if v := os.Getenv(envChildWriter); v != "" {
		os.Exit(childWriter(v))
	}
	os.Exit(m.Run())
}

func childMount(arg string) int {
	var data, mnt string
	if _, err := fmt.Sscanf(arg, "%s\n%s", &data, &mnt); err != nil {
		fmt.Fprintln(os.Stderr, "bad", envChildMount, err)
		return 2
	}
	if _, err := Mount(Options{DataDir: data, MountDir: mnt}); err != nil {
		fmt.Fprintln(os.Stderr, "mount:", err)
		return 1
	}
	fmt.Println("mounted")
	select {} // until killed
}

func childWriter(arg string) int {
	var path, tag string
	var rows int
	if _, err := fmt.Sscanf(arg, "%s\n%d\n%s", &path, &rows, &tag); err != nil {
		fmt.Fprintln(os.Stderr, "bad", envChildWriter, err)
		return 2
	}
	if err := insertRows(path, rows, tag); err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		return 1
	}
	return 0
}

// insertRows inserts rows into table t of the db at path, one transaction
// each, as an app would.
func insertRows(path string, rows int, tag string) error {
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=20000&_txlock=immediate")
	if err != nil {
		return err
	}
	defer db.Close()
	for i := 0; i < rows; i++ {
		if _, err := db.Exec(`INSERT INTO t(tag, v) VALUES (?, randomblob(1500))`, tag+"-"+strconv.Itoa(i)); err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
	}
	return nil
}

// requireFUSE skips when this machine cannot mount FUSE at all.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse (%v): FUSE tests need it", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: FUSE tests mount directly (DirectMount) and need CAP_SYS_ADMIN")
	}
}

func testLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// mountT mounts a fresh data dir on a fresh mount dir; unmounted at cleanup.
func mountT(t *testing.T, passthrough bool, dbs map[string]DB) (data, mnt string) {
	t.Helper()
	requireFUSE(t)
	data, mnt = t.TempDir(), t.TempDir()
	s, err := Mount(Options{DataDir: data, MountDir: mnt, DBs: dbs, Passthrough: passthrough, Logger: testLogger()})
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
		}
	})
	return data, mnt
}

// recOp is one call a recDB saw.
type recOp struct {
	kind string // write, truncate, sync, remove, journal
	off  int64
	n    int   // bytes written
	size int64 // truncate size
	err  error // what the op func returned
}

// recDB is a DB that records what it is handed and replays WAL writes onto a
// shadow, which must always equal the real WAL in the data dir.
type recDB struct {
	mu       sync.Mutex
	ops      []recOp
	shadow   []byte
	failWith map[string]error // kind -> error returned without doing the op
}

func newRecDB() *recDB { return &recDB{failWith: map[string]error{}} }

func (r *recDB) setFail(kind string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.failWith, kind)
	} else {
		r.failWith[kind] = err
	}
}

// The op funcs run under r.mu so the order recorded is the order on disk.

func (r *recDB) WriteWAL(off int64, p []byte, write func() (int, error)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.failWith["write"]; err != nil {
		return 0, err
	}
	n, err := write()
	if n > 0 {
		if end := off + int64(n); end > int64(len(r.shadow)) {
			r.shadow = append(r.shadow, make([]byte, end-int64(len(r.shadow)))...)
		}
		copy(r.shadow[off:], p[:n])
	}
	r.ops = append(r.ops, recOp{kind: "write", off: off, n: n, err: err})
	return n, err
}

func (r *recDB) TruncateWAL(size int64, truncate func() error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.failWith["truncate"]; err != nil {
		return err
	}
	err := truncate()
	if err == nil {
		if size <= int64(len(r.shadow)) {
			r.shadow = r.shadow[:size]
		} else {
			r.shadow = append(r.shadow, make([]byte, size-int64(len(r.shadow)))...)
		}
	}
	r.ops = append(r.ops, recOp{kind: "truncate", size: size, err: err})
	return err
}

func (r *recDB) SyncWAL(sync func() error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.failWith["sync"]; err != nil {
		return err
	}
	err := sync()
	r.ops = append(r.ops, recOp{kind: "sync", err: err})
	return err
}

func (r *recDB) RemoveWAL(remove func() error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.failWith["remove"]; err != nil {
		return err
	}
	err := remove()
	if err == nil {
		r.shadow = nil
	}
	r.ops = append(r.ops, recOp{kind: "remove", err: err})
	return err
}

func (r *recDB) JournalCreated() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, recOp{kind: "journal"})
}

// since returns the ops recorded after the first `from` ones.
func (r *recDB) since(from int) []recOp {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recOp(nil), r.ops[from:]...)
}

func (r *recDB) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, op := range r.ops {
		if op.kind == kind {
			n++
		}
	}
	return n
}

func (r *recDB) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

// checkShadow compares the replayed writes with the real WAL at path.
func (r *recDB) checkShadow(t *testing.T, walPath string) {
	t.Helper()
	r.mu.Lock()
	shadow := append([]byte(nil), r.shadow...)
	r.mu.Unlock()
	real, err := os.ReadFile(walPath)
	if os.IsNotExist(err) {
		real, err = nil, nil
	}
	if err != nil {
		t.Fatalf("read real WAL: %v", err)
	}
	if !bytes.Equal(shadow, real) {
		i := 0
		for i < len(shadow) && i < len(real) && shadow[i] == real[i] {
			i++
		}
		t.Fatalf("replayed WAL (%d bytes) differs from %s (%d bytes) at byte %d", len(shadow), walPath, len(real), i)
	}
}

// startChild re-executes the test binary in a child mode.
func startChild(t *testing.T, env, arg string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+arg)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, bufio.NewReader(out)
}

// detachAtCleanup makes sure no mount (dead or alive) outlives the test at
// dir, or removing the temp dir fails.
func detachAtCleanup(t *testing.T, dir string) {
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
}

func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
