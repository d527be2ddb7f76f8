// Package smpptest is a loopback SMSC for tests, benchmarks and cmd/smscsim.
//
// The simulator is an smpp.Server whose Handler plays SMSC: it answers submit_sm with message ids,
// optionally sends delivery receipts, and injects faults (throttling, error statuses, delays,
// silence, dropped connections, refused binds) that can be changed while it runs.
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
	"strconv"
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

	// IDFormat appends the message id for n (1, 2, ... unique per simulator) to dst;
	// nil: decimal. It is called concurrently.
	IDFormat func(dst []byte, n uint64) []byte

	// ReceiptDelay > 0: an accepted submit with registered_delivery&1 != 0 is followed, after this
	// delay, by a delivery receipt to a receiver or transceiver session of the same system_id
	// (the submitting session when it can receive). No such session then: the receipt is dropped.
	ReceiptDelay time.Duration

	Record bool         // keep a copy of every submit_sm for Received
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

// ErrNoReceiver is returned by SendMO when no receiver or transceiver of the system_id is bound.
var ErrNoReceiver = errors.New("smpptest: no receiver bound for system_id")

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

	mu        sync.Mutex
	closed    bool                            // guarded by mu
	accounts  map[string]*smpp.Account        // guarded by mu: AnyAccount accounts by system_id
	receivers map[string][]*smpp.Session      // guarded by mu: sessions that can receive, by system_id
	conns     map[netip.AddrPort]*trackedConn // guarded by mu: open connections by peer address
	received  []Submission                    // guarded by mu
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("smpptest: listen: %w", err)
	}
	s := &SMSC{cfg: cfg, log: cfg.Logger.With("component", "smscsim"), ln: ln,
		accounts: map[string]*smpp.Account{}, receivers: map[string][]*smpp.Session{},
		conns: map[netip.AddrPort]*trackedConn{}}
	sc := smpp.DefaultServerConfig()
	sc.SystemID = "smscsim"
	sc.Logger = cfg.Logger
	if cfg.AnyAccount {
		sc.UnknownAccount = s.anyAccount
	}
	s.srv = smpp.NewServer(sc, handler{s})
	s.srv.SetAccounts([]*smpp.Account{s.newAccount(cfg.SystemID)})
	s.sched.start()
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
// discards pending delayed answers and receipts, and waits for all goroutines. Calls after the
// first wait for it to finish.
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

// SendMO sends m as a deliver_sm to a receiver or transceiver session bound as systemID.
func (s *SMSC) SendMO(systemID string, m *smpp.Submit) error {
	sess := s.receiver(systemID, nil)
	if sess == nil {
		return ErrNoReceiver
	}
	pdu := smpp.AppendSubmitPDU(nil, smpp.DeliverSM, 0, m)
	_, err := sess.Send(smpp.DeliverSM, pdu[smpp.HeaderLen:])
	return err
}

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

// receiver returns prefer if it is a bound receiving session of systemID, else the first one.
func (s *SMSC) receiver(systemID string, prefer *smpp.Session) *smpp.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.receivers[systemID]
	for _, r := range list {
		if r == prefer {
			return r
		}
	}
	if len(list) == 0 {
		return nil
	}
	return list[0]
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
	idBuf [32]byte // read loop only: the message id of a submit answered at once
}

func (h handler) Bound(sess *smpp.Session) {
	sess.Value = &simSession{}
	h.s.binds.Add(1)
	if sess.BindType().CanReceive() {
		h.s.mu.Lock()
		id := sess.Account().SystemID
		h.s.receivers[id] = append(h.s.receivers[id], sess)
		h.s.mu.Unlock()
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
	if s.cfg.ReceiptDelay > 0 && r.Submit.RegisteredDelivery&1 != 0 {
		rc = newReceipt(sess, &r.Submit)
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

// answer responds to seq; on ESME_ROK it allocates the id into buf and schedules the receipt.
func (s *SMSC) answer(b *smpp.Batch, sess *smpp.Session, seq uint32, st smpp.Status, buf []byte, rc *receipt) {
	if st != smpp.StatusOK {
		sess.RespondIn(b, seq, st, nil)
		return
	}
	n := s.ids.Add(1)
	var id []byte
	if s.cfg.IDFormat != nil {
		id = s.cfg.IDFormat(buf, n)
	} else {
		id = strconv.AppendUint(buf, n, 10)
	}
	s.accepted.Add(1) // before the answer leaves, so Accepted() already counts it when the peer sees it
	if !sess.RespondIn(b, seq, smpp.StatusOK, id) {
		s.accepted.Add(^uint64(0)) // the session is gone
		return
	}
	if rc != nil {
		rc.id = string(id)
		s.sched.after(s.cfg.ReceiptDelay, func() { s.sendReceipt(rc) })
	}
}

// receipt is what a delivery receipt needs from its submit_sm, copied out of the PDU.
type receipt struct {
	from      *smpp.Session
	systemID  string
	id        string
	submitted time.Time
	sub       smpp.Submit // addresses and the first 20 octets of text, copied
}

func newReceipt(sess *smpp.Session, m *smpp.Submit) *receipt {
	text := m.Payload()
	if len(text) > 20 {
		text = text[:20]
	}
	// The receipt goes back from the destination to the source.
	return &receipt{from: sess, systemID: sess.Account().SystemID, submitted: time.Now(),
		sub: smpp.Submit{SrcTON: m.DstTON, SrcNPI: m.DstNPI, SrcAddr: clone(m.DstAddr),
			DstTON: m.SrcTON, DstNPI: m.SrcNPI, DstAddr: clone(m.SrcAddr), ShortMessage: clone(text)}}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func (s *SMSC) sendReceipt(rc *receipt) {
	sess := s.receiver(rc.systemID, rc.from)
	if sess == nil {
		s.log.Debug("receipt dropped: no receiver bound", "system_id", rc.systemID, "id", rc.id)
		return
	}
	const layout = "0601021504" // YYMMDDhhmm
	m := rc.sub
	m.ESMClass = 0x04 // SMSC delivery receipt
	m.ShortMessage = fmt.Appendf(nil, "id:%s sub:001 dlvrd:001 submit date:%s done date:%s stat:DELIVRD err:000 text:%s",
		rc.id, rc.submitted.Format(layout), time.Now().Format(layout), rc.sub.ShortMessage)
	if len(m.ShortMessage) > 254 {
		m.ShortMessage = m.ShortMessage[:254]
	}
	m.TLVs = smpp.AppendTLV(nil, smpp.TagReceiptedMsgID, append([]byte(rc.id), 0))
	m.TLVs = smpp.AppendTLV(m.TLVs, smpp.TagMessageState, []byte{2}) // DELIVERED
	pdu := smpp.AppendSubmitPDU(nil, smpp.DeliverSM, 0, &m)
	if _, err := sess.Send(smpp.DeliverSM, pdu[smpp.HeaderLen:]); err != nil {
		s.log.Debug("receipt not sent", "id", rc.id, "err", err)
	}
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
