package smpp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linxGnu/gosmpp/pdu"
)

// ClientConfig configures one upstream bind (smppd acting as an ESME towards an SMSC).
type ClientConfig struct {
	Name                string // pool name, for logs
	Index               int    // bind number within the pool, for logs
	Addr                string
	SystemID            string
	Password            string
	SystemType          string
	BindType            BindType
	Window              int     // outstanding submit_sm, 1..65535
	Throughput          float64 // submits per second, 0: unlimited
	EnquireLinkInterval time.Duration
	ResponseTimeout     time.Duration // no submit_sm_resp within this: outcome in doubt
	ReconnectMin        time.Duration
	ReconnectMax        time.Duration
	DialTimeout         time.Duration
	MaxPDUSize          int
	TLS                 *tls.Config // nil: plain TCP
	Logger              *slog.Logger

	// OnFree is called (from the client's goroutines, must not block) when window frees up or
	// the bind comes up.
	OnFree func()
	// OnDeliver receives a deliver_sm (pdu, header included, valid only during the call) on the
	// bind's read loop; it must not block and must answer, now or later, with RespondDeliver.
	// nil: deliver_sm is answered ESME_RX_T_APPN (temporary error, so the SMSC keeps and retries it).
	OnDeliver func(c *Client, ref DeliverRef, pdu []byte)
}

// DefaultClientConfig returns the per-upstream defaults documented in configs/dev.yaml.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{BindType: Transceiver, Window: 100, EnquireLinkInterval: 30 * time.Second,
		ResponseTimeout: 10 * time.Second, ReconnectMin: 250 * time.Millisecond, ReconnectMax: 30 * time.Second,
		DialTimeout: 5 * time.Second, MaxPDUSize: 65536}
}

// Validate reports the first invalid field.
func (c *ClientConfig) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("address: required")
	case c.Window < 1 || c.Window > 65535:
		return fmt.Errorf("window: must be 1..65535, got %d", c.Window)
	case c.BindType == Unbound:
		return errors.New("bind_type: required")
	case c.ResponseTimeout <= 0 || c.EnquireLinkInterval <= 0 || c.ReconnectMin <= 0 || c.ReconnectMax < c.ReconnectMin:
		return errors.New("timeouts must be positive and reconnect_min <= reconnect_max")
	}
	return nil
}

// Waiter receives the outcome of one submit, exactly once, on a client goroutine; it must not
// block. err != nil means the outcome is unknown (ErrLinkLost, ErrResponseTimeout): the
// SMSC may or may not have accepted the message. messageID is valid only during the call.
type Waiter interface {
	//
	// b, if not nil, belongs to the calling goroutine (the bind's read loop): answers queued
	// with it (Session.RespondIn) leave when that loop is about to block, batched.
	SubmitDone(b *Batch, status Status, messageID []byte, err error)
}

var (
	// ErrNotBound means the bind is down (connecting, or closed); nothing was sent.
	ErrNotBound = errors.New("upstream bind not bound")
	// ErrWindowFull means all window slots are in use; nothing was sent.
	ErrWindowFull = errors.New("upstream window full")
	// ErrRateLimited means the bind's throughput limit has no token now; nothing was sent.
	ErrRateLimited = errors.New("upstream throughput limit reached")
	// ErrLinkLost means the connection died with the submit unanswered: outcome unknown.
	ErrLinkLost = errors.New("upstream link lost before response")
	// ErrResponseTimeout means no response came within response_timeout: outcome unknown.
	ErrResponseTimeout = errors.New("upstream response timeout")
)

type slot struct {
	w      Waiter
	issued uint64 // Client.ticks when sent: the watchdog's clock, so no clock read per submit
	gen    uint16
}

