package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/daemon"
	"github.com/litefs-dev/litefs/internal/testenv"

	"github.com/litefs-dev/litefs/config"
)

// crashRounds is the number of kill -9 rounds: 10 in `go test`,
// LITEFS_CRASH_ROUNDS overrides (make soak runs 100).
func crashRounds(t *testing.T) int { return envRounds(t, "LITEFS_CRASH_ROUNDS", 10) }

// envRounds is the positive integer in the environment variable name, or
// def when it is unset.
func envRounds(t *testing.T, name string, def int) int {
	if s := os.Getenv(name); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", name, s)
		}
		return n
	}
	return def
}

// crashEnv is an env whose daemon is killed with SIGKILL: `litefs mount`
// runs as a child, with extra [dbs.replica] keys.
type crashEnv struct {
	*env
	replicaExtra string // appended to the [dbs.replica] table
}

func (c *crashEnv) text(httpAddr string) string {
	text := c.env.configText() + c.replicaExtra
	if httpAddr != "" {
		text = replaceHTTP(text, httpAddr)
	}
	return text
}

// crashChild is one `litefs mount` child process.
type crashChild struct {
	cmd  *exec.Cmd
	addr string
	log  *testenv.LogBuffer
	done chan struct{}
}

// startChild runs `litefs mount` as a child and waits for /readyz. Its
// output is captured in the returned log (and echoed with -v).
func (c *crashEnv) startChild() *crashChild {
	c.t.Helper()
	ch := &crashChild{addr: testenv.FreeAddr(c.t), log: &testenv.LogBuffer{}, done: make(chan struct{})}
	cfgPath := filepath.Join(c.root, "crash.toml")
	if err := os.WriteFile(cfgPath, []byte(c.text(ch.addr)), 0o644); err != nil {
		c.t.Fatal(err)
	}
	ch.cmd = exec.Command(filepath.Join(testenv.Binaries(c.t), "litefs"), "mount", "-config", cfgPath)
	var w io.Writer = ch.log
	if testing.Verbose() {
		w = io.MultiWriter(ch.log, prefixWriter(os.Stderr, "child: "))
	}
	ch.cmd.Stdout, ch.cmd.Stderr = w, w
	ch.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := ch.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { _ = ch.cmd.Wait(); close(ch.done) }()
	c.t.Cleanup(func() {
		_ = ch.cmd.Process.Kill()
		<-ch.done
		_ = syscall.Unmount(c.mountDir, syscall.MNT_DETACH)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-ch.done:
			c.t.Fatalf("litefs mount exited at start:\n%s", ch.log)
		default:
		}
		if resp, err := http.Get("http://" + ch.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return ch
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("litefs mount not ready after 30s:\n%s", ch.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL, waits for the exit and detaches the dead mount. A
// killed daemon that does not exit within 2 s is stuck in the kernel (a
// thread of it waits for an answer from its own FUSE mount, which only it
// could give): that is reported as an error, with the threads' kernel
// stacks, and the FUSE connection is aborted so the test (and the app's
// blocked threads) can go on. It returns whether the kill was clean.
func (c *crashEnv) kill(ch *crashChild) bool {
	c.t.Helper()
	conn := fuseConnection(c.mountDir)
	if err := ch.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	clean := true
	select {
	case <-ch.done:
	case <-time.After(2 * time.Second):
		clean = false
		c.t.Errorf("BUG: the daemon (pid %d) did not exit within 2 s of SIGKILL: a thread of it is stuck in the kernel waiting for its own FUSE mount, so the mount (and every app thread using it) hangs until someone writes /sys/fs/fuse/connections/%s/abort:\n%s",
			ch.cmd.Process.Pid, conn, kernelStacks(ch.cmd.Process.Pid))
		if conn == "" {
			c.t.Fatalf("cannot find the FUSE connection of %s to abort it", c.mountDir)
		}
		if err := os.WriteFile("/sys/fs/fuse/connections/"+conn+"/abort", []byte("1"), 0o200); err != nil {
			c.t.Fatalf("abort FUSE connection %s: %v", conn, err)
		}
		select {
		case <-ch.done:
		case <-time.After(20 * time.Second):
			c.t.Fatalf("the killed daemon is still there 20 s after aborting its FUSE connection")
		}
	}
	if err := syscall.Unmount(c.mountDir, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		c.t.Fatalf("detach the dead mount: %v", err)
	}
	return clean
}

// fuseConnection returns the /sys/fs/fuse/connections entry of the FUSE
// mount at dir (its device minor), or "".
func fuseConnection(dir string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	conn := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			if _, minor, ok := strings.Cut(f[2], ":"); ok {
				conn = minor // the last mount at dir is the live one
			}
		}
	}
	return conn
}

// kernelStacks returns the state and kernel stack of each thread of pid.
func kernelStacks(pid int) string {
	var b strings.Builder
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, task := range tasks {
		stat, _ := os.ReadFile(task + "/stat")
		stack, _ := os.ReadFile(task + "/stack")
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] != "Z" {
			fmt.Fprintf(&b, "thread %s (%s):\n%s", filepath.Base(task), f[2], stack)
		}
	}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil {
			fmt.Fprintf(&b, "fd %s -> %s\n", filepath.Base(fd), target)
		}
	}
	return b.String()
}

// startInProcess starts the daemon in this process with the same config,
// its log captured in logs.
func (c *crashEnv) startInProcess(logs *testenv.LogBuffer) *daemon.Daemon {
	c.t.Helper()
	cfg, err := config.Parse("crash.toml", c.text(""))
	if err != nil {
		c.t.Fatal(err)
	}
	dm := daemon.New(cfg, logTo(logs))
	if err := dm.Start(context.Background()); err != nil {
		c.t.Fatalf("start daemon: %v\n%s", err, logs)
	}
	c.dm = dm
	c.t.Cleanup(func() {
		if c.dm == dm {
			c.stop()
		}
	})
	return dm
}

// checkResumed asserts a start-up log resumed the history: no snapshot.
// diag describes the volume as the kill left it.
func checkResumed(t *testing.T, round int, log, diag string) (recovered int) {
	t.Helper()
	if strings.Contains(log, "taking a snapshot") || !strings.Contains(log, "resuming replication") {
		t.Fatalf("round %d: the restart after kill -9 did not resume the same history:\n%s\nthe volume after the kill:\n%s", round, log, diag)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "staged commits found in the WAL") {
			if i := strings.Index(line, "count="); i >= 0 {
				n, _ := strconv.Atoi(strings.Fields(line[i+len("count="):])[0])
				recovered += n
			}
		}
	}
	return recovered
}
