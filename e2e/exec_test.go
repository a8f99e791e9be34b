package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/testenv"
)

// slowApp is a shell script standing for an app that takes a second to stop
// on SIGTERM, with a file open on the mount meanwhile. It records its pid,
// its open descriptors, and that it saw SIGTERM and exited.
const slowApp = `
trap 'echo term >> "$OUT/events"; sleep 1; echo exited >> "$OUT/events"; exit 0' TERM
echo $$ > "$OUT/pid"
ls -l /proc/$$/fd > "$OUT/fds"
exec 3>> "$MNT/app.log"
echo started >> "$OUT/events"
while :; do echo tick >&3; sleep 0.05; done
`

type execRun struct {
	cmd  *exec.Cmd
	out  string // the app's record dir
	logs *bytes.Buffer
	done chan struct{}
}

// startExec runs `litefs mount -exec "cd / && sh slowApp"` and waits until
// the app runs.
func startExec(t *testing.T, e *env) *execRun {
	t.Helper()
	out := t.TempDir()
	script := filepath.Join(out, "app.sh")
	writeFile(t, script, slowApp)
	cfg := filepath.Join(e.root, "litefs.toml")
	writeFile(t, cfg, replaceHTTP(e.configText(), testenv.FreeAddr(t)))
	r := &execRun{out: out, logs: &bytes.Buffer{}, done: make(chan struct{})}
	r.cmd = exec.Command(filepath.Join(testenv.Binaries(t), "litefs"), "mount", "-config", cfg,
		"-exec", "cd / && OUT="+out+" MNT="+e.mountDir+" sh "+script)
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		if pid := r.appPid(); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = r.cmd.Process.Kill()
		<-r.done
		_ = syscall.Unmount(e.mountDir, syscall.MNT_DETACH)
	})
	waitFor(t, 30*time.Second, "the app started", func() bool {
		select {
		case <-r.done:
			t.Fatalf("litefs exited before the app started:\n%s", r.logs)
		default:
		}
		return strings.Contains(r.events(), "started")
	})
	return r
}

func (r *execRun) events() string {
	b, _ := os.ReadFile(filepath.Join(r.out, "events"))
	return string(b)
}

func (r *execRun) appPid() int {
	b, _ := os.ReadFile(filepath.Join(r.out, "pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func (r *execRun) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("litefs did not exit:\n%s", r.logs)
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// SIGTERM to litefs reaches the app forked by `sh -c "cd / && app"` (a
// process group of its own), litefs waits the second the app takes, then
// unmounts: no process is left, and the app held no FUSE descriptor.
func TestExecSignalsProcessGroup(t *testing.T) {
	e := newEnv(t, "0s")
	r := startExec(t, e)
	pid := r.appPid()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r.wait(t)
	if ev := r.events(); !strings.Contains(ev, "term") || !strings.Contains(ev, "exited") {
		t.Fatalf("the app did not see SIGTERM and finish before litefs exited; its events:\n%s\nlitefs:\n%s", ev, r.logs)
	}
	if alive(pid) {
		t.Fatalf("the app (pid %d) outlived litefs", pid)
	}
	if isMounted(e.mountDir) {
		t.Fatal("still mounted after litefs exited")
	}
	// sh itself died of the SIGTERM: its status, as a shell reports it.
	if code := r.cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("litefs exited %d, want the command's %d:\n%s", code, 128+int(syscall.SIGTERM), r.logs)
	}
	if !strings.Contains(r.logs.String(), "shut down cleanly") {
		t.Fatalf("litefs log:\n%s", r.logs)
	}
	fds, err := os.ReadFile(filepath.Join(r.out, "fds"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(fds), "/dev/fuse") {
		t.Fatalf("the app inherited a FUSE descriptor:\n%s", fds)
	}
}

// Two signals in quick succession: the second cuts the app's grace short
// (SIGKILL to the group), and litefs still unmounts cleanly.
func TestExecTwoSignals(t *testing.T) {
	e := newEnv(t, "0s")
	r := startExec(t, e)
	pid := r.appPid()
	for _, s := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		if err := r.cmd.Process.Signal(s); err != nil {
			t.Fatal(err)
		}
	}
	r.wait(t)
	if alive(pid) {
		t.Fatalf("the app (pid %d) outlived litefs", pid)
	}
	if isMounted(e.mountDir) {
		t.Fatalf("still mounted after two signals:\n%s", r.logs)
	}
	if strings.Contains(r.events(), "exited") {
		t.Logf("the app finished its grace second before the second signal was handled")
	}
}
