// Package smpptest is a loopback SMSC for tests, benchmarks and cmd/smscsim.
//
// The simulator is an smpp.Server whose Handler plays SMSC: it answers submit_sm with message ids,
// sends delivery receipts and mobile-originated messages (MO), and injects faults (throttling,
// error statuses, delays, silence, dropped connections, refused binds) that can be changed while
// it runs.
//
// Message ids: accepted messages are numbered FirstID, FirstID+1, ...; the submit_sm_resp carries
// the number written in RespIDFormat, a receipt carries it in ReceiptIDFormat (text id: field and
// receipted_message_id TLV; ReceiptTLVIDFormat sets the TLV apart, ReceiptTextOnly leaves the
// TLVs out), so the id mismatches of real SMSCs (decimal against hex, case, leading zeros) can be
// staged.
//
// Deliveries: receipts and MOs are deliver_sm PDUs queued per system_id and sent with
// smpp.Session.Request to receiver or transceiver sessions of that system_id, at most
// DeliverWindow outstanding per session. One is done only when the ESME answers ESME_ROK; on an
// error status, no answer within ResponseTimeout (the session is then dropped) or a lost session
// it is sent again after RetryBackoff, on any receiving session of the system_id, including one
// that binds later: like a real SMSC, the simulator keeps deliveries for an ESME that is down.
// Close abandons the queue. ReceiptsSent, ReceiptsAcked, ReceiptsPending, Stats and Acked
// observe it.
//
// Receipt hard cases: ReceiptBeforeResp sends the receipt before the submit_sm_resp,
// ReceiptDuplicates sends every receipt more than once, ReceiptStat makes receipts report
// failures, and registered_delivery 2 (failure receipts only) is honoured.
//
// Lock order: SMSC.mu is never held while calling into an smpp.Session (Request, Respond); a
// session may take it from its callbacks (Bound, Unbound, RequestDone) and when its connection
// closes (trackedConn.Close).
package smpptest

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smppd/smppd/smpp"
)

// Config configures a simulator. The zero value is usable: defaults are filled in by Start.
type Config struct {
	Addr       string // listen address; default "127.0.0.1:0"
	SystemID   string // the account binds must use; default "smppd"
	Password   string // its password; default "smppd"
	AnyAccount bool   // accept any system_id and password
	Window     int    // outstanding submits per session before ESME_RTHROTTLED; default 1000 (binds per account: unlimited)

	// FirstID is the number of the first message accepted; the next ones get FirstID+1, ...
	// Default 1.
	FirstID uint64
	// RespIDFormat writes the message id in submit_sm_resp; the zero value is decimal.
	RespIDFormat IDFormat
	// ReceiptIDFormat writes the message id in a receipt's text (id:) and in its
	// receipted_message_id TLV; the zero value is decimal.
	ReceiptIDFormat IDFormat
	// ReceiptTLVIDFormat, if not nil, writes the receipted_message_id TLV instead of
	// ReceiptIDFormat (some SMSCs put hex in the TLV and decimal in the text).
	ReceiptTLVIDFormat *IDFormat
	// ReceiptTextOnly sends receipts without TLVs (receipted_message_id, message_state,
	// network_error_code): the id is in the text only.
	ReceiptTextOnly bool

	// ReceiptDelay > 0 turns receipts on: an accepted submit whose registered_delivery asks for one
	// (bits 0-1: 1 always, 2 on failure only, i.e. when ReceiptStat says other than DELIVRD) is
	// followed, after this delay, by a receipt queued to its system_id: delivered to the submitting
	// session when it can receive, else to another receiver or transceiver of the system_id.
	ReceiptDelay time.Duration
	// ReceiptBeforeResp queues the receipt at once and sends the submit_sm_resp ReceiptDelay after
	// the receipt's first deliver_sm went out (while no receiver is bound, the resp waits too).
	ReceiptBeforeResp bool
	// ReceiptDuplicates: every receipt is queued this many extra times, each copy delivered (and
	// retried) until acknowledged.
	ReceiptDuplicates int
	// ReceiptStat, if set, gives message n's final state: the stat: text (DELIVRD, UNDELIV,
	// REJECTD, EXPIRED, ...), the message_state TLV value (2 DELIVERED, 5 UNDELIVERABLE, 8
	// REJECTED, ...) and the err: code (also the network_error_code TLV's). nil: DELIVRD, 2, 0.
	// It is called concurrently.
	ReceiptStat func(n uint64) (stat string, state byte, err int)

	RetryBackoff    time.Duration // an unacknowledged deliver_sm is sent again after this; default 100ms
	DeliverWindow   int           // deliver_sm outstanding per session; default 10
	ResponseTimeout time.Duration // deliver_sm and enquire_link unanswered this long: session dropped; default 10s

	Record bool         // keep every submit_sm for Received and every acknowledged deliver_sm for Acked
	Logger *slog.Logger // nil: discard
}