// Client is one upstream bind with its own window accounting: the router asks Free() and gets
// an answer now, and a response that arrives before anything else about the request is still
// matched (the slot is taken before the PDU is queued).
//
// Sequence numbers encode the slot: seq = gen<<16 | (slot+1); seq with low 16 bits 0 are our
// control PDUs (enquire_link, unbind). A late response whose gen no longer matches is ignored.
type Client struct {
	cfg     ClientConfig
	log     *slog.Logger
	limiter *Limiter

	used  atomic.Int32  // slots in use
	ticks atomic.Uint64 // watchdog ticks, the clock of response deadlines
	bound atomic.Bool

	mu    sync.Mutex
	slots []slot   // guarded by mu
	free  []uint16 // guarded by mu: free slot indexes (stack)
	conn  *clientConn
	ctl   uint32 // guarded by mu: control sequence counter

	started bool // guarded by mu: run was started (at most once)

	closing atomic.Bool
	stop    chan struct{}
	done    chan struct{}

	// Counters for metrics; read with atomic loads.
	Connects, Disconnects, InDoubt atomic.Uint64
}

type clientConn struct {
	conn       net.Conn
	w          *writer
	fr         *frameReader
	lastRead   atomic.Int64 // unix nanos of the last read
	elSent     atomic.Int64 // unix nanos of our unanswered enquire_link, 0: none
	unbindSent atomic.Bool
	batch      Batch // read loop: writers to wake before the next blocking read
	// read loop: the SMSC sent unbind (seq peerUnbind); we answer once our submits in flight
	// are answered, so none of them is lost with the connection.
	peerUnbound bool
	peerUnbind  uint32
}

// NewClient returns a client; Start connects it.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.MaxPDUSize == 0 {
		cfg.MaxPDUSize = 65536
	}
	c := &Client{cfg: cfg, limiter: NewLimiter(cfg.Throughput), slots: make([]slot, cfg.Window),
		free: make([]uint16, cfg.Window), stop: make(chan struct{}), done: make(chan struct{}),
		log: cfg.Logger.With("component", "smpp.client", "upstream", cfg.Name, "bind", cfg.Index)}
	for i := range c.free {
		c.free[i] = uint16(cfg.Window - 1 - i)
	}
	return c
}

// Name returns "pool#index".
func (c *Client) Name() string { return fmt.Sprintf("%s#%d", c.cfg.Name, c.cfg.Index) }

// Config returns the client's configuration.
func (c *Client) Config() *ClientConfig { return &c.cfg }

// Bound reports whether the bind is up and accepting submits.
func (c *Client) Bound() bool { return c.bound.Load() }

// Free returns the number of free window slots, 0 when not bound.
func (c *Client) Free() int {
	if !c.bound.Load() {
		return 0
	}
	return c.cfg.Window - int(c.used.Load())
}

// InUse returns the number of outstanding submits.
func (c *Client) InUse() int { return int(c.used.Load()) }

// Limiter returns the bind's throughput limiter (nil: unlimited).
func (c *Client) Limiter() *Limiter { return c.limiter }

// Submit sends pdu (a whole submit_sm; its sequence number is replaced, nothing else changes) and
// reports the outcome to w. A non-nil error means nothing was sent and w will not be called.
func (c *Client) Submit(pdu []byte, w Waiter) error { return c.SubmitIn(nil, pdu, w, 1) }

// SubmitIn is Submit with the writer's wake-up deferred to b (see Batch; b must belong to the
// calling goroutine) and a throughput cost of segments: the SMS segments this PDU stands for on
// the bind's limit (0 for a later part of a long message whose parts were admitted together).
func (c *Client) SubmitIn(b *Batch, pdu []byte, w Waiter, segments int) error {
	if len(pdu) < HeaderLen {
		return fmt.Errorf("submit: %d-byte PDU, shorter than a header", len(pdu))
	}
	c.mu.Lock()
	cc := c.conn
	switch {
	case cc == nil || !c.bound.Load():
		c.mu.Unlock()
		return ErrNotBound
	case len(c.free) == 0:
		c.mu.Unlock()
		return ErrWindowFull
	case segments > 0 && !c.limiter.Allow(segments):
		c.mu.Unlock()
		return ErrRateLimited
	}
	// The slot is complete before the PDU is queued, so even an answer that races ahead finds it.
	i := c.free[len(c.free)-1]
	c.free = c.free[:len(c.free)-1]
	s := &c.slots[i]
	s.gen++
	s.w, s.issued = w, c.ticks.Load()
	gen := s.gen
	c.used.Add(1)
	c.mu.Unlock()
	// Queue outside c.mu, which the read loop needs for every answer.
	if cc.w.appendRaw(pdu, uint32(gen&0x7FFF)<<16|uint32(i+1), b) == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.w == w && s.gen == gen { // still ours: undo, nothing was sent
		c.release(int(i))
		return ErrNotBound
	}
	return nil // the link's end already failed the slot and told w (in doubt)
}

