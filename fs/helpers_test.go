package fs

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/testenv"
	_ "github.com/mattn/go-sqlite3"
)

// Child modes: the test binary re-executed to be another process.
//
// SQLite never runs through a mount in the process serving it: WAL mode mmaps
// the -shm file, and a page fault on a FUSE mapping waits for the daemon while
// holding the mm's lock, which the daemon's own threads (Go's runtime mapping
// memory, a fault of their own) then wait for. Without passthrough for the shm
// that deadlocks the whole process, intermittently.
const (
	envChildMount  = "LITEFS_FS_TEST_CHILD_MOUNT"  // "<data>\n<mnt>": mount, print "mounted", block
	envChildWriter = "LITEFS_FS_TEST_CHILD_WRITER" // "<db path>\n<rows>\n<tag>": insert rows, exit
	envChildSQL    = "LITEFS_FS_TEST_CHILD_SQL"    // "<dsn>": run statements from stdin, see sqlChild
	envChildBench  = "LITEFS_FS_TEST_CHILD_BENCH"  // "<db path>\n<n>": n one-row commits, print ns/commit
	envChildPwrite = "LITEFS_FS_TEST_CHILD_PWRITE" // "<path>\n<n>": n 24-byte pwrites, print ns/pwrite
	envChildEcho   = "LITEFS_FS_TEST_CHILD_ECHO"   // "1": echo bytes from fd 3 to fd 4 until EOF
)

func TestMain(m *testing.M) {
	if v := os.Getenv(envChildMount); v != "" {
		os.Exit(childMount(v))
	}
	if v := os.Getenv(envChildWriter); v != "" {
		os.Exit(childWriter(v))
	}
	if v := os.Getenv(envChildSQL); v != "" {
		os.Exit(childSQL(v))
	}
	if v := os.Getenv(envChildBench); v != "" {
		os.Exit(childBench(v))
	}
	if v := os.Getenv(envChildPwrite); v != "" {
		os.Exit(childPwrite(v))
	}
	if os.Getenv(envChildEcho) != "" {
		os.Exit(childEcho())
	}
	os.Exit(m.Run())
}

// childSQL runs one statement per stdin line on one connection and answers
// each with one line: "ok <first row, columns joined by |>" or "err <msg>".
// "!close" closes the database and exits.
func childSQL(dsn string) int {
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conn:", err)
		return 1
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		q := in.Text()
		if q == "!close" {
			err := errors.Join(conn.Close(), db.Close())
			fmt.Println(answer("", err))
			return 0
		}
		fmt.Println(answer(query(ctx, conn, q)))
	}
	return 0
}

func query(ctx context.Context, conn *sql.Conn, q string) (string, error) {
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil || !rows.Next() {
		return "", errors.Join(err, rows.Err())
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return "", err
	}
	strs := make([]string, len(vals))
	for i, v := range vals {
		strs[i] = v.String
	}
	return strings.Join(strs, "|"), rows.Close()
}

func answer(v string, err error) string {
	if err != nil {
		return "err " + strings.ReplaceAll(err.Error(), "\n", " ")
	}
	return "ok " + v
}

func childBench(arg string) int {
	var path string
	var n int
	if _, err := fmt.Sscanf(arg, "%s\n%d", &path, &n); err != nil {
		fmt.Fprintln(os.Stderr, "bad", envChildBench, err)
		return 2
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=NORMAL")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := db.Exec("INSERT INTO t(v) VALUES ('row')"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println(time.Since(start).Nanoseconds() / int64(max(n, 1)))
	return 0
}

// childPwrite times n pwrites of a WAL frame header's size: one FUSE WRITE
// round trip each through a mount.
func childPwrite(arg string) int {
	var path string
	var n int
	if _, err := fmt.Sscanf(arg, "%s\n%d", &path, &n); err != nil {
		fmt.Fprintln(os.Stderr, "bad", envChildPwrite, err)
		return 2
	}
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CREAT, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer syscall.Close(fd)
	buf := make([]byte, 24)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := syscall.Pwrite(fd, buf, int64(i%1024)*4120); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println(time.Since(start).Nanoseconds() / int64(max(n, 1)))
	return 0
}

// childEcho answers each byte read from fd 3 with a byte on fd 4: the other
// half of a pipe round trip, with blocking syscalls as go-fuse makes them.
func childEcho() int {
	var b [1]byte
	for {
		if n, err := syscall.Read(3, b[:]); n != 1 || err != nil {
			return 0
		}
		if _, err := syscall.Write(4, b[:]); err != nil {
			return 1
		}
	}
}

// sqlChild is a SQLite connection in another process, driven line by line.
type sqlChild struct {
	t   testing.TB
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// startSQL opens dsn in a child process. It is closed at cleanup, before the
// mount it uses (cleanups run last-in first-out), if the test did not.
func startSQL(t testing.TB, dsn string) *sqlChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildSQL+"="+dsn)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sql child: %v", err)
	}
	c := &sqlChild{t: t, cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.close()
		}
	})
	return c
}

