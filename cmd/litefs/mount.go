package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/internal/daemon"
)

// mountCommand runs the daemon until SIGTERM/SIGINT (or until -exec's
// command exits): flush staging within shutdown-timeout, unmount. A second
// signal exits at once; staging keeps what was not uploaded.
func mountCommand(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("litefs mount", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (default $LITEFS_CONFIG, else "+config.DefaultPath+")")
	execCmd := fs.String("exec", "", "run this command once the mount is ready; exit with its status")
	logFormat := fs.String("log-format", "text", "text or json")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
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
	var child *exec.Cmd
	childDone := make(chan error, 1)
	if *execCmd != "" {
		child = exec.Command("sh", "-c", *execCmd)
		child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := child.Start(); err != nil {
			logger.Error("exec failed", "cmd", *execCmd, "err", err)
			status = 1
			childDone <- err
		} else {
			go func() { childDone <- child.Wait() }()
		}
	}

	select {
	case sig := <-sigs:
		logger.Info("shutting down", "signal", sig.String(), "timeout", time.Duration(cfg.ShutdownTimeout))
		if child != nil && child.Process != nil {
			_ = child.Process.Signal(syscall.SIGTERM)
			<-childDone
		}
	case err := <-childDone:
		status = exitStatus(err)
		logger.Info("command exited; shutting down", "status", status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- dm.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			logger.Error("shutdown incomplete", "err", err)
			if status == 0 {
				status = 1
			}
		} else {
			logger.Info("shut down cleanly")
		}
	case <-sigs:
		logger.Warn("second signal: exiting now; staging keeps what was not uploaded")
		return 1
	}
	return status
}

func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 1
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