// take removes the waiter for seq, if it is current.
func (c *Client) take(seq uint32) Waiter {
	i := int(seq&0xFFFF) - 1
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.slots) || c.slots[i].w == nil || c.slots[i].gen&0x7FFF != uint16(seq>>16) {
		return nil
	}
	w := c.slots[i].w
	c.release(i)
	return w
}

// release frees slot i; c.mu held.
func (c *Client) release(i int) {
	c.slots[i].w = nil
	c.free = append(c.free, uint16(i))
	c.used.Add(-1)
}

type failed struct {
	w   Waiter
	err error
}

// failWhere fails and frees every slot for which pred holds; callbacks run after unlocking.
func (c *Client) failWhere(pred func(*slot) bool, err error) {
	var out []failed
	c.mu.Lock()
	for i := range c.slots {
		if s := &c.slots[i]; s.w != nil && pred(s) {
			out = append(out, failed{s.w, err})
			c.release(i)
		}
	}
	c.mu.Unlock()
	for _, f := range out {
		c.InDoubt.Add(1)
		f.w.SubmitDone(nil, StatusSysErr, nil, f.err)
	}
	if len(out) > 0 {
		c.log.Warn("submits in doubt: upstream outcome unknown, not resent", "count", len(out), "reason", err.Error())
		c.notifyFree()
	}
}

func (c *Client) notifyFree() {
	if c.cfg.OnFree != nil {
		c.cfg.OnFree()
	}
}

// Start runs the connect/bind/reconnect loop in the background until Close. It does nothing
// after Close or a previous Start.
func (c *Client) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.closing.Load() {
		return
	}
	c.started = true
	go c.run()
}

func (c *Client) run() {
	defer close(c.done)
	backoff := c.cfg.ReconnectMin
	for !c.closing.Load() {
		started := time.Now()
		err := c.session()
		if c.closing.Load() {
			return
		}
		if time.Since(started) > 10*c.cfg.ReconnectMax || time.Since(started) > time.Minute {
			backoff = c.cfg.ReconnectMin
		}
		c.log.Warn("upstream bind down, reconnecting", "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-c.stop:
			return
		}
		backoff = min(2*backoff, c.cfg.ReconnectMax)
	}
}

