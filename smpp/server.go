package smpp

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/linxGnu/gosmpp/pdu"
)

// ServerConfig configures the ESME-facing server.
type ServerConfig struct {
	SystemID            string        // returned in bind_*_resp
	MaxPDUSize          int           // command_length above this: generic_nack ESME_RINVCMDLEN, close
	BindTimeout         time.Duration // a connection not bound within this is closed
	ReadTimeout         time.Duration // a PDU stalled mid-frame this long closes the session
	EnquireLinkInterval time.Duration // idle this long: we send enquire_link
	ResponseTimeout     time.Duration // our request unanswered this long: close; also the write timeout
	MaxSessions         int
	OutboundWindow      int // requests of ours (Session.Request) outstanding per session
	Logger              *slog.Logger
	Metrics             *metrics.Set // nil: metrics.NewSet() of its own

	// UnknownAccount, if set, is asked for the account of a system_id missing from the account
	// table (simulators accepting any account); nil from it, or no func: ESME_RBINDFAIL.
	UnknownAccount func(systemID string) *Account
}

// DefaultServerConfig returns the defaults documented in configs/dev.yaml.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{SystemID: "smppd", MaxPDUSize: 65536, BindTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, EnquireLinkInterval: 30 * time.Second,
		ResponseTimeout: 10 * time.Second, MaxSessions: 10000, OutboundWindow: 10}
}

// Validate reports the first invalid field.
func (c *ServerConfig) Validate() error {
	switch {
	case c.MaxPDUSize < 64:
		return fmt.Errorf("max_pdu_size: must be at least 64, got %d", c.MaxPDUSize)
	case c.BindTimeout <= 0 || c.ReadTimeout <= 0 || c.EnquireLinkInterval <= 0 || c.ResponseTimeout <= 0:
		return errors.New("timeouts must be positive")
	case c.MaxSessions < 1:
		return fmt.Errorf("max_sessions: must be at least 1, got %d", c.MaxSessions)
	case c.OutboundWindow < 1:
		return fmt.Errorf("outbound_window: must be at least 1, got %d", c.OutboundWindow)
	}
	return nil
}

// PasswordChecker verifies a bind password; implementations compare in constant time.
type PasswordChecker interface {
	CheckPassword(pw []byte) bool
}

// PlainPassword compares against a clear-text password in constant time.
type PlainPassword string

// CheckPassword implements PasswordChecker.
func (p PlainPassword) CheckPassword(pw []byte) bool {
	return subtle.ConstantTimeCompare([]byte(p), pw) == 1
}

// Account is an ESME account. The config fields are set before SetAccounts and then read-only.
type Account struct {
	SystemID    string
	Password    PasswordChecker
	AllowedNets []netip.Prefix // empty: any source address
	MaxBinds    int
	Window      int      // outstanding submit_sm per session
	Limiter     *Limiter // segments per second across the account's sessions; nil: unlimited
	Value       any      // the handler's per-account data (e.g. its route)

	binds atomic.Int32
}

// Binds returns the account's current number of bound sessions.
func (a *Account) Binds() int { return int(a.binds.Load()) }

