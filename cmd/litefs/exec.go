package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// app is -exec's command: `sh -c CMD` in a process group of its own, so a
// signal reaches the app and not only the shell (dash forwards none, and
// `sh -c "cd / && app"` forks app instead of exec'ing it), and litefs can
// tell when every process of the group has exited before it unmounts (a
// process left behind would hang in a FUSE request or hold the app's port).
//
// litefs becomes a child subreaper, so processes orphaned inside the group
// (the app, once sh dies) are reparented to litefs, and one goroutine reaps
// the whole group with wait4(-pgid): the shell's status is kept; the group is
// gone when wait4 answers ECHILD. Nothing else in litefs waits for children
// while the app runs.
type app struct {
	pid    int
	status chan int      // the shell's exit status, once
	gone   chan struct{} // closed when no process of the group is left
}

// startApp starts `sh -c cmdline`. Its stdio is litefs's; no other descriptor
// is inherited (Go opens files close-on-exec, go-fuse sets it on /dev/fuse).
func startApp(cmdline string) (*app, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &app{pid: cmd.Process.Pid, status: make(chan int, 1), gone: make(chan struct{})}
	// cmd.Wait is never called: the reaper below collects the shell too.
	go a.reap()
	return a, nil
}

func (a *app) reap() {
	defer close(a.gone)
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-a.pid, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil { // ECHILD: the group is empty
			return
		}
		if pid == a.pid {
			a.status <- waitStatus(ws)
		}
	}
}

// waitStatus is the shell's exit status, or 128+N when signal N killed it.
func waitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// signal sends sig to every process of the group.
func (a *app) signal(sig syscall.Signal) {
	_ = syscall.Kill(-a.pid, sig)
}

// stop ends the group: sig to every process, up to grace for all of them to
// exit, then SIGKILL. A value on more (a second signal from the user) cuts
// the grace short, and hurried says so. It returns once the group is gone,
// or 5 s after the SIGKILL if it is not (a process stuck in the kernel).
func (a *app) stop(sig syscall.Signal, grace time.Duration, more <-chan os.Signal) (gone, hurried bool) {
	a.signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-a.gone:
		return true, false
	case <-t.C:
	case <-more:
		hurried = true
	}
	a.signal(syscall.SIGKILL)
	select {
	case <-a.gone:
		return true, hurried
	case <-time.After(5 * time.Second):
		return false, hurried
	}
}