// session dials, binds and serves one connection until it fails or the client closes.
func (c *Client) session() error {
	d := net.Dialer{Timeout: c.cfg.DialTimeout}
	conn, err := d.Dial("tcp", c.cfg.Addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	if c.cfg.TLS != nil {
		tcfg := c.cfg.TLS
		if tcfg.ServerName == "" && !tcfg.InsecureSkipVerify { // as tls.Dial does: verify the host dialled
			tcfg = tcfg.Clone()
			tcfg.ServerName, _, _ = net.SplitHostPort(c.cfg.Addr)
		}
		tc := tls.Client(conn, tcfg)
		_ = tc.SetDeadline(time.Now().Add(c.cfg.DialTimeout))
		if err := tc.Handshake(); err != nil {
			_ = conn.Close()
			return fmt.Errorf("tls handshake: %w", err)
		}
		_ = tc.SetDeadline(time.Time{})
		conn = tc
	}
	cc := &clientConn{conn: conn, w: newWriter(conn, c.cfg.ResponseTimeout),
		fr: newFrameReader(conn, uint32(c.cfg.MaxPDUSize), c.cfg.ResponseTimeout)}
	if err := c.bind(cc); err != nil {
		_ = conn.Close()
		return err
	}
	cc.fr.idle = time.Time{} // the watchdog handles idleness; reads only time out mid-PDU
	cc.lastRead.Store(time.Now().UnixNano())
	cc.fr.onRead = func() { cc.lastRead.Store(time.Now().UnixNano()) }
	cc.fr.beforeRead = cc.batch.Flush
	c.mu.Lock()
	c.conn = cc
	c.mu.Unlock()
	go cc.w.loop()
	stopWatch := make(chan struct{})
	go c.watchdog(cc, stopWatch)
	defer close(stopWatch)
	c.bound.Store(!c.closing.Load())
	c.Connects.Add(1)
	c.log.Info("upstream bound", "addr", c.cfg.Addr, "bind_type", c.cfg.BindType.String())
	c.notifyFree()
	err = c.readLoop(cc)
	c.bound.Store(false)
	c.mu.Lock()
	c.conn = nil
	c.mu.Unlock()
	cc.w.close()
	_ = conn.Close()
	<-cc.w.done
	c.Disconnects.Add(1)
	c.failWhere(func(*slot) bool { return true }, ErrLinkLost)
	return err
}

func (c *Client) bind(cc *clientConn) error {
	var bt pdu.BindingType
	switch c.cfg.BindType {
	case Transmitter:
		bt = pdu.Transmitter
	case Receiver:
		bt = pdu.Receiver
	default:
		bt = pdu.Transceiver
	}
	req := pdu.NewBindRequest(bt)
	req.SystemID, req.Password, req.SystemType = c.cfg.SystemID, c.cfg.Password, c.cfg.SystemType
	req.SetSequenceNumber(1)
	buf := pdu.NewBuffer(nil)
	req.Marshal(buf)
	_ = cc.conn.SetWriteDeadline(time.Now().Add(c.cfg.ResponseTimeout))
	if _, err := cc.conn.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("bind: write: %w", err)
	}
	cc.fr.idle = time.Now().Add(c.cfg.ResponseTimeout)
	for {
		frame, h, err := cc.fr.next()
		if err != nil {
			return fmt.Errorf("bind: read response: %w", err)
		}
		// The one request outstanding is our bind, so its *_resp (or a generic_nack) is the
		// answer even when an SMSC gets the sequence number wrong (some test SMSCs do).
		if h.ID != ResponseID(req.CommandID) && h.ID != GenericNack {
			continue // e.g. an early enquire_link; the SMSC will repeat it
		}
		if h.Seq != 1 {
			c.log.Debug("bind_resp with a wrong sequence number, accepted", "seq", h.Seq)
		}
		if h.Status != StatusOK {
			return fmt.Errorf("bind refused by %s: %s (%s)", c.cfg.Addr, h.Status.String(), string(bytes.TrimRight(frame[HeaderLen:], "\x00")))
		}
		return nil
	}
}

func (c *Client) nextCtl() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ctl = c.ctl%0x7FFF + 1 // 1..0x7FFF: a control seq is never 0
	return c.ctl << 16
}

func (c *Client) readLoop(cc *clientConn) error {
	defer cc.batch.Flush()
	for {
		if c.closing.Load() && c.used.Load() == 0 {
			c.sendUnbind(cc) // drained: the SMSC answers unbind_resp and we close
		}
		frame, h, err := cc.fr.next()
		if err != nil {
			if errors.Is(err, ErrCommandLength) {
				_ = cc.w.appendPDU(GenericNack, StatusInvCmdLen, h.Seq, nil)
			}
			return err
		}
		cc.elSent.Store(0)
		switch h.ID {
		case SubmitSMResp, GenericNack:
			if w := c.take(h.Seq); w != nil {
				id, _, _ := cstring(frame[HeaderLen:], 65)
				w.SubmitDone(&cc.batch, h.Status, id, nil)
				c.notifyFree()
			}
			if cc.peerUnbound && c.used.Load() == 0 {
				return c.answerUnbind(cc)
			}
		case EnquireLink:
			_ = cc.w.appendPDU(EnquireLinkResp, StatusOK, h.Seq, nil)
		case EnquireLinkResp:
		case DeliverSM:
			if c.cfg.OnDeliver != nil {
				c.cfg.OnDeliver(c, DeliverRef{cc: cc, Seq: h.Seq}, frame)
			} else {
				_ = cc.w.appendPDU(DeliverSMResp, StatusTempAppErr, h.Seq, nil)
			}
		case Unbind:
			// No new submits on this connection; answer once those in flight are answered
			// (the SMSC answers them before it closes: TCP keeps our submits ahead of this).
			c.mu.Lock()
			c.bound.Store(false)
			c.mu.Unlock()
			cc.peerUnbound, cc.peerUnbind = true, h.Seq
			if c.used.Load() == 0 {
				return c.answerUnbind(cc)
			}
			c.log.Info("SMSC sent unbind; waiting for the answers to our submits in flight", "in_flight", c.used.Load())
		case UnbindResp:
			return io.EOF
		default:
			if !IsResponse(h.ID) {
				_ = cc.w.appendPDU(GenericNack, StatusInvCmdID, h.Seq, nil)
			}
		}
	}
}

