// Command restore rebuilds a litefs database from its replica. It is the
// same as `litefs restore`, as a small binary for init containers.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/litefs-dev/litefs/internal/restorecmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(restorecmd.Run(ctx, "restore", os.Args[1:], os.Stderr))
}