func (a *Account) allowed(ip netip.Addr) bool {
	if len(a.AllowedNets) == 0 {
		return true
	}
	ip = ip.Unmap()
	for _, p := range a.AllowedNets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Request is one submit_sm handed to the Handler. It is valid only during Handler.Submit.
type Request struct {
	// Batch defers wake-ups of the writers the handler queues to (see Batch); it belongs to the
	// session's read loop: use it only within Submit, on that goroutine.
	Batch    *Batch
	Seq      uint32
	PDU      []byte // the whole PDU as received, header included
	Submit   Submit // parsed view of PDU's body
	Segments int
}

// Handler is what the Server calls for bound sessions; the router implements it.
//
// Contract: Submit is called on the session's read loop, one request at a time; it may block
// (that is backpressure: the session stops reading) but must return, and every request must be
// answered exactly once with Session.Respond, from any goroutine, now or later. Bound and
// Unbound bracket a session's bound life; Unbound is called once, after the read loop ended.
// Bound is called after the bind_resp is queued, so requests of ours (Session.Request) made in
// or after Bound reach the ESME after it; it runs on the read loop, before any submit is read.
type Handler interface {
	Submit(s *Session, r *Request)
	Bound(s *Session)
	Unbound(s *Session)
}

// Server accepts ESME connections and runs their sessions. See Handler for the contract.
type Server struct {
	cfg     ServerConfig
	handler Handler
	log     *slog.Logger
	m       serverMetrics

	accounts atomic.Pointer[map[string]*Account]
	draining atomic.Bool
	nextID   atomic.Uint64
	epoch    time.Time // the clock of request deadlines (monotonic): see Session.mono

	mu        sync.Mutex
	listeners map[net.Listener]struct{} // guarded by mu
	sessions  map[*Session]struct{}     // guarded by mu
	wg        sync.WaitGroup            // session goroutines and Serve loops
}

type serverMetrics struct {
	set                                    *metrics.Set
	accepted, rejectedFull, bindOK, nacked *metrics.Counter
}

// NewServer returns a server that hands submits to h.
func NewServer(cfg ServerConfig, h Handler) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	s := &Server{cfg: cfg, handler: h, log: cfg.Logger.With("component", "smpp.server"), epoch: time.Now(),
		listeners: map[net.Listener]struct{}{}, sessions: map[*Session]struct{}{}}
	set := cfg.Metrics
	s.m = serverMetrics{set: set,
		accepted:     set.GetOrCreateCounter(`smppd_connections_total`),
		rejectedFull: set.GetOrCreateCounter(`smppd_connections_rejected_total{reason="max_sessions"}`),
		bindOK:       set.GetOrCreateCounter(`smppd_binds_total{result="ok"}`),
		nacked:       set.GetOrCreateCounter(`smppd_generic_nacks_sent_total`),
	}
	set.NewGauge(`smppd_sessions`, func() float64 { return float64(s.SessionCount()) })
	m := map[string]*Account{}
	s.accounts.Store(&m)
	return s
}

// SetAccounts replaces the account table atomically; existing sessions keep their account.
func (s *Server) SetAccounts(accts []*Account) {
	m := make(map[string]*Account, len(accts))
	for _, a := range accts {
		m[a.SystemID] = a
		id := a.SystemID // looked up at scrape time: SetAccounts may replace the account
		s.m.set.GetOrCreateGauge(fmt.Sprintf(`smppd_binds{system_id=%q}`, id), func() float64 {
			if a := s.Account(id); a != nil {
				return float64(a.Binds())
			}
			return 0
		})
	}
	s.accounts.Store(&m)
}

// Account returns the account with systemID, or nil.
func (s *Server) Account(systemID string) *Account { return (*s.accounts.Load())[systemID] }

// SessionCount returns the number of open connections.
func (s *Server) SessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Serve accepts connections on ln until ln is closed (by Shutdown or the caller).
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		_ = ln.Close()
		return net.ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.draining.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("smpp accept: %w", err)
		}
		backoff = 0
		s.m.accepted.Inc()
		s.mu.Lock()
		if len(s.sessions) >= s.cfg.MaxSessions || s.draining.Load() {
			s.mu.Unlock()
			s.m.rejectedFull.Inc()
			_ = conn.Close()
			continue
		}
		sess := s.newSession(conn)
		s.sessions[sess] = struct{}{}
		s.wg.Add(2)
		s.mu.Unlock()
		go func() { defer s.wg.Done(); sess.w.loop() }()
		go func() { defer s.wg.Done(); sess.run() }()
	}
}

