package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/internal/daemon"
)

// mountCommand runs the daemon until SIGTERM/SIGINT (or until -exec's
// command exits). With -exec, a signal goes to the command's whole process
// group and litefs waits for the group (within shutdown-timeout, then
// SIGKILL) before it unmounts, so no process of the app is left hung in a
// FUSE request. Then it uploads what is staged within what is left of
// shutdown-timeout and unmounts. A second signal cuts both waits short, yet
// the mount is still taken down cleanly; staging keeps what was not uploaded.
func mountCommand(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("litefs mount", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (default $LITEFS_CONFIG, else "+config.DefaultPath+")")
	execCmd := fs.String("exec", "", "run this command (with sh -c) once the mount is ready; exit with its status")
	logFormat := fs.String("log-format", "text", "text or json")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "litefs mount: unexpected argument %q: the command to run goes in -exec \"...\"\n", fs.Arg(0))
		return 2
	}
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "litefs mount:", err)
		return 2
	}
	cfg, err := config.Read(config.FilePath(*configPath))
	if err != nil {
		fmt.Fprintln(stderr, "litefs mount:", err)
		return 1
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	startCtx, cancelStart := context.WithCancel(context.Background())
	go func() {
		select {
		case <-sigs:
			cancelStart()
		case <-startCtx.Done():
		}
	}()
	dm := daemon.New(cfg, logger)
	err = dm.Start(startCtx)
	cancelStart()
	if err != nil {
		logger.Error("start failed", "err", err)
		return 1
	}

	status := 0
	var child *app
	var childStatus <-chan int
	if *execCmd != "" {
		if child, err = startApp(*execCmd); err != nil {
			logger.Error("exec failed", "cmd", *execCmd, "err", err)
			status = 1
		} else {
			childStatus = child.status
		}
	}

	timeout := time.Duration(cfg.ShutdownTimeout)
	var sig os.Signal = syscall.SIGTERM
	select {
	case sig = <-sigs:
		logger.Info("shutting down", "signal", sig.String(), "timeout", timeout)
	case status = <-childStatus:
		logger.Info("command exited; shutting down", "status", status)
	case <-startFailed(status):
	}
	deadline := time.Now().Add(timeout)
	hurry := false
	if child != nil {
		// The shell may be gone while the app it forked still runs: the
		// group, not the shell, must be empty before the unmount.
		var gone bool
		gone, hurry = child.stop(sig.(syscall.Signal), time.Until(deadline), sigs)
		if !gone {
			logger.Warn("processes of -exec's command did not exit after SIGKILL; unmounting anyway")
		}
		select {
		case status = <-childStatus:
		default:
		}
	}

	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	done := make(chan error, 1)
	if hurry {
		logger.Warn("second signal: unmounting without uploading; staging keeps what was not uploaded")
		cancel()
	}
	go func() { done <- dm.Shutdown(ctx) }()
	var err2 error
	select {
	case err2 = <-done:
	case <-sigs:
		logger.Warn("second signal: giving up on uploads; staging keeps what was not uploaded")
		cancel()
		err2 = <-done
	}
	if err2 != nil {
		logger.Error("shutdown incomplete", "err", err2)
		if status == 0 {
			status = 1
		}
	} else {
		logger.Info("shut down cleanly")
	}
	return status
}

// startFailed is a ready channel when -exec could not start (status set), so
// mount goes straight to shutdown; otherwise nil (blocks forever).
func startFailed(status int) <-chan time.Time {
	if status != 0 {
		return time.After(0)
	}
	return nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: use text or json", format)
}
