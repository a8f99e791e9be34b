// Command litefs is the litefs daemon and its tools:
//
//	litefs mount   -config FILE [-exec CMD]   mount the FUSE dir and replicate
//	litefs restore [flags] DB                  rebuild a database from its replica
//	litefs ltx     [-json] -config FILE DB     list what a replica holds
//	litefs status  [-json] [-config FILE]      ask the running daemon how replication goes
//	litefs wait    [-config FILE] -txid N DB   wait until the replica holds transaction N
//	litefs version
//
// Every command answers -h with its usage (exit status 0) and exits 2 on a
// mistake in the command line: an unknown flag, a missing or extra
// argument. Relative paths are taken from the working directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/litefs-dev/litefs/internal/restorecmd"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

func main() {
	// A sidecar shares the pod's memory budget: collect garbage before the
	// heap grows past a few tens of MiB (snapshots of large databases
	// allocate per page). GOMEMLIMIT in the environment overrides it.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(40 << 20)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "mount":
		return mountCommand(args[1:], stderr)
	case "restore":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return restorecmd.Run(ctx, "litefs restore", args[1:], stderr)
	case "ltx":
		return ltxCommand(args[1:], stdout, stderr)
	case "status":
		return statusCommand(args[1:], stdout, stderr)
	case "wait":
		return waitCommand(args[1:], stdout, stderr)
	case "version":
		return versionCommand(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "litefs: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

// versionCommand prints the version; it takes no arguments.
func versionCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("litefs version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, "usage: litefs version\n\nPrints the version litefs was built as.\n") }
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return usageErr(stderr, "litefs version", "unexpected argument %q: version takes none", fs.Arg(0))
	}
	fmt.Fprintln(stdout, "litefs", Version)
	return 0
}

const usage = `usage: litefs <command> [flags]

commands:
  mount    mount the FUSE dir over the data dir and replicate every commit
  restore  rebuild a database from its replica
  ltx      list the LTX files a replica holds (-json for JSON)
  status   ask the running daemon how each database replicates (-json for JSON)
  wait     wait until the replica holds a transaction (-txid N), for scripts
  version  print the version

Run 'litefs <command> -h' for a command's flags.
`