// Shutdown drains the server: listeners close, new submits are answered ESME_RTHROTTLED (so
// clients resubmit elsewhere), in-flight submits get their upstream answer until ctx ends; what is
// still outstanding then is answered ESME_RSYSERR (outcome unknown). Every session is then sent
// unbind and closed. It returns when all sessions have ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	for ln := range s.listeners {
		_ = ln.Close()
	}
	sessions := make([]*Session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		sess.waitIdle(ctx)
	}
	for _, sess := range sessions {
		sess.abandonInflight(StatusSysErr)
		sess.unbind()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	grace := time.NewTimer(2 * time.Second) // for unbind_resp; then we close
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		for _, sess := range sessions {
			sess.close(CloseShutdown)
		}
		<-done
	}
	return ctx.Err()
}

func (s *Server) newSession(conn net.Conn) *Session {
	sess := &Session{srv: s, conn: conn, id: s.nextID.Add(1), inflight: map[uint32]struct{}{},
		w: newWriter(conn, s.cfg.ResponseTimeout), idleSignal: make(chan struct{}, 1), closed: make(chan struct{})}
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		sess.remote = ap
	}
	sess.fr = newFrameReader(conn, uint32(s.cfg.MaxPDUSize), s.cfg.ReadTimeout)
	sess.fr.beforeRead = sess.beforeRead
	sess.log = s.log.With("session", sess.id, "remote", conn.RemoteAddr().String())
	return sess
}

// BindType is the kind of bind a session holds.
type BindType int32

// Bind types.
const (
	Unbound BindType = iota
	Transmitter
	Receiver
	Transceiver
)

func (b BindType) String() string {
	return [...]string{"unbound", "transmitter", "receiver", "transceiver"}[b]
}

// CanSubmit reports whether the bind may send submit_sm.
func (b BindType) CanSubmit() bool { return b == Transmitter || b == Transceiver }

// CanReceive reports whether the bind may receive deliver_sm.
func (b BindType) CanReceive() bool { return b == Receiver || b == Transceiver }

// CloseReason says why a session ended.
type CloseReason int

// Close reasons.
const (
	CloseNone CloseReason = iota
	ClosePeer
	CloseUnbind
	CloseBindTimeout
	CloseStall
	CloseEnquireTimeout
	CloseBadLength
	CloseIPDenied
	CloseWriteError
	CloseShutdown
	CloseReadError
	CloseResponseTimeout // a request of ours (Session.Request) went unanswered
)

func (r CloseReason) String() string {
	return [...]string{"none", "peer_closed", "unbind", "bind_timeout", "read_stall", "enquire_link_timeout",
		"bad_command_length", "ip_denied", "write_error", "shutdown", "read_error", "response_timeout"}[r]
}

// Session is one ESME connection. The read loop (run) owns fr and sub; the writer loop owns
// the socket's write side; inflight is guarded by mu, our outstanding requests by omu.
//
// Lock order (smpp package): Session.omu, then writer.mu (Request queues its PDU under omu, so no
// answer or close can see a request half registered). Session.mu is never held with omu or
// writer.mu; Server.mu is taken alone. RequestDone and Handler callbacks run with none of these
// held, so they may call back into the session (Request, Respond).
type Session struct {
	srv    *Server
	conn   net.Conn
	id     uint64
	remote netip.AddrPort
	log    *slog.Logger
	w      *writer
	fr     *frameReader
	sub    Request // reused per submit by the read loop
	batch  Batch   // read loop: writers to wake before the next blocking read

	bind    atomic.Int32 // BindType
	account *Account     // set once at bind, before Bound
	outSeq  atomic.Uint32
	elOut   bool      // read loop: an enquire_link of ours is unanswered
	bindBy  time.Time // read loop: the bind deadline
	linkBy  time.Time // read loop: idle until then calls for an enquire_link (or its answer is late)
	// keepLink: read loop: the last read ended in a wake-up for request deadlines, not data, so
	// linkBy stands.
	keepLink bool

	unbinding atomic.Bool // our unbind is sent: no more requests of ours

	// Requests of ours (Request) awaiting their answer. Their deadlines are checked by the read
	// loop before each blocking read, which also bounds how long it blocks (see beforeRead): no
	// timer or goroutine per request.
	omu     sync.Mutex
	out     map[uint32]outRequest // guarded by omu; nil until the first Request
	outDone bool                  // guarded by omu: the read loop ended and out was failed
	outN    atomic.Int32          // len(out), for lock-free reads; written under omu
	outNext atomic.Int64          // written under omu: at most the earliest deadline in out (mono); 0: none

	// Value is the handler's per-session data; set in Bound, read-only after.
	Value any

	mu         sync.Mutex
	inflight   map[uint32]struct{} // guarded by mu: submits not yet answered
	idleSignal chan struct{}       // kicked when inflight becomes empty
	reason     CloseReason         // guarded by mu
	closed     chan struct{}
}