// answerUnbind answers the SMSC's unbind and ends the connection.
func (c *Client) answerUnbind(cc *clientConn) error {
	_ = cc.w.appendPDU(UnbindResp, StatusOK, cc.peerUnbind, nil)
	cc.batch.Flush()
	cc.w.close()
	<-cc.w.done
	return errors.New("unbound by SMSC")
}

func (c *Client) sendUnbind(cc *clientConn) {
	if cc.unbindSent.CompareAndSwap(false, true) {
		_ = cc.w.appendPDU(Unbind, StatusOK, c.nextCtl(), nil)
		// An SMSC that never answers unbind must not hold the shutdown.
		time.AfterFunc(c.cfg.ResponseTimeout, func() { _ = cc.conn.Close() })
	}
}

// watchdog fails submits past their response deadline (in doubt), sends enquire_link on an idle
// link and closes a link whose enquire_link goes unanswered. It ends when the connection does.
func (c *Client) watchdog(cc *clientConn, stop <-chan struct{}) {
	tick := max(min(c.cfg.ResponseTimeout, c.cfg.EnquireLinkInterval)/4, 10*time.Millisecond)
	// A submit times out once more than ResponseTimeout worth of ticks have passed since it was
	// sent: at most one tick late.
	limit := uint64((c.cfg.ResponseTimeout + tick - 1) / tick)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			n := c.ticks.Add(1)
			if c.used.Load() > 0 {
				c.failWhere(func(s *slot) bool { return n-s.issued > limit }, ErrResponseTimeout)
			}
			last := time.Unix(0, cc.lastRead.Load())
			switch sent := cc.elSent.Load(); {
			case sent != 0 && now.Sub(time.Unix(0, sent)) > c.cfg.ResponseTimeout:
				c.log.Warn("no answer to enquire_link, dropping the link")
				_ = cc.conn.Close()
				return
			case sent == 0 && now.Sub(last) >= c.cfg.EnquireLinkInterval:
				cc.elSent.Store(now.UnixNano())
				_ = cc.w.appendPDU(EnquireLink, StatusOK, c.nextCtl(), nil)
			}
		}
	}
}

// DeliverRef names a deliver_sm received through OnDeliver: its sequence number on the
// connection it came on.
type DeliverRef struct {
	cc  *clientConn
	Seq uint32
}

// RespondDeliver answers a deliver_sm received through OnDeliver. If the connection it came on
// is gone, nothing is sent (ErrNotBound): the SMSC did not get an answer and sends it again.
func (c *Client) RespondDeliver(ref DeliverRef, status Status) error {
	c.mu.Lock()
	cc := c.conn
	c.mu.Unlock()
	if cc == nil || cc != ref.cc {
		return ErrNotBound
	}
	return cc.w.appendPDU(DeliverSMResp, status, ref.Seq, nil)
}

// Close stops taking submits, waits until in-flight submits are answered or ctx ends (those
// left are failed with ErrLinkLost, i.e. in doubt), unbinds and closes.
func (c *Client) Close(ctx context.Context) error {
	if c.closing.Swap(true) {
		<-c.done
		return nil
	}
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if !started { // no run loop will close done
		close(c.done)
		return nil
	}
	close(c.stop)
	c.mu.Lock()
	cc := c.conn
	c.mu.Unlock()
	if cc != nil {
		c.bound.Store(false) // no new submits; readLoop unbinds when used reaches 0
		if c.used.Load() == 0 {
			c.sendUnbind(cc)
		}
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		c.mu.Lock()
		if c.conn != nil {
			_ = c.conn.conn.Close()
		}
		c.mu.Unlock()
		<-c.done
	}
	return nil
}
