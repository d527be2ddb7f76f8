// Command smppd is the SMPP proxy daemon: ESMEs bind to it, it forwards their messages to the
// upstream SMSC pools of its configuration.
//
//	smppd [-config FILE] [-check-config]
//
// Without -config it runs the built-in defaults (configs/dev.yaml spells them out).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/node"
)

func main() {
	path := flag.String("config", "", "configuration file (YAML); empty: built-in defaults")
	check := flag.Bool("check-config", false, "validate the configuration and exit")
	flag.Parse()
	os.Exit(run(*path, *check))
}

func run(path string, check bool) int {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	if check {
		fmt.Printf("%s: OK\n", nameOr(path, "built-in defaults"))
		return 0
	}
	log := newLogger(cfg.Log)
	n, err := node.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := n.Start(); err != nil {
		log.Error("cannot start", "err", err)
		_ = n.Shutdown(context.Background())
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for waiting := true; waiting; {
		select {
		case <-hup:
			_ = n.Reload() // logs its outcome; a bad file keeps the old data
		case <-ctx.Done():
			waiting = false
		}
	}
	stop() // a second signal kills the process the default way
	log.Info("signal received, draining")
	if err := n.Shutdown(context.Background()); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func nameOr(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

func newLogger(c config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
