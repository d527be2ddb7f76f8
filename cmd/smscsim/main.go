// Command smscsim runs the smpptest SMSC simulator standalone, for manual tests and benchmarks.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "smscsim:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg      smpptest.Config
		faults   smpptest.Faults
		errSt    string
		logLevel slog.Level
	)
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:2776", "listen address")
	flag.StringVar(&cfg.SystemID, "system-id", "smppd", "system_id binds must use")
	flag.StringVar(&cfg.Password, "password", "smppd", "password binds must use")
	flag.BoolVar(&cfg.AnyAccount, "any-account", false, "accept any system_id and password")
	flag.IntVar(&cfg.Window, "window", 1000, "outstanding submits per session before ESME_RTHROTTLED")
	flag.DurationVar(&cfg.ReceiptDelay, "receipt-delay", 0, "send a delivery receipt this long after accepting a submit that asks for one (0: never)")
	flag.IntVar(&faults.ThrottleEvery, "throttle-every", 0, "answer every Nth submit ESME_RTHROTTLED (0: never)")
	flag.StringVar(&errSt, "error-status", "0x45", "status for -error-every, hex (0x..) or decimal")
	flag.IntVar(&faults.StatusEvery, "error-every", 0, "answer every Nth submit with -error-status (0: never)")
	flag.DurationVar(&faults.Delay, "delay", 0, "delay every answer by this much")
	flag.BoolVar(&faults.NoAnswer, "no-answer", false, "never answer submits")
	flag.IntVar(&faults.DropAfter, "drop-after", 0, "close the connection abruptly on every Nth submit (0: never)")
	flag.TextVar(&logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	flag.Parse()

	st, err := strconv.ParseUint(errSt, 0, 32)
	if err != nil {
		return fmt.Errorf("-error-status: want a hex (0x45) or decimal (69) command_status, got %q", errSt)
	}
	faults.Status = smpp.Status(st)
	if faults.StatusEvery == 0 {
		faults.Status = 0 // keep Faults zero when no fault is asked for
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sim, err := smpptest.Start(cfg)
	if err != nil {
		return err
	}
	sim.SetFaults(faults)
	account := fmt.Sprintf("system_id=%s, password=%s", cfg.SystemID, cfg.Password)
	if cfg.AnyAccount {
		account = "any system_id and password"
	}
	fmt.Printf("smscsim listening on %s (%s)\n", sim.Addr(), account)
	<-ctx.Done()
	sim.Close()
	cfg.Logger.Info("stopped", "submits", sim.Count(), "accepted", sim.Accepted())
	return nil
}
