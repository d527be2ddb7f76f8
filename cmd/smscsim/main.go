// Command smscsim runs the smpptest SMSC simulator standalone, for manual tests and benchmarks.
//
// With -http it also serves a small HTTP API for injecting traffic by hand:
//
//	POST /mo     queue an MO message: fields system_id, from, to, text (form or JSON);
//	             answers 202 {"parts": n}, or 400 naming the bad field
//	GET  /stats  the simulator's counters as JSON
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

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
		cfg         smpptest.Config
		faults      smpptest.Faults
		errSt       string
		tlvIDFormat string
		httpAddr    string
		logLevel    slog.Level
	)
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:2776", "listen address")
	flag.StringVar(&cfg.SystemID, "system-id", "smppd", "system_id binds must use")
	flag.StringVar(&cfg.Password, "password", "smppd", "password binds must use")
	flag.BoolVar(&cfg.AnyAccount, "any-account", false, "accept any system_id and password")
	flag.IntVar(&cfg.Window, "window", 1000, "outstanding submits per session before ESME_RTHROTTLED")
	flag.Uint64Var(&cfg.FirstID, "first-id", 1, "number of the first message accepted (ids count up from it)")
	flag.TextVar(&cfg.RespIDFormat, "resp-id-format", smpptest.IDFormat{}, "message id format in submit_sm_resp: dec, hex or HEX, optionally :width for zero padding (e.g. HEX:8)")
	flag.TextVar(&cfg.ReceiptIDFormat, "receipt-id-format", smpptest.IDFormat{}, "message id format in receipts (text id: and receipted_message_id), as -resp-id-format")
	flag.StringVar(&tlvIDFormat, "receipt-tlv-id-format", "", "message id format of the receipted_message_id TLV if it differs from the text's (default: as -receipt-id-format)")
	flag.BoolVar(&cfg.ReceiptTextOnly, "receipt-text-only", false, "send receipts without TLVs: the id only in the text")
	flag.DurationVar(&cfg.ReceiptDelay, "receipt-delay", 0, "send a delivery receipt this long after accepting a submit that asks for one (0: never)")
	flag.BoolVar(&cfg.ReceiptBeforeResp, "receipt-before-resp", false, "send the receipt first and the submit_sm_resp -receipt-delay after it")
	flag.IntVar(&cfg.ReceiptDuplicates, "receipt-duplicates", 0, "send every receipt this many extra times")
	flag.DurationVar(&cfg.RetryBackoff, "retry-backoff", 100*time.Millisecond, "resend an unacknowledged deliver_sm (receipt or MO) after this")
	flag.IntVar(&cfg.DeliverWindow, "deliver-window", 10, "outstanding deliver_sm per session")
	flag.DurationVar(&cfg.ResponseTimeout, "response-timeout", 10*time.Second, "drop a session that leaves a deliver_sm or enquire_link unanswered this long")
	flag.IntVar(&faults.ThrottleEvery, "throttle-every", 0, "answer every Nth submit ESME_RTHROTTLED (0: never)")
	flag.StringVar(&errSt, "error-status", "0x45", "status for -error-every, hex (0x..) or decimal")
	flag.IntVar(&faults.StatusEvery, "error-every", 0, "answer every Nth submit with -error-status (0: never)")
	flag.DurationVar(&faults.Delay, "delay", 0, "delay every answer by this much")
	flag.BoolVar(&faults.NoAnswer, "no-answer", false, "never answer submits")
	flag.IntVar(&faults.DropAfter, "drop-after", 0, "close the connection abruptly on every Nth submit (0: never)")
	flag.StringVar(&httpAddr, "http", "", "serve POST /mo and GET /stats on this address, e.g. 127.0.0.1:2777 (default: off)")
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
	if tlvIDFormat != "" {
		f, err := smpptest.ParseIDFormat(tlvIDFormat)
		if err != nil {
			return fmt.Errorf("-receipt-tlv-id-format: %w", err)
		}
		cfg.ReceiptTLVIDFormat = &f
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sim, err := smpptest.Start(cfg)
	if err != nil {
		return err
	}
	defer sim.Close()
	sim.SetFaults(faults)
	account := fmt.Sprintf("system_id=%s, password=%s", cfg.SystemID, cfg.Password)
	if cfg.AnyAccount {
		account = "any system_id and password"
	}
	fmt.Printf("smscsim listening on %s (%s)\n", sim.Addr(), account)

	if httpAddr != "" {
		ln, err := net.Listen("tcp", httpAddr)
		if err != nil {
			return fmt.Errorf("-http: %w", err)
		}
		hs := &http.Server{Handler: newHTTPHandler(sim), ReadHeaderTimeout: 5 * time.Second}
		served := make(chan error, 1)
		go func() { served <- hs.Serve(ln) }()
		fmt.Printf("smscsim HTTP on http://%s (POST /mo, GET /stats)\n", ln.Addr())
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx)
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				cfg.Logger.Error("http server", "err", err)
			}
		}()
	}
	<-ctx.Done()
	s := sim.Stats()
	cfg.Logger.Info("stopping", "submits", s.Submits, "accepted", s.Accepted, "receipts_acked", s.ReceiptsAcked,
		"receipts_pending", s.ReceiptsPending, "mo_acked", s.MOAcked, "mo_pending", s.MOPending)
	return nil
}

// moRequest is the body of POST /mo.
type moRequest struct {
	SystemID string `json:"system_id"`
	From     string `json:"from"`
	To       string `json:"to"`
	Text     string `json:"text"`
}

// newHTTPHandler serves POST /mo and GET /stats for sim.
func newHTTPHandler(sim *smpptest.SMSC) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mo", func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		var req moRequest
		if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
			dec := json.NewDecoder(r.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				httpError(w, http.StatusBadRequest, "body: want a JSON object with system_id, from, to, text: "+err.Error())
				return
			}
		} else {
			if err := r.ParseForm(); err != nil {
				httpError(w, http.StatusBadRequest, "body: "+err.Error())
				return
			}
			req = moRequest{SystemID: r.PostForm.Get("system_id"), From: r.PostForm.Get("from"),
				To: r.PostForm.Get("to"), Text: r.PostForm.Get("text")}
		}
		parts, err := sim.SendMOText(req.SystemID, req.From, req.To, req.Text)
		switch {
		case errors.Is(err, smpptest.ErrClosed):
			httpError(w, http.StatusServiceUnavailable, err.Error())
			return
		case err != nil:
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]int{"parts": parts})
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, sim.Stats())
	})
	return mux
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