// ID returns the session's process-unique id.
func (s *Session) ID() uint64 { return s.id }

// Account returns the bound account (nil before bind).
func (s *Session) Account() *Account { return s.account }

// BindType returns the current bind type.
func (s *Session) BindType() BindType { return BindType(s.bind.Load()) }

// Remote returns the peer address.
func (s *Session) Remote() netip.AddrPort { return s.remote }

// Closed is closed when the session has ended.
func (s *Session) Closed() <-chan struct{} { return s.closed }

// Respond answers the submit_sm with sequence number seq. It returns false if that request was
// already answered (or the session is gone), so a request is never answered twice.
func (s *Session) Respond(seq uint32, status Status, messageID []byte) bool {
	return s.RespondIn(nil, seq, status, messageID)
}

// RespondIn is Respond with the wake-up of the session's writer deferred to b (see Batch);
// b must belong to the calling goroutine.
func (s *Session) RespondIn(b *Batch, seq uint32, status Status, messageID []byte) bool {
	s.mu.Lock()
	if _, ok := s.inflight[seq]; !ok {
		s.mu.Unlock()
		return false
	}
	delete(s.inflight, seq)
	idle := len(s.inflight) == 0
	s.mu.Unlock()
	if idle {
		select {
		case s.idleSignal <- struct{}{}:
		default:
		}
	}
	return s.w.appendResp(SubmitSMResp, status, seq, messageID, b) == nil
}

// RequestDone receives the ESME's answer to a request sent with Session.Request: its
// command_status (a generic_nack's status counts as the answer), or a non-nil err when no answer
// came (ErrResponseTimeout: none within ServerConfig.ResponseTimeout; ErrSessionClosed: the session
// ended first); then the outcome is unknown. It is called exactly once, on whatever goroutine
// observes the outcome, and must not block.
//
// A generic_nack carrying ESME_ROK (a peer bug: a nack never means success) is reported as
// ESME_RSYSERR.
type RequestDone func(status Status, err error)

// ErrSessionClosed means a request of ours (Session.Request) was not sent, or got no answer,
// because the session was closing, had ended, or was not bound to receive. (ErrWindowFull and
// ErrResponseTimeout, shared with Client, cover the other Request failures.)
var ErrSessionClosed = errors.New("session closed")

// outRequest is one request of ours awaiting its answer.
type outRequest struct {
	done     RequestDone
	deadline int64 // mono
	id       CommandID
}

// mono returns the session clock at t: nanoseconds since the server started (monotonic), never 0.
func (s *Session) mono(t time.Time) int64 { return int64(t.Sub(s.srv.epoch)) + 1 }

