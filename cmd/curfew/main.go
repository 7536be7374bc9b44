// Command curfew is the parental-control daemon and its command line.
// This file only wires the packages together; see pkg/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"curfew/pkg/cli"
	"curfew/pkg/daemon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], &cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Daemon: daemon.Command})
	stop()
	os.Exit(code)
}