// Faults are injected into the answers to submit_sm. Counters ("every Nth") count the submits
// handed to the simulator since the last SetFaults, across all sessions, starting at 1. When
// several apply to one submit, the first in this order wins: DropAfter, NoAnswer, ThrottleFirst,
// ThrottleEvery, StatusEvery; Delay then applies to whatever answer is sent.
type Faults struct {
	ThrottleFirst int           // the first N submits are answered ESME_RTHROTTLED
	ThrottleEvery int           // every Nth submit is answered ESME_RTHROTTLED (0: never)
	Status        smpp.Status   // answered to every StatusEvery-th submit
	StatusEvery   int           // 0: never
	Delay         time.Duration // every answer is sent after this delay
	NoAnswer      bool          // submits are read but never answered
	DropAfter     int           // every Nth submit goes unanswered and its connection is closed at once (0: never)
	RejectBind    bool          // binds are answered ESME_RBINDFAIL
}

type faultState struct {
	Faults
	n atomic.Uint64 // submits seen under these faults
}

// ErrClosed is returned by SendMO and SendMOText after Close.
var ErrClosed = errors.New("smpptest: simulator closed")

// SMSC is a running simulator. All methods are safe for concurrent use.
type SMSC struct {
	cfg   Config
	log   *slog.Logger
	srv   *smpp.Server
	ln    net.Listener
	sched scheduler
	wg    sync.WaitGroup // the Serve goroutine
	once  sync.Once      // Close

	ids, count, accepted atomic.Uint64
	binds                atomic.Int64
	faults               atomic.Pointer[faultState] // nil: no faults (the fast path)

	rcptSent, rcptAcked, moSent, moAcked atomic.Uint64
	rcptPending, moPending               atomic.Int64
	moRef                                atomic.Uint32 // concatenation reference of SendMOText

	wake, quit, dispatched chan struct{} // the dispatcher's kick, stop and exit

	mu        sync.Mutex
	closed    bool                            // guarded by mu
	accounts  map[string]*smpp.Account        // guarded by mu: AnyAccount accounts by system_id
	receivers map[string][]*smpp.Session      // guarded by mu: sessions that can receive, by system_id
	conns     map[netip.AddrPort]*trackedConn // guarded by mu: open connections by peer address
	received  []Submission                    // guarded by mu
	ready     map[string][]*delivery          // guarded by mu: deliveries to send now, by system_id
	acked     []Delivery                      // guarded by mu: when Config.Record
}

// Start listens on cfg.Addr and serves in the background until Close.
func Start(cfg Config) (*SMSC, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.SystemID == "" {
		cfg.SystemID = "smppd"
	}
	if cfg.Password == "" {
		cfg.Password = "smppd"
	}
	if cfg.Window <= 0 {
		cfg.Window = 1000
	}
	if cfg.FirstID == 0 {
		cfg.FirstID = 1
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = 100 * time.Millisecond
	}
	if cfg.DeliverWindow <= 0 {
		cfg.DeliverWindow = 10
	}
	if cfg.ResponseTimeout <= 0 {
		cfg.ResponseTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if f := cfg.ReceiptTLVIDFormat; f != nil { // a copy: the caller's may change
		c := *f
		cfg.ReceiptTLVIDFormat = &c
	}
	for _, f := range []struct {
		name string
		f    *IDFormat
	}{{"resp_id_format", &cfg.RespIDFormat}, {"receipt_id_format", &cfg.ReceiptIDFormat}, {"receipt_tlv_id_format", cfg.ReceiptTLVIDFormat}} {
		if f.f == nil {
			continue
		}
		if err := f.f.validate(); err != nil {
			return nil, fmt.Errorf("smpptest: %s: %w", f.name, err)
		}
	}
	if cfg.ReceiptDuplicates < 0 {
		return nil, fmt.Errorf("smpptest: receipt_duplicates: must be at least 0, got %d", cfg.ReceiptDuplicates)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("smpptest: listen: %w", err)
	}
	s := &SMSC{cfg: cfg, log: cfg.Logger.With("component", "smscsim"), ln: ln,
		accounts: map[string]*smpp.Account{}, receivers: map[string][]*smpp.Session{},
		conns: map[netip.AddrPort]*trackedConn{}, ready: map[string][]*delivery{},
		wake: make(chan struct{}, 1), quit: make(chan struct{}), dispatched: make(chan struct{})}
	s.ids.Store(cfg.FirstID - 1)
	sc := smpp.DefaultServerConfig()
	sc.SystemID = "smscsim"
	sc.Logger = cfg.Logger
	sc.OutboundWindow = cfg.DeliverWindow
	sc.ResponseTimeout = cfg.ResponseTimeout
	if cfg.AnyAccount {
		sc.UnknownAccount = s.anyAccount
	}
	s.srv = smpp.NewServer(sc, handler{s})
	s.srv.SetAccounts([]*smpp.Account{s.newAccount(cfg.SystemID)})
	s.sched.start()
	go s.dispatch()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(trackingListener{ln, s}); err != nil {
			s.log.Error("serve ended", "err", err)
		}
	}()
	return s, nil
}