// Request sends a request PDU of ours (deliver_sm, ...) with a fresh sequence number and calls done
// once with the answer. body is copied. It fails at once, without sending and without calling done,
// with ErrWindowFull when OutboundWindow requests are outstanding, and with ErrSessionClosed when the
// session is closing or not bound to receive.
//
// A request unanswered after ResponseTimeout gets ErrResponseTimeout and the session is closed
// (CloseResponseTimeout): an ESME that stops answering is treated as gone, as SMSCs do, and its
// other outstanding requests then get ErrSessionClosed; the caller resends on another session.
// Answers with a sequence number we are not waiting for, or of another command, are ignored.
func (s *Session) Request(id CommandID, body []byte, done RequestDone) error {
	if !s.BindType().CanReceive() || s.unbinding.Load() || s.closeReason() != CloseNone {
		return ErrSessionClosed
	}
	deadline := s.mono(time.Now().Add(s.srv.cfg.ResponseTimeout))
	s.omu.Lock()
	defer s.omu.Unlock()
	switch {
	case s.outDone:
		return ErrSessionClosed
	case len(s.out) >= s.srv.cfg.OutboundWindow:
		return ErrWindowFull
	}
	if s.out == nil {
		s.out = make(map[uint32]outRequest, s.srv.cfg.OutboundWindow)
	}
	seq := s.nextSeq()
	for {
		if _, dup := s.out[seq]; !dup { // only after 2^31 requests with one left unanswered
			break
		}
		seq = s.nextSeq()
	}
	// Registered before it is queued (answered looks at outN without omu), queued under omu.
	s.out[seq] = outRequest{done: done, deadline: deadline, id: id}
	s.outN.Store(int32(len(s.out)))
	if s.w.appendPDU(id, StatusOK, seq, body) != nil {
		delete(s.out, seq)
		s.outN.Store(int32(len(s.out)))
		return ErrSessionClosed
	}
	if n := s.outNext.Load(); n == 0 || deadline < n {
		s.outNext.Store(deadline)
	}
	return nil
}

// Outstanding returns the number of requests sent with Request and not yet answered.
func (s *Session) Outstanding() int { return int(s.outN.Load()) }

// answered hands the answer h (a response or generic_nack) to its request, if we await it.
// Read loop only.
func (s *Session) answered(h Header) {
	if s.outN.Load() == 0 {
		return
	}
	s.omu.Lock()
	r, ok := s.out[h.Seq]
	if !ok || h.ID != GenericNack && h.ID != ResponseID(r.id) {
		s.omu.Unlock()
		return
	}
	delete(s.out, h.Seq)
	s.outN.Store(int32(len(s.out)))
	s.omu.Unlock()
	st := h.Status
	if h.ID == GenericNack && st == StatusOK {
		st = StatusSysErr
	}
	r.done(st, nil)
}

// expireRequests fails the requests whose deadline is at or before now (mono) with
// ErrResponseTimeout, closing the session if there were any. It returns the earliest deadline
// left (0: none). Read loop only.
func (s *Session) expireRequests(now int64) int64 {
	var expired []RequestDone
	var next int64
	s.omu.Lock()
	for seq, r := range s.out {
		if r.deadline <= now {
			expired = append(expired, r.done)
			delete(s.out, seq)
		} else if next == 0 || r.deadline < next {
			next = r.deadline
		}
	}
	s.outN.Store(int32(len(s.out)))
	s.outNext.Store(next)
	s.omu.Unlock()
	if len(expired) == 0 {
		return next
	}
	s.log.Warn("no answer to our request within response_timeout, closing", "requests", len(expired))
	for _, done := range expired {
		done(0, ErrResponseTimeout)
	}
	s.close(CloseResponseTimeout)
	return next
}

// endRequests fails every outstanding request with ErrSessionClosed and refuses new ones. It runs
// once, after the read loop ended, so no answer can race with it.
func (s *Session) endRequests() int {
	s.omu.Lock()
	s.outDone = true
	out := s.out
	s.out = nil
	s.outN.Store(0)
	s.outNext.Store(0)
	s.omu.Unlock()
	for _, r := range out {
		r.done(0, ErrSessionClosed)
	}
	return len(out)
}

// Inflight returns the number of unanswered submits.
func (s *Session) Inflight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight)
}

func (s *Session) waitIdle(ctx context.Context) {
	for s.Inflight() > 0 {
		select {
		case <-s.idleSignal:
		case <-s.closed:
			return
		case <-ctx.Done():
			return
		}
	}
}

