package smpp_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

const waitTimeout = 5 * time.Second

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	smpptest.WaitFor(t, what, waitTimeout, cond)
}

func startSim(t *testing.T, cfg smpptest.Config) *smpptest.SMSC {
	t.Helper()
	sim, err := smpptest.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

// startClient starts a client bound to addr as smppd/smppd; mod adjusts the config first.
func startClient(t *testing.T, addr string, mod func(*smpp.ClientConfig)) *smpp.Client {
	t.Helper()
	cfg := smpp.DefaultClientConfig()
	cfg.Name, cfg.Addr, cfg.SystemID, cfg.Password = "test", addr, "smppd", "smppd"
	cfg.Window, cfg.ResponseTimeout = 10, 2*time.Second
	cfg.ReconnectMin, cfg.ReconnectMax = 20*time.Millisecond, 200*time.Millisecond
	cfg.Logger = slog.New(slog.DiscardHandler)
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := smpp.NewClient(cfg)
	c.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

type waiter = smpptest.Outcomes

func submitPDU(dst string) []byte {
	return smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 0, &smpp.Submit{SrcAddr: []byte("12345"), DstTON: 1, DstNPI: 1,
		DstAddr: []byte(dst), ShortMessage: []byte("hello")})
}

func mustSubmit(t *testing.T, c *smpp.Client, w smpp.Waiter) {
	t.Helper()
	if err := c.Submit(submitPDU("447700900001"), w); err != nil {
		t.Fatalf("Submit: %v", err)
	}
}

func TestClientSubmit(t *testing.T) {
	sim := startSim(t, smpptest.Config{Record: true})
	c := startClient(t, sim.Addr(), nil)
	waitFor(t, "bind", c.Bound)
	w := make(waiter, 5)
	for i := 0; i < 5; i++ {
		mustSubmit(t, c, w)
	}
	ids := map[string]bool{}
	for i := 0; i < 5; i++ {
		o := w.Next(t, waitTimeout)
		if o.Err != nil || o.Status != smpp.StatusOK {
			t.Fatalf("outcome %+v", o)
		}
		ids[o.ID] = true
	}
	for n := 1; n <= 5; n++ {
		if !ids[strconv.Itoa(n)] {
			t.Errorf("id %d missing from %v", n, ids)
		}
	}
	if sim.Count() != 5 || sim.Accepted() != 5 || c.Free() != 10 || c.InUse() != 0 {
		t.Fatalf("count %d accepted %d free %d inuse %d", sim.Count(), sim.Accepted(), c.Free(), c.InUse())
	}
	seqs := map[uint32]bool{}
	want := submitPDU("447700900001")
	for _, p := range sim.Received() {
		h := smpp.ParseHeader(p)
		if string(p[smpp.HeaderLen:]) != string(want[smpp.HeaderLen:]) || h.Seq == 0 || seqs[h.Seq] {
			t.Fatalf("received %q seq %d: body changed or seq reused", p, h.Seq)
		}
		seqs[h.Seq] = true
	}
	if len(seqs) != 5 {
		t.Fatalf("simulator recorded %d submits", len(seqs))
	}
}

func TestClientWindow(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	sim.SetFaults(smpptest.Faults{Delay: 300 * time.Millisecond})
	c := startClient(t, sim.Addr(), func(cfg *smpp.ClientConfig) { cfg.Window = 3 })
	waitFor(t, "bind", c.Bound)
	w := make(waiter, 3)
	for i := 0; i < 3; i++ {
		mustSubmit(t, c, w)
	}
	if c.Free() != 0 || c.InUse() != 3 {
		t.Fatalf("free %d in use %d with 3 outstanding, window 3", c.Free(), c.InUse())
	}
	if err := c.Submit(submitPDU("4477"), w); !errors.Is(err, smpp.ErrWindowFull) {
		t.Fatalf("4th Submit = %v, want ErrWindowFull", err)
	}
	for i := 0; i < 3; i++ {
		if o := w.Next(t, waitTimeout); o.Err != nil || o.Status != smpp.StatusOK {
			t.Fatalf("outcome %+v", o)
		}
	}
	if c.Free() != 3 {
		t.Fatalf("free %d after all answers, want 3", c.Free())
	}
}

// Many goroutines, each with its own waiter and one submit in flight: the simulator answers at
// once, often before Submit returns; every waiter must get exactly its own outcome.
func TestClientConcurrentMatching(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	c := startClient(t, sim.Addr(), func(cfg *smpp.ClientConfig) { cfg.Window = 16 })
	waitFor(t, "bind", c.Bound)
	const workers, each = 8, 200
	var (
		mu  sync.Mutex
		ids = map[string]bool{}
		wg  sync.WaitGroup
	)
	errs := make(chan error, workers)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := make(waiter, 1)
			for i := 0; i < each; i++ {
				if err := c.Submit(submitPDU("4477"), w); err != nil {
					errs <- err
					return
				}
				select {
				case o := <-w:
					mu.Lock()
					dup := ids[o.ID]
					ids[o.ID] = true
					mu.Unlock()
					if o.Err != nil || o.Status != smpp.StatusOK || dup {
						errs <- errors.New("bad or duplicate outcome " + o.ID)
						return
					}
				case <-time.After(waitTimeout):
					errs <- errors.New("outcome lost")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(ids) != workers*each || sim.Accepted() != workers*each || c.InUse() != 0 {
		t.Fatalf("ids %d accepted %d in use %d", len(ids), sim.Accepted(), c.InUse())
	}
}

func TestClientThrottled(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	sim.SetFaults(smpptest.Faults{ThrottleFirst: 2})
	c := startClient(t, sim.Addr(), nil)
	waitFor(t, "bind", c.Bound)
	w := make(waiter, 1)
	for i, want := range []smpp.Status{0x58, 0x58, smpp.StatusOK} {
		mustSubmit(t, c, w)
		if o := w.Next(t, waitTimeout); o.Err != nil || o.Status != want {
			t.Fatalf("submit %d: %+v, want status %#x", i+1, o, uint32(want))
		}
	}
}

func TestClientLinkLost(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	sim.SetFaults(smpptest.Faults{Delay: time.Second, DropAfter: 3})
	c := startClient(t, sim.Addr(), nil)
	waitFor(t, "bind", c.Bound)
	w := make(waiter, 3)
	for i := 0; i < 3; i++ {
		mustSubmit(t, c, w)
	}
	for i := 0; i < 3; i++ {
		if o := w.Next(t, waitTimeout); !errors.Is(o.Err, smpp.ErrLinkLost) {
			t.Fatalf("outcome %+v, want ErrLinkLost", o)
		}
	}
	if c.InDoubt.Load() != 3 || c.InUse() != 0 {
		t.Fatalf("in doubt %d, in use %d", c.InDoubt.Load(), c.InUse())
	}
	sim.SetFaults(smpptest.Faults{})
	waitFor(t, "reconnect", func() bool { return c.Bound() && c.Connects.Load() == 2 })
	mustSubmit(t, c, w)
	if o := w.Next(t, waitTimeout); o.Err != nil || o.Status != smpp.StatusOK {
		t.Fatalf("after reconnect: %+v", o)
	}
}

func TestClientResponseTimeout(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	sim.SetFaults(smpptest.Faults{NoAnswer: true})
	c := startClient(t, sim.Addr(), func(cfg *smpp.ClientConfig) { cfg.ResponseTimeout = 200 * time.Millisecond })
	waitFor(t, "bind", c.Bound)
	w := make(waiter, 1)
	mustSubmit(t, c, w)
	if o := w.Next(t, waitTimeout); !errors.Is(o.Err, smpp.ErrResponseTimeout) {
		t.Fatalf("outcome %+v, want ErrResponseTimeout", o)
	}
	if c.Free() != 10 || c.InDoubt.Load() != 1 || !c.Bound() {
		t.Fatalf("free %d in doubt %d bound %v", c.Free(), c.InDoubt.Load(), c.Bound())
	}
}

// recordHandler passes log records to a channel (dropping them when it is full).
type recordHandler chan slog.Record

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h <- r:
	default:
	}
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

func TestClientRejectBind(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	sim.SetFaults(smpptest.Faults{RejectBind: true})
	logs := make(recordHandler, 100)
	c := startClient(t, sim.Addr(), func(cfg *smpp.ClientConfig) {
		cfg.ReconnectMin, cfg.ReconnectMax = 20*time.Millisecond, 80*time.Millisecond
		cfg.Logger = slog.New(logs)
	})
	// Each refusal is logged with the backoff before the next try: doubling, capped.
	for _, want := range []time.Duration{20, 40, 80, 80} {
		var r slog.Record
		for r.Message != "upstream bind down, reconnecting" {
			select {
			case r = <-logs:
			case <-time.After(waitTimeout):
				t.Fatal("no reconnect attempt logged")
			}
		}
		var backoff time.Duration
		var errText string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "backoff":
				backoff = a.Value.Duration()
			case "err":
				errText = a.Value.String()
			}
			return true
		})
		if backoff != want*time.Millisecond {
			t.Fatalf("backoff %v, want %v", backoff, want*time.Millisecond)
		}
		if want := "ESME_RBINDFAIL"; !contains(errText, want) {
			t.Fatalf("err %q does not mention %s", errText, want)
		}
		if c.Bound() || sim.Binds() != 0 {
			t.Fatal("bound although binds are refused")
		}
	}
	sim.SetFaults(smpptest.Faults{})
	waitFor(t, "bind once binds are accepted", c.Bound)
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestClientCloseDrains(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	sim.SetFaults(smpptest.Faults{Delay: 300 * time.Millisecond})
	c := startClient(t, sim.Addr(), nil)
	waitFor(t, "bind", c.Bound)
	w := make(waiter, 4)
	for i := 0; i < 3; i++ {
		mustSubmit(t, c, w)
	}
	closed := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		c.Close(ctx)
		close(closed)
	}()
	waitFor(t, "Close to stop taking submits", func() bool { return !c.Bound() })
	if err := c.Submit(submitPDU("4477"), w); !errors.Is(err, smpp.ErrNotBound) {
		t.Fatalf("Submit during Close = %v, want ErrNotBound", err)
	}
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		t.Fatal("Close did not return")
	}
	if len(w) != 3 {
		t.Fatalf("%d outcomes when Close returned, want 3", len(w))
	}
	for i := 0; i < 3; i++ {
		if o := <-w; o.Err != nil || o.Status != smpp.StatusOK {
			t.Fatalf("in-flight submit at Close: %+v, want its real response", o)
		}
	}
	waitFor(t, "the simulator to see the unbind", func() bool { return sim.Binds() == 0 })
}

func TestClientCloseDeadline(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	sim.SetFaults(smpptest.Faults{NoAnswer: true})
	c := startClient(t, sim.Addr(), nil)
	waitFor(t, "bind", c.Bound)
	w := make(waiter, 1)
	mustSubmit(t, c, w)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	c.Close(ctx)
	select {
	case o := <-w:
		if !errors.Is(o.Err, smpp.ErrLinkLost) {
			t.Fatalf("outcome %+v, want ErrLinkLost", o)
		}
	default:
		t.Fatal("Close returned before failing the unanswered submit")
	}
}

func TestClientCloseWithoutStart(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	cfg := smpp.DefaultClientConfig()
	cfg.Addr, cfg.Window, cfg.Logger = sim.Addr(), 1, slog.New(slog.DiscardHandler)
	c := smpp.NewClient(cfg)
	done := make(chan struct{})
	go func() {
		c.Close(context.Background())
		c.Close(context.Background()) // idempotent
		c.Start()                     // no-op after Close
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Close of a client never started hangs")
	}
	if err := c.Submit(submitPDU("4477"), make(waiter, 1)); !errors.Is(err, smpp.ErrNotBound) {
		t.Fatalf("Submit after Close = %v, want ErrNotBound", err)
	}
}