// query runs q in the child: its first row, or its error.
func (c *sqlChild) query(q string) (string, error) {
	c.t.Helper()
	if strings.Contains(q, "\n") {
		c.t.Fatalf("statement with a newline: %q", q)
	}
	if _, err := fmt.Fprintln(c.in, q); err != nil {
		c.t.Fatalf("send %q: %v", q, err)
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		c.t.Fatalf("answer to %q: %v", q, err)
	}
	line = strings.TrimSuffix(line, "\n")
	if msg, ok := strings.CutPrefix(line, "err "); ok {
		return "", errors.New(msg)
	}
	return strings.TrimPrefix(line, "ok "), nil
}

func (c *sqlChild) must(q string) string {
	c.t.Helper()
	v, err := c.query(q)
	if err != nil {
		c.t.Fatalf("%s: %v", q, err)
	}
	return v
}

// close closes the child's connection (the last one closing removes the
// WAL) and waits for it to exit.
func (c *sqlChild) close() {
	c.t.Helper()
	if _, err := c.query("!close"); err != nil {
		c.t.Errorf("close: %v", err)
	}
	c.in.Close()
	if err := c.cmd.Wait(); err != nil {
		c.t.Errorf("sql child: %v", err)
	}
}

func integrityOK(t testing.TB, c *sqlChild) {
	t.Helper()
	if res := c.must("PRAGMA integrity_check"); res != "ok" {
		t.Fatalf("integrity_check: %q", res)
	}
}

func childMount(arg string) int {
	var data, mnt string
	if _, err := fmt.Sscanf(arg, "%s\n%s", &data, &mnt); err != nil {
		fmt.Fprintln(os.Stderr, "bad", envChildMount, err)
		return 2
	}
	if _, err := Mount(Options{DataDir: data, MountDir: mnt, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
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
		if _, err := db.Exec(`INSERT INTO t(tag, v) VALUES (?, randomblob(4000))`, tag+"-"+strconv.Itoa(i)); err != nil {
			return fmt.Errorf("row %d: %w", i, err)
		}
	}
	return nil
}

func testLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// mountT mounts a fresh data dir on a fresh mount dir; unmounted at cleanup.
func mountT(t testing.TB, passthrough bool, dbs map[string]DB) (data, mnt string) {
	t.Helper()
	testenv.RequireFUSE(t)
	data, mnt = t.TempDir(), t.TempDir()
	s, err := Mount(Options{DataDir: data, MountDir: mnt, DBs: dbs, Passthrough: passthrough, Logger: testLogger()})
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	unmountAtCleanup(t, s, mnt)
	return data, mnt
}

// unmountAtCleanup unmounts s when the test ends. A test that leaves files
// open on the mount makes the unmount lazy, and then this very process would
// hang at exit: closing those files sends FLUSH to a daemon (itself) that no
// longer serves. So that is a test failure, and the connection is aborted.
func unmountAtCleanup(t testing.TB, s *Server, mnt string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); err != nil {
		t.Fatalf("stat mount: %v", err)
	}
	conn := (st.Dev & 0xff) | ((st.Dev >> 12) & 0xfff00) // minor: the FUSE connection id
	t.Cleanup(func() {
		if err := s.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
		}
		if s.lazy {
			t.Errorf("files were still open on %s at the end of the test", mnt)
			abort := fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", conn)
			if err := os.WriteFile(abort, []byte("1"), 0o200); err != nil {
				t.Errorf("abort the detached connection: %v", err)
			}
		}
	})
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

// errLie makes a recDB method report success without doing the operation.
var errLie = errors.New("lie")

func lie(err error) error {
	if err == errLie {
		return nil
	}
	return err
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
	if err := r.failWith["write"]; err == errLie {
		return len(p), nil
	} else if err != nil {
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
		return lie(err)
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
		return lie(err)
	}
	err := sync()
	r.ops = append(r.ops, recOp{kind: "sync", err: err})
	return err
}

func (r *recDB) RemoveWAL(remove func() error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.failWith["remove"]; err != nil {
		return lie(err)
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
func (r *recDB) checkShadow(t testing.TB, walPath string) {
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
func startChild(t testing.TB, env, arg string) (*exec.Cmd, *bufio.Reader) {
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