// abandonInflight answers every outstanding submit with status.
func (s *Session) abandonInflight(status Status) {
	s.mu.Lock()
	seqs := make([]uint32, 0, len(s.inflight))
	for seq := range s.inflight {
		seqs = append(seqs, seq)
	}
	s.mu.Unlock()
	for _, seq := range seqs {
		if s.Respond(seq, status, nil) {
			s.log.Warn("submit answered at shutdown deadline, upstream outcome unknown", "seq", seq, "status", status.String())
		}
	}
}

// beforeRead runs on the read loop before each blocking read: queued output leaves, a peer that
// does not read its answers is not read from, and the idle deadline is set for this read.
//
// For a session that can receive it also expires our overdue requests and wakes the read at the
// earliest deadline left, or after ResponseTimeout at the latest, so a request made while the
// read blocks is checked in time too (an idle receiver wakes every ResponseTimeout; readError
// tells such a wake-up from idleness by linkBy).
func (s *Session) beforeRead() {
	s.batch.Flush()
	s.w.waitRoom()
	bt := s.BindType()
	if bt == Unbound {
		s.fr.idle = s.bindBy
		return
	}
	now := time.Now()
	switch {
	case s.keepLink: // no read since the last wake-up: idle time keeps counting
		s.keepLink = false
	case s.elOut:
		s.linkBy = now.Add(s.srv.cfg.ResponseTimeout)
	default:
		s.linkBy = now.Add(s.srv.cfg.EnquireLinkInterval)
	}
	s.fr.idle = s.linkBy
	if !bt.CanReceive() {
		return
	}
	if at := now.Add(s.srv.cfg.ResponseTimeout); at.Before(s.fr.idle) {
		s.fr.idle = at
	}
	next := s.outNext.Load()
	if next == 0 {
		return
	}
	if mono := s.mono(now); next <= mono {
		if next = s.expireRequests(mono); next == 0 {
			return
		}
	}
	if at := s.srv.epoch.Add(time.Duration(next - 1)); at.Before(s.fr.idle) {
		s.fr.idle = at
	}
}

func (s *Session) nextSeq() uint32 {
	for {
		if v := s.outSeq.Add(1) & 0x7FFFFFFF; v != 0 {
			return v
		}
	}
}

// unbind sends unbind; the session closes when the peer answers or the grace period ends.
func (s *Session) unbind() {
	s.unbinding.Store(true)
	if s.w.appendPDU(Unbind, StatusOK, s.nextSeq(), nil) != nil {
		s.close(CloseShutdown)
	}
}

// Send queues a request PDU of ours to the ESME with a fresh sequence number, which it returns,
// and forgets it: its answer is ignored (enquire_link, unbind). body is copied. Use Request for
// requests whose answer matters (deliver_sm).
func (s *Session) Send(id CommandID, body []byte) (uint32, error) {
	seq := s.nextSeq()
	return seq, s.w.appendPDU(id, StatusOK, seq, body)
}

// close ends the session: pending output is flushed, then the connection closes.
func (s *Session) close(r CloseReason) {
	s.mu.Lock()
	first := s.reason == CloseNone
	if first {
		s.reason = r
	}
	s.mu.Unlock()
	if !first {
		return
	}
	s.w.close()
	go func() {
		select {
		case <-s.w.done:
		case <-time.After(s.srv.cfg.ResponseTimeout):
		}
		_ = s.conn.Close()
	}()
}

func (s *Session) closeReason() CloseReason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

