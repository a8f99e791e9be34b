// Command litefs is the litefs daemon and its tools:
//
//	litefs mount   -config FILE [-exec CMD]   mount the FUSE dir and replicate
//	litefs restore [flags] DB                  rebuild a database from its replica
//	litefs ltx     -config FILE DB             list what a replica holds
//	litefs version
package main

import (
	"context"
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
	case "version":
		fmt.Fprintln(stdout, "litefs", Version)
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "litefs: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

const usage = `usage: litefs <command> [flags]

commands:
  mount    mount the FUSE dir over the data dir and replicate every commit
  restore  rebuild a database from its replica
  ltx      list the LTX files a replica holds
  version  print the version

Run 'litefs <command> -h' for a command's flags.
`