// Addr returns the listening address.
func (s *SMSC) Addr() string { return s.ln.Addr().String() }

// Close stops listening, drops every connection without unbind (like an SMSC going away),
// discards pending delayed answers and the delivery queue (receipts and MOs not yet
// acknowledged), and waits for all goroutines. Calls after the first wait for it to finish.
func (s *SMSC) Close() { s.once.Do(s.close) }

func (s *SMSC) close() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*trackedConn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.sched.stop()
	close(s.quit)
	<-s.dispatched
	_ = s.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing to drain: answer what is outstanding at once
	_ = s.srv.Shutdown(ctx)
	s.wg.Wait()
}

// SetFaults replaces the injected faults and restarts their counters; Faults{} turns them off.
func (s *SMSC) SetFaults(f Faults) {
	if f == (Faults{}) {
		s.faults.Store(nil)
		return
	}
	s.faults.Store(&faultState{Faults: f})
}

// Submission is one recorded submit_sm.
type Submission struct {
	Session uint64 // smpp.Session.ID of the session it arrived on
	PDU     []byte // the whole PDU, header included
}

// Received returns copies of the submit_sm PDUs (header included) handed to the simulator, in
// arrival order; empty unless Config.Record.
func (s *SMSC) Received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]byte, len(s.received))
	for i, r := range s.received {
		out[i] = r.PDU
	}
	return out
}

// ReceivedFrom is Received with the session each submit arrived on.
func (s *SMSC) ReceivedFrom() []Submission {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Submission(nil), s.received...)
}

// Count returns the number of submits handed to the simulator (those the server itself refused,
// malformed or over the window, are not counted).
func (s *SMSC) Count() uint64 { return s.count.Load() }

// Accepted returns the number of submits answered ESME_ROK.
func (s *SMSC) Accepted() uint64 { return s.accepted.Load() }

// Binds returns the number of currently bound sessions.
func (s *SMSC) Binds() int { return int(s.binds.Load()) }

func (s *SMSC) newAccount(systemID string) *smpp.Account {
	return &smpp.Account{SystemID: systemID, Password: passwordFunc(s.checkPassword),
		MaxBinds: math.MaxInt32, Window: s.cfg.Window}
}

func (s *SMSC) anyAccount(systemID string) *smpp.Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[systemID]
	if a == nil {
		a = s.newAccount(systemID)
		s.accounts[systemID] = a
	}
	return a
}

type passwordFunc func([]byte) bool

func (f passwordFunc) CheckPassword(pw []byte) bool { return f(pw) }

func (s *SMSC) checkPassword(pw []byte) bool {
	if f := s.faults.Load(); f != nil && f.RejectBind {
		return false
	}
	return s.cfg.AnyAccount || subtle.ConstantTimeCompare(pw, []byte(s.cfg.Password)) == 1
}