func (s *Session) run() {
	srv := s.srv
	defer func() {
		s.batch.Flush()
		if s.BindType() != Unbound {
			s.account.binds.Add(-1)
			srv.handler.Unbound(s)
		}
		s.close(ClosePeer)
		unanswered := s.endRequests()
		<-s.w.done
		_ = s.conn.Close()
		s.mu.Lock()
		pending := len(s.inflight)
		s.mu.Unlock()
		srv.mu.Lock()
		delete(srv.sessions, s)
		srv.mu.Unlock()
		srv.m.set.GetOrCreateCounter(fmt.Sprintf(`smppd_sessions_closed_total{reason=%q}`, s.closeReason())).Inc()
		s.log.Info("session closed", "reason", s.closeReason().String(), "unanswered", pending,
			"requests_unanswered", unanswered)
		close(s.closed)
	}()
	s.bindBy = time.Now().Add(srv.cfg.BindTimeout)
	for {
		frame, h, err := s.fr.next()
		if err != nil {
			s.readError(h, err)
			if s.closeReason() != CloseNone {
				return
			}
			continue
		}
		s.elOut = false
		s.dispatch(h, frame)
	}
}

// readError handles a read failure; it closes the session unless the error was an idle timeout
// that only calls for an enquire_link.
func (s *Session) readError(h Header, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, ErrCommandLength):
		s.nack(h.Seq, StatusInvCmdLen)
		s.log.Warn("bad command_length, closing", "err", err)
		s.close(CloseBadLength)
	case errors.Is(err, errStall):
		s.close(CloseStall)
	case errors.As(err, &ne) && ne.Timeout():
		switch {
		case s.BindType() == Unbound:
			s.close(CloseBindTimeout)
		case time.Now().Before(s.linkBy):
			// Woken to check request deadlines (see beforeRead), not by idleness.
			s.keepLink = true
		case s.elOut:
			s.close(CloseEnquireTimeout)
		default:
			s.elOut = true
			if _, err := s.Send(EnquireLink, nil); err != nil {
				s.close(CloseWriteError)
			}
		}
	default:
		if s.srv.draining.Load() {
			s.close(CloseShutdown)
		} else if errors.Is(err, net.ErrClosed) {
			s.close(CloseWriteError)
		} else if errors.Is(err, io.EOF) {
			s.close(ClosePeer)
		} else {
			s.close(CloseReadError)
		}
	}
}

func (s *Session) nack(seq uint32, st Status) {
	s.srv.m.nacked.Inc()
	_ = s.w.appendPDU(GenericNack, st, seq, nil)
}

func (s *Session) respondEmpty(id CommandID, st Status, seq uint32) {
	_ = s.w.appendPDU(ResponseID(id), st, seq, nil)
}

func (s *Session) dispatch(h Header, frame []byte) {
	switch h.ID {
	case SubmitSM:
		s.submit(h, frame)
	case EnquireLink:
		s.respondEmpty(h.ID, StatusOK, h.Seq)
	case BindTransmitter, BindReceiver, BindTransceiver:
		s.bindReq(h, frame)
	case Unbind:
		if s.BindType() == Unbound {
			s.respondEmpty(h.ID, StatusInvBindStatus, h.Seq)
			return
		}
		s.respondEmpty(h.ID, StatusOK, h.Seq)
		s.close(CloseUnbind)
	case UnbindResp:
		s.close(CloseUnbind)
	case EnquireLinkResp:
	default:
		if IsResponse(h.ID) { // generic_nack included
			s.answered(h) // or, a response to nothing we await: ignored, never answered
			return
		}
		s.nack(h.Seq, StatusInvCmdID)
	}
}

