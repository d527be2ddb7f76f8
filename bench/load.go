package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smppd/smppd/smpp"
)

// Load is a set of bound transceivers, each driven by one goroutine that keeps its window full
// with the same submit_sm. Submitting and answering allocate nothing.
type Load struct {
	conns []*conn
	// Vary, if > 0, is the offset in the PDU of 8 bytes each submit overwrites with a hex
	// counter unique within the run (connection and message number), so no two messages are
	// alike: for measuring stages such as dedup, which would otherwise answer most of them as
	// duplicates without forwarding.
	Vary int
	// Delivered counts the deliver_sm (receipts, MO) the connections received; each is
	// answered ESME_ROK at once.
	Delivered atomic.Int64
}

// conn is one ESME bind of a Load. Its window is a channel of preallocated slots: a submit takes
// one, its SubmitDone gives it back, so responses may come in any order.
type conn struct {
	c     *smpp.Client
	epoch time.Time // slot.sent is relative to it: time.Since reads one clock, time.Now two
	slots []slot
	free  chan *slot    // holds the slots not in flight
	up    chan struct{} // OnFree: the bind came up (or a slot freed)

	lat      []time.Duration // lat[i]: submit-to-response time of the i-th answer of this run
	answered atomic.Int64    // SubmitDone calls this run
	failed   atomic.Int64    // answers other than ESME_ROK, errors, refused submits
	aborted  atomic.Bool

	mu       sync.Mutex
	firstErr error // guarded by mu
}

// slot is one window position; it is the smpp.Waiter of the submit occupying it.
type slot struct {
	c    *conn
	sent time.Duration // since c.epoch
}

// SubmitDone implements smpp.Waiter.
func (s *slot) SubmitDone(_ *smpp.Batch, st smpp.Status, _ []byte, err error) {
	c := s.c
	if i := c.answered.Add(1) - 1; i < int64(len(c.lat)) {
		c.lat[i] = time.Since(c.epoch) - s.sent
	}
	switch {
	case err != nil:
		c.fail(err)
	case st != smpp.StatusOK:
		c.fail(fmt.Errorf("answered %s", st.String()))
	}
	c.free <- s // never blocks: the channel holds every slot
}

func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.failed.Add(1) == 1 {
		c.firstErr = err
	}
	c.mu.Unlock()
}

func (c *conn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.firstErr
}

// Dial binds conns transceivers to addr, each with the given window, and waits up to timeout for
// all of them to be bound.
func Dial(addr, systemID, password string, conns, window int, timeout time.Duration) (*Load, error) {
	l := &Load{}
	for i := range conns {
		c := &conn{epoch: time.Now(), slots: make([]slot, window), free: make(chan *slot, window), up: make(chan struct{}, 1)}
		for j := range c.slots {
			c.slots[j].c = c
			c.free <- &c.slots[j]
		}
		cfg := smpp.DefaultClientConfig()
		cfg.Name, cfg.Index, cfg.Addr, cfg.SystemID, cfg.Password = "load", i, addr, systemID, password
		cfg.BindType, cfg.Window, cfg.Logger = smpp.Transceiver, window, slog.New(slog.DiscardHandler)
		cfg.OnFree = func() {
			select {
			case c.up <- struct{}{}:
			default:
			}
		}
		cfg.OnDeliver = func(cl *smpp.Client, ref smpp.DeliverRef, _ []byte) {
			l.Delivered.Add(1)
			_ = cl.RespondDeliver(ref, smpp.StatusOK)
		}
		c.c = smpp.NewClient(cfg)
		c.c.Start()
		l.conns = append(l.conns, c)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, c := range l.conns {
		for !c.c.Bound() {
			select {
			case <-c.up:
			case <-deadline.C:
				l.Close()
				return nil, fmt.Errorf("bind to %s as %s: not bound within %s", addr, systemID, timeout)
			}
		}
	}
	return l, nil
}

// Close unbinds every connection.
func (l *Load) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range l.conns {
		_ = c.c.Close(ctx)
	}
}

// Result is the outcome of one Run.
type Result struct {
	Msgs    int
	Elapsed time.Duration
	Err     error // nil only if every message was answered ESME_ROK in time

	lat [][]time.Duration
}

// Rate returns messages per second.
func (r *Result) Rate() float64 { return float64(r.Msgs) / r.Elapsed.Seconds() }

// Percentiles returns the submit-to-response latency at each quantile q (0..1).
func (r *Result) Percentiles(qs ...float64) []time.Duration {
	all := slices.Concat(r.lat...)
	slices.Sort(all)
	out := make([]time.Duration, len(qs))
	for i, q := range qs {
		if len(all) > 0 {
			out[i] = all[min(int(q*float64(len(all))), len(all)-1)]
		}
	}
	return out
}

// Run submits pdu n times, spread evenly over the connections, and waits for every answer or
// until timeout. pdu is only read; the client rewrites the sequence number in its own copy.
func (l *Load) Run(pdu []byte, n int, timeout time.Duration) Result {
	r := Result{Msgs: n, lat: make([][]time.Duration, len(l.conns))}
	for i, c := range l.conns {
		share := n / len(l.conns)
		if i < n%len(l.conns) {
			share++
		}
		if cap(c.lat) < share {
			c.lat = make([]time.Duration, share)
		}
		c.lat = c.lat[:share]
		c.answered.Store(0)
		c.mu.Lock()
		c.failed.Store(0)
		c.firstErr = nil
		c.mu.Unlock()
	}
	abort := make(chan struct{})
	t := time.AfterFunc(timeout, func() { close(abort) })
	defer t.Stop()
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range l.conns {
		wg.Add(1)
		go func() { defer wg.Done(); c.drive(pdu, abort, l.Vary, i) }()
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	var errs []error
	for i, c := range l.conns {
		r.lat[i] = c.lat[:min(c.answered.Load(), int64(len(c.lat)))]
		switch {
		case c.aborted.Load():
			errs = append(errs, fmt.Errorf("conn %d: %d of %d answered within %s", i, c.answered.Load(), len(c.lat), timeout))
		case c.failed.Load() > 0:
			errs = append(errs, fmt.Errorf("conn %d: %d of %d not accepted, first: %w", i, c.failed.Load(), len(c.lat), c.err()))
		case c.answered.Load() != int64(len(c.lat)):
			errs = append(errs, fmt.Errorf("conn %d: %d answers to %d submits", i, c.answered.Load(), len(c.lat)))
		}
	}
	r.Err = errors.Join(errs...)
	return r
}

// drive submits len(c.lat) times keeping the window full, then waits for the last answers by
// taking every slot back.
func (c *conn) drive(pdu []byte, abort <-chan struct{}, vary, index int) {
	if vary > 0 {
		pdu = append([]byte(nil), pdu...) // this connection's copy, rewritten per submit
	}
	take := func() *slot {
		select {
		case s := <-c.free:
			return s
		case <-abort:
			c.aborted.Store(true)
			return nil
		}
	}
	for n := range len(c.lat) {
		s := take()
		if s == nil {
			return
		}
		if vary > 0 {
			v := uint32(index)<<24 | uint32(n)
			for k := 7; k >= 0; k-- {
				pdu[vary+k] = "0123456789abcdef"[v&0xF]
				v >>= 4
			}
		}
		s.sent = time.Since(c.epoch)
		if err := c.c.Submit(pdu, s); err != nil {
			c.fail(fmt.Errorf("submit: %w", err))
			c.free <- s
		}
	}
	for range c.slots {
		if take() == nil {
			return
		}
	}
	for i := range c.slots {
		c.free <- &c.slots[i]
	}
}
