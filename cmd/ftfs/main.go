// Command ftfs is the fault-tolerant file sharing system: server roles and
// user CLI in one binary. See the cli package.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ftfs/ftfs/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