func (s *Session) bindReq(h Header, frame []byte) {
	respID := ResponseID(h.ID)
	if s.BindType() != Unbound {
		s.respondEmpty(h.ID, StatusAlreadyBound, h.Seq)
		return
	}
	if s.srv.draining.Load() {
		s.bindFail(respID, h.Seq, StatusBindFail, "draining")
		return
	}
	p, err := pdu.Parse(bytes.NewReader(frame))
	req, ok := p.(*pdu.BindRequest)
	if err != nil || !ok {
		s.bindFail(respID, h.Seq, StatusBindFail, "malformed bind body")
		return
	}
	acct := s.srv.Account(req.SystemID)
	if acct == nil && s.srv.cfg.UnknownAccount != nil {
		acct = s.srv.cfg.UnknownAccount(req.SystemID)
	}
	if acct == nil {
		PlainPassword("\x00dummy\x00").CheckPassword([]byte(req.Password)) // same work as a real check
		s.bindFail(respID, h.Seq, StatusBindFail, "unknown system_id")
		return
	}
	if !acct.allowed(s.remote.Addr()) {
		s.bindFail(respID, h.Seq, StatusBindFail, "source address not allowed")
		s.close(CloseIPDenied)
		return
	}
	if !acct.Password.CheckPassword([]byte(req.Password)) {
		s.bindFail(respID, h.Seq, StatusBindFail, "wrong password")
		return
	}
	if int(acct.binds.Add(1)) > acct.MaxBinds {
		acct.binds.Add(-1)
		s.bindFail(respID, h.Seq, StatusBindFail, "max_binds reached")
		return
	}
	bt := map[CommandID]BindType{BindTransmitter: Transmitter, BindReceiver: Receiver, BindTransceiver: Transceiver}[h.ID]
	s.account = acct
	s.bind.Store(int32(bt))
	body := append([]byte(s.srv.cfg.SystemID), 0, 0x02, 0x10, 0x00, 0x01, 0x34) // sc_interface_version 3.4
	_ = s.w.appendPDU(respID, StatusOK, h.Seq, body)
	s.srv.handler.Bound(s) // after the bind_resp is queued: see Handler
	s.srv.m.bindOK.Inc()
	s.log = s.log.With("system_id", acct.SystemID)
	s.log.Info("bound", "bind_type", bt.String(), "interface_version", fmt.Sprintf("0x%02x", req.InterfaceVersion))
}

func (s *Session) bindFail(respID CommandID, seq uint32, st Status, why string) {
	_ = s.w.appendPDU(respID, st, seq, nil)
	s.srv.m.set.GetOrCreateCounter(fmt.Sprintf(`smppd_binds_total{result=%q}`, why)).Inc()
	s.log.Warn("bind refused", "reason", why)
}

func (s *Session) submit(h Header, frame []byte) {
	if !s.BindType().CanSubmit() {
		_ = s.w.appendResp(SubmitSMResp, StatusInvBindStatus, h.Seq, nil, &s.batch)
		return
	}
	r := &s.sub
	r.Batch, r.Seq, r.PDU = &s.batch, h.Seq, frame
	if err := ParseSubmit(frame[HeaderLen:], &r.Submit); err != nil {
		var be *BodyError
		errors.As(err, &be)
		s.log.Debug("submit_sm rejected", "err", err)
		_ = s.w.appendResp(SubmitSMResp, be.Status, h.Seq, nil, &s.batch)
		return
	}
	if s.srv.draining.Load() {
		_ = s.w.appendResp(SubmitSMResp, StatusThrottled, h.Seq, nil, &s.batch)
		return
	}
	r.Segments = r.Submit.Segments()
	s.mu.Lock()
	if len(s.inflight) >= s.account.Window {
		s.mu.Unlock()
		_ = s.w.appendResp(SubmitSMResp, StatusThrottled, h.Seq, nil, &s.batch)
		return
	}
	if _, dup := s.inflight[h.Seq]; dup {
		s.mu.Unlock()
		// A sequence number still in flight: answering would be ambiguous; refuse the new one.
		_ = s.w.appendResp(SubmitSMResp, StatusSysErr, h.Seq, nil, &s.batch)
		return
	}
	if !s.account.Limiter.Allow(r.Segments) {
		s.mu.Unlock()
		_ = s.w.appendResp(SubmitSMResp, StatusThrottled, h.Seq, nil, &s.batch)
		return
	}
	s.inflight[h.Seq] = struct{}{}
	s.mu.Unlock()
	s.srv.handler.Submit(s, r)
}