// dropConn closes the connection of peer at once, without unbind.
func (s *SMSC) dropConn(peer netip.AddrPort) {
	s.mu.Lock()
	c := s.conns[peer]
	s.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// handler is the smpp.Handler playing SMSC.
type handler struct{ s *SMSC }

// simSession is a bound session's state (smpp.Session.Value).
type simSession struct {
	idBuf [MaxIDWidth]byte // read loop only: the message id of a submit answered at once
}

// Bound registers a receiving session and kicks the dispatcher: deliveries queued while no
// receiver was bound go out now (the bind_resp precedes them: see smpp.Handler).
func (h handler) Bound(sess *smpp.Session) {
	sess.Value = &simSession{}
	h.s.binds.Add(1)
	if sess.BindType().CanReceive() {
		h.s.mu.Lock()
		id := sess.Account().SystemID
		h.s.receivers[id] = append(h.s.receivers[id], sess)
		h.s.mu.Unlock()
		h.s.kick()
	}
}

func (h handler) Unbound(sess *smpp.Session) {
	h.s.binds.Add(-1)
	if sess.BindType().CanReceive() {
		h.s.mu.Lock()
		id := sess.Account().SystemID
		list := h.s.receivers[id]
		for i, r := range list {
			if r == sess {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(h.s.receivers, id)
		} else {
			h.s.receivers[id] = list
		}
		h.s.mu.Unlock()
	}
}

// Submit answers at once with ESME_ROK and a fresh id unless faults say otherwise. Without
// faults, recording or receipts it allocates nothing.
func (h handler) Submit(sess *smpp.Session, r *smpp.Request) {
	s := h.s
	s.count.Add(1)
	if s.cfg.Record {
		p := Submission{Session: sess.ID(), PDU: append([]byte(nil), r.PDU...)}
		s.mu.Lock()
		s.received = append(s.received, p)
		s.mu.Unlock()
	}
	var rc *receipt
	if s.cfg.ReceiptDelay > 0 {
		if rd := r.Submit.RegisteredDelivery & 3; rd == 1 || rd == 2 { // 3 is reserved
			rc = newReceipt(sess, &r.Submit, rd == 2)
		}
	}
	st := smpp.StatusOK
	if f := s.faults.Load(); f != nil {
		n := f.n.Add(1)
		switch {
		case f.DropAfter > 0 && n%uint64(f.DropAfter) == 0:
			s.log.Debug("dropping connection", "remote", sess.Remote().String(), "submit", n)
			s.dropConn(sess.Remote())
			return
		case f.NoAnswer:
			return
		case n <= uint64(f.ThrottleFirst), f.ThrottleEvery > 0 && n%uint64(f.ThrottleEvery) == 0:
			st = smpp.StatusThrottled
		case f.StatusEvery > 0 && n%uint64(f.StatusEvery) == 0:
			st = f.Status
		}
		if f.Delay > 0 {
			seq := r.Seq
			s.sched.after(f.Delay, func() { s.answer(nil, sess, seq, st, nil, rc) })
			return
		}
	}
	s.answer(r.Batch, sess, r.Seq, st, sess.Value.(*simSession).idBuf[:0], rc)
}

// answer responds to seq; on ESME_ROK it numbers the message, writes its id into buf and queues
// or schedules the receipt.
func (s *SMSC) answer(b *smpp.Batch, sess *smpp.Session, seq uint32, st smpp.Status, buf []byte, rc *receipt) {
	if st != smpp.StatusOK {
		sess.RespondIn(b, seq, st, nil)
		return
	}
	n := s.ids.Add(1)
	id := s.cfg.RespIDFormat.Append(buf, n)
	if rc != nil && !rc.settle(n, s.cfg.ReceiptStat) {
		rc = nil // a failure-only receipt for a delivered message
	}
	if rc != nil && s.cfg.ReceiptBeforeResp {
		resp := string(id)
		s.queueReceipt(rc, func() {
			s.sched.after(s.cfg.ReceiptDelay, func() { s.respondOK(nil, sess, seq, []byte(resp)) })
		})
		return
	}
	if s.respondOK(b, sess, seq, id) && rc != nil {
		s.sched.after(s.cfg.ReceiptDelay, func() { s.queueReceipt(rc, nil) })
	}
}

// respondOK answers seq ESME_ROK with id; false if the session is gone.
func (s *SMSC) respondOK(b *smpp.Batch, sess *smpp.Session, seq uint32, id []byte) bool {
	s.accepted.Add(1) // before the answer leaves, so Accepted() already counts it when the peer sees it
	if !sess.RespondIn(b, seq, smpp.StatusOK, id) {
		s.accepted.Add(^uint64(0)) // the session is gone
		return false
	}
	return true
}

// trackingListener records accepted connections so faults can drop them and Close can cut them.
type trackingListener struct {
	net.Listener
	s *SMSC
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	tc := &trackedConn{Conn: c, s: l.s, peer: ap}
	l.s.mu.Lock()
	closed := l.s.closed
	if !closed {
		l.s.conns[ap] = tc
	}
	l.s.mu.Unlock()
	if closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	return tc, nil
}

type trackedConn struct {
	net.Conn
	s    *SMSC
	peer netip.AddrPort
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		if c.s.conns[c.peer] == c {
			delete(c.s.conns, c.peer)
		}
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}
