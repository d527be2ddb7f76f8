package router

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/smpp"
)

// Config configures the router.
type Config struct {
	// MaxWait bounds how long a submit may wait for upstream window, retries after
	// ESME_RTHROTTLED/ESME_RMSGQFUL included, before the client gets ESME_RTHROTTLED.
	MaxWait time.Duration
	// InDoubtStatus answers a submit whose upstream link died (or timed out) before answering.
	InDoubtStatus smpp.Status
	// ThrottleBackoff is how long a bind that answered ESME_RTHROTTLED is skipped.
	ThrottleBackoff time.Duration
	// Stages run in order on every submit_sm before it is forwarded.
	Stages []Stage
	IDs    *IDGen
	IDMap  IDMap
	// Journal, if set, makes the id mapping of every message that asks for a delivery receipt
	// durable before its client is answered.
	Journal Journal
	Logger  *slog.Logger
	// Metrics receives the router's metrics (nil: a private set).
	Metrics *metrics.Set
}

// DefaultConfig returns the defaults documented in configs/dev.yaml (IDs and IDMap are the
// caller's).
func DefaultConfig() Config {
	return Config{MaxWait: 2 * time.Second, InDoubtStatus: smpp.StatusSysErr, ThrottleBackoff: 50 * time.Millisecond}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.MaxWait <= 0:
		return fmt.Errorf("max_wait: must be positive, got %s", c.MaxWait)
	case c.InDoubtStatus == smpp.StatusOK:
		return errors.New("in_doubt_status: must not be 0 (ESME_ROK)")
	case c.IDs == nil || c.IDMap == nil:
		return errors.New("router: IDs and IDMap are required")
	}
	return nil
}

// Verdict is a stage's decision; a zero Verdict lets the message continue.
type Verdict struct {
	Status smpp.Status // non-zero: answer the client with this status, do not forward
	Rule   string      // what decided, for logs and metrics (no phone numbers)
	// Reply answers ESME_ROK with MessageID, an id smppd issued before (the original of a
	// duplicate), and forwards nothing.
	Reply     bool
	MessageID uint64
	// Hold: the stage keeps m; the router does nothing more with it until the stage calls
	// m.Resume or m.Refuse (or, the dedup stage, m.OriginalDone).
	Hold bool
}

// Finisher is a Stage that wants every message's outcome: Finish is called once per message,
// just before it is recycled, with the status the client was answered and, with ESME_ROK, its
// message_id (0 otherwise). It runs on whatever goroutine answers and must not block.
type Finisher interface {
	Finish(m *Message, status smpp.Status, messageID uint64)
}

// Journal records which upstream message id stands behind a message_id smppd issued, durably,
// so the delivery receipt that comes back (possibly after a restart) finds its client.
//
// Contract: Record is called on the upstream bind's read loop when the upstream accepted m; it
// must not block for long (group commit, not an fsync per call) and must copy upstreamID (valid
// only during the call). It calls m.Recorded exactly once, from any goroutine, when the mapping
// is durable (or failed: the message was sent all the same); only then is the client answered.
type Journal interface {
	Record(m *Message, id uint64, upstreamID []byte)
}

// Stage is one step of the submit_sm pipeline (filters, dedup, priority, routing…).
//
// Contract: Process runs on the submitting session's read loop, once per message, in the order
// configured; it must not block on I/O (state it needs is in memory) and must not keep m after
// returning. It may set m.Pool to route the message. A non-zero Verdict.Status stops the
// pipeline and answers the client with that status. When m.Trace is non-nil the call is a dry
// run (`smppctl explain`): m.Session is nil, and the stage decides as usual, records why with
// m.Explain, and changes no state (no counters, no dedup records, no rate-limit tokens).
type Stage interface {
	Name() string
	Process(m *Message) Verdict
}

// Route is an account's routing data (smpp.Account.Value): its default pool.
type Route struct {
	Pool *Pool

	// ok caches the account's ESME_ROK counters per pool (copy-on-write), so the common outcome
	// is counted without the metrics map's lock.
	ok atomic.Pointer[[]poolCounter]
}

type poolCounter struct {
	pool *Pool
	c    *metrics.Counter
}

// Message is one client submit_sm on its way through the router. It is pooled: nothing may
// hold it after the client has been answered.
type Message struct {
	Session *smpp.Session
	Account *smpp.Account
	Seq     uint32      // the client's sequence number
	PDU     []byte      // the client's PDU, copied; forwarded as is but for the sequence number
	Submit  smpp.Submit // parsed view into PDU
	Pool    *Pool       // where it goes; a stage may change it

	// Set by stages, zero until one does.
	Dest     uint64 // destination in E.164 as an integer (country code first); 0: not normalised
	Country  string // ISO 3166 region of Dest ("DE"); "" unknown
	Operator string // operator Dest belongs to; "" unknown
	Lane     Lane   // priority class; LaneBulk unless a stage says otherwise
	Trace    *Trace // non-nil in a dry run (explain): stages record their decisions
	// Text is m's decoded text, filled once by the first stage that needs it (content.TextOf)
	// when TextDone; TextCoding is the content package's Coding of it.
	Text       []rune
	TextCoding uint8
	TextDone   bool
	// DupKey is the dedup stage's key for m, valid when HasDupKey (m is an original whose
	// outcome it wants through Finish).
	DupKey    [2]uint64
	HasDupKey bool

	r        *Router
	affine   *affine
	deadline int64       // unix nanos: answer ESME_RTHROTTLED if no bind took it by then
	sentAt   int64       // unix nanos when it was (last) handed to a bind, for the latency histogram
	now      int64       // unix nanos, the caller's clock reading: no clock read per step
	bind     int         // index in Pool of the bind it was last sent on
	segments int         // cost on the bind's throughput limit (all parts of a long message on the first)
	held     int         // index of the stage that returned Hold
	id       uint64      // the message_id issued, while the Journal records it
	accepted bool        // the upstream answered ESME_ROK
	batch    *smpp.Batch // the running goroutine's batch (see smpp.Batch), nil: none
}

// Trace records each stage's decision for one message, for `smppctl explain`.
type Trace struct {
	Steps []Step
}

// Step is one stage's decision.
type Step struct {
	Stage    string `json:"stage"`
	Decision string `json:"decision"`
}

// Explain records a decision when m is being traced; otherwise it costs a nil check. A caller
// passing arguments checks m.Trace itself first: boxing them into ...any allocates per message.
func (m *Message) Explain(stage, format string, args ...any) {
	if m.Trace != nil {
		m.Trace.Steps = append(m.Trace.Steps, Step{stage, fmt.Sprintf(format, args...)})
	}
}

// Router implements smpp.Handler: it runs the stages and forwards every submit_sm upstream with
// pass-through acknowledgment, answering the client only once the upstream answered.
type Router struct {
	cfg       Config
	finishers []Finisher // the stages that implement Finisher
	log       *slog.Logger
	pools     map[string]*Pool
	m         *routerMetrics
	msgs      sync.Pool
	retry     chan *Message
	stop      chan struct{}
	wg        sync.WaitGroup

	closeOnce sync.Once
}

// New returns a router over pools (by name). Start its retry worker with Start.
func New(cfg Config, pools []*Pool) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	r := &Router{cfg: cfg, log: cfg.Logger.With("component", "router"), pools: map[string]*Pool{},
		retry: make(chan *Message, 4096), stop: make(chan struct{})}
	r.m = newRouterMetrics(cfg.Metrics, pools)
	for _, p := range pools {
		r.pools[p.name] = p
	}
	r.msgs.New = func() any { return &Message{r: r, PDU: make([]byte, 0, 512)} }
	for _, st := range cfg.Stages {
		if f, ok := st.(Finisher); ok {
			r.finishers = append(r.finishers, f)
		}
	}
	return r, nil
}

// Pool returns the pool called name, or nil.
func (r *Router) Pool(name string) *Pool { return r.pools[name] }

// Start starts the retry worker.
func (r *Router) Start() {
	r.wg.Add(1)
	go r.retryLoop()
}

// Close stops the retry worker; messages still queued for retry are answered ESME_RTHROTTLED.
// Call it after the server has drained.
func (r *Router) Close() {
	r.closeOnce.Do(func() { close(r.stop) })
	r.wg.Wait()
	for {
		select {
		case m := <-r.retry:
			m.batch = nil
			r.finish(m, smpp.StatusThrottled, 0, "shutdown")
		default:
			return
		}
	}
}

// Bound implements smpp.Handler.
func (r *Router) Bound(*smpp.Session) {}

// Unbound implements smpp.Handler. Submits still in flight are answered into the void by
// Session.Respond, which drops them; their upstream outcome is recorded as usual.
func (r *Router) Unbound(*smpp.Session) {}

// Submit implements smpp.Handler.
func (r *Router) Submit(s *smpp.Session, req *smpp.Request) {
	m := r.msgs.Get().(*Message)
	m.Session, m.Account, m.Seq, m.batch = s, s.Account(), req.Seq, req.Batch
	m.PDU = append(m.PDU[:0], req.PDU...)
	m.Submit = req.Submit
	m.Submit.Rebase(req.PDU, m.PDU)
	now := smpp.Now() // the read that brought this PDU: no clock read per message
	m.now, m.sentAt, m.deadline = now, now, now+int64(r.cfg.MaxWait)
	m.Pool, m.affine, m.bind = nil, nil, -1
	m.Dest, m.Country, m.Operator, m.Trace, m.Lane = 0, "", "", nil, LaneBulk
	m.HasDupKey, m.TextDone, m.accepted = false, false, false
	if rt, ok := m.Account.Value.(*Route); ok {
		m.Pool = rt.Pool
	}
	if !r.runStages(m, 0) {
		return
	}
	r.prepare(m, now)
	if !m.Pool.send(m) {
		r.finish(m, smpp.StatusThrottled, 0, "max_wait")
	}
}

// runStages runs the stages from index from; false means m is answered or held (and must not
// be touched any more).
func (r *Router) runStages(m *Message, from int) bool {
	for i := from; i < len(r.cfg.Stages); i++ {
		st := r.cfg.Stages[i]
		m.held = i                 // before Process: once a stage holds m, its outcome may resume it at once
		acct := m.Account.SystemID // m may be answered and recycled before a Hold returns
		switch v := st.Process(m); {
		case v.Hold:
			r.m.decision(acct, st.Name(), v.Rule).Inc()
			return false
		case v.Reply:
			r.m.decision(m.Account.SystemID, st.Name(), v.Rule).Inc()
			r.finish(m, smpp.StatusOK, v.MessageID, st.Name())
			return false
		case v.Status != smpp.StatusOK:
			r.m.decision(m.Account.SystemID, st.Name(), v.Rule).Inc()
			r.finish(m, v.Status, 0, st.Name())
			return false
		}
	}
	if m.Pool == nil {
		r.finish(m, smpp.StatusInvDstAddr, 0, "no_route")
		return false
	}
	return true
}

// prepare sets m's bind affinity (segments of one message stay on one bind) and its cost on
// the bind's throughput limit; now is the caller's clock reading.
func (r *Router) prepare(m *Message, now int64) {
	if c, ok := m.Submit.Concat(); ok {
		k := concatKey{acct: m.Account, ref: c.Ref, total: c.Total}
		copy(k.src[:], m.Submit.SrcAddr)
		copy(k.dst[:], m.Submit.DstAddr)
		var first bool
		m.affine, first = m.Pool.affinity(&k, now)
		// The operator counts segments: the first part pays for the whole message, so once it
		// is admitted no later part is held back by the bind's limit and the message arrives whole.
		m.segments = 0
		if first {
			m.segments = int(c.Total)
		}
	} else {
		m.segments = m.Submit.Segments()
	}
}

// OriginalDone is called by the dedup stage for a message it held because it duplicates an
// original still in flight: accepted answers it with the original's id; otherwise it runs on
// from the stage that held it as a message of its own. Not on a read loop, so nothing blocks:
// what cannot be sent at once goes to the retry queue.
func (m *Message) OriginalDone(messageID uint64, accepted bool) {
	if accepted {
		m.batch = nil
		m.r.finish(m, smpp.StatusOK, messageID, "duplicate")
		return
	}
	m.runFrom(m.held)
}

// Resume runs a message a stage held (Verdict.Hold) on from the stage after that one, and
// forwards it; Refuse answers it instead. The holding stage calls exactly one of them per hold,
// from any goroutine; nothing blocks (what cannot be sent at once goes to the retry queue).
func (m *Message) Resume() { m.runFrom(m.held + 1) }

// Refuse answers a held message with status (not ESME_ROK), counted as the holding stage's
// decision under rule.
func (m *Message) Refuse(status smpp.Status, rule string) {
	r := m.r
	m.batch = nil
	name := r.cfg.Stages[m.held].Name()
	r.m.decision(m.Account.SystemID, name, rule).Inc()
	r.finish(m, status, 0, name)
}

// runFrom runs a held message's stages from index from and forwards it.
func (m *Message) runFrom(from int) {
	r := m.r
	m.batch = nil
	now := time.Now().UnixNano()
	m.now, m.sentAt, m.deadline = now, now, now+int64(r.cfg.MaxWait)
	if !r.runStages(m, from) {
		return
	}
	r.prepare(m, now)
	if ok, _ := m.Pool.trySend(m); ok {
		return
	}
	select {
	case r.retry <- m:
	default:
		r.finish(m, smpp.StatusThrottled, 0, "retry_queue_full")
	}
}

// Accepted reports whether an upstream accepted m (answered its submit_sm with ESME_ROK): the
// message was sent. A Finisher sees it true even when the client's answer is not ESME_ROK (no
// message_id could be issued).
func (m *Message) Accepted() bool { return m.accepted }

// Recorded is the Journal's answer to Record: m's client is answered with its message_id.
func (m *Message) Recorded() { m.r.finish(m, smpp.StatusOK, m.id, "") }

// SubmitDone implements smpp.Waiter: the upstream's answer (or its absence) for m.
func (m *Message) SubmitDone(b *smpp.Batch, status smpp.Status, upstreamID []byte, err error) {
	r := m.r
	m.batch = b
	var now int64
	if b != nil {
		now = smpp.Now() // on the bind's read loop, just after the read that brought the answer
	} else {
		now = time.Now().UnixNano()
	}
	r.m.latency(m.Pool, time.Duration(max(now-m.sentAt, 0)))
	switch {
	case err != nil:
		r.m.inDoubt(m.Pool).Inc()
		// The bind logs one warning per event with the count; each message is a debug line.
		r.log.Debug("submit in doubt: upstream outcome unknown, not resent", "upstream", m.Pool.name,
			"system_id", m.Account.SystemID, "seq", m.Seq, "err", err)
		r.finish(m, r.cfg.InDoubtStatus, 0, "in_doubt")
	case status == smpp.StatusThrottled || status == smpp.StatusMsgQFull:
		r.m.retry(m.Pool, status).Inc()
		m.now, m.sentAt = now, now
		m.Pool.cool(m.bind, now, r.cfg.ThrottleBackoff)
		if now > m.deadline {
			r.finish(m, smpp.StatusThrottled, 0, "max_wait")
			return
		}
		if ok, _ := m.Pool.trySend(m); ok {
			return
		}
		select {
		case r.retry <- m:
		default:
			r.finish(m, smpp.StatusThrottled, 0, "retry_queue_full")
		}
	case status == smpp.StatusOK:
		m.accepted = true
		id, err := r.cfg.IDs.NextAt(now)
		if err != nil {
			// The upstream accepted it but we cannot issue an id: tell the client the truth
			// (outcome unknown to it) rather than an id that might repeat.
			r.log.Error("message accepted upstream but no message_id can be issued", "err", err)
			r.finish(m, r.cfg.InDoubtStatus, 0, "id_lease")
			return
		}
		r.cfg.IDMap.Put(id, m.Pool.name, upstreamID)
		if r.cfg.Journal != nil && m.Submit.RegisteredDelivery&0x1F != 0 {
			// A receipt (or SME acknowledgement, or intermediate notification) was asked for:
			// the client hears of the id only once a receipt for it can be matched, even
			// after a crash.
			m.id, m.batch = id, nil
			r.cfg.Journal.Record(m, id, upstreamID)
			return
		}
		r.finish(m, smpp.StatusOK, id, "")
	default:
		r.finish(m, status, 0, "upstream")
	}
}

// finish answers the client (with message_id id on ESME_ROK), tells the Finisher stages, counts
// the outcome and recycles m.
func (r *Router) finish(m *Message, status smpp.Status, id uint64, why string) {
	var buf [16]byte
	var idText []byte
	if status == smpp.StatusOK {
		FormatID(&buf, id)
		idText = buf[:]
	} else {
		id = 0
	}
	m.Session.RespondIn(m.batch, m.Seq, status, idText)
	for _, f := range r.finishers {
		f.Finish(m, status, id)
	}
	r.count(m, status)
	if why != "" && why != "upstream" && status != smpp.StatusOK {
		r.log.Debug("submit refused", "system_id", m.Account.SystemID, "status", status.String(), "by", why)
	}
	m.Session, m.Account, m.Pool, m.affine, m.batch, m.HasDupKey = nil, nil, nil, nil, nil, false
	if cap(m.PDU) > 4096 {
		m.PDU = make([]byte, 0, 512)
	}
	if cap(m.Text) > 4096 {
		m.Text = nil
	}
	r.msgs.Put(m)
}

// count counts a client-visible outcome; ESME_ROK through the account's cache.
func (r *Router) count(m *Message, status smpp.Status) {
	rt, _ := m.Account.Value.(*Route)
	if status != smpp.StatusOK || rt == nil {
		r.m.submit(m.Account.SystemID, m.Pool, status).Inc()
		return
	}
	cur := rt.ok.Load()
	if cur != nil {
		for _, pc := range *cur {
			if pc.pool == m.Pool {
				pc.c.Inc()
				return
			}
		}
	}
	c := r.m.submit(m.Account.SystemID, m.Pool, status)
	c.Inc()
	var next []poolCounter
	if cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, poolCounter{m.Pool, c})
	rt.ok.CompareAndSwap(cur, &next) // a lost race only means one more miss later
}

// retryLoop resends messages an upstream throttled, each until its deadline.
func (r *Router) retryLoop() {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case m := <-r.retry:
			m.batch = nil
			now := time.Now().UnixNano()
			m.now, m.sentAt = now, now
			if !m.Pool.send(m) {
				r.finish(m, smpp.StatusThrottled, 0, "max_wait")
			}
		}
	}
}

// Explanation is the outcome of a dry run through the pipeline.
type Explanation struct {
	Steps    []Step `json:"steps"`
	Status   string `json:"status"`             // ESME_ROK if it would be forwarded
	Rule     string `json:"rule,omitempty"`     // what refused it
	Upstream string `json:"upstream,omitempty"` // the pool it would go to
	Dest     uint64 `json:"dest,omitempty"`
	Country  string `json:"country,omitempty"`
	Operator string `json:"operator,omitempty"`
	Lane     string `json:"lane"`
}

// Explain runs the stages on pdu (a whole submit_sm) for account as a dry run: nothing is sent,
// counted or recorded.
func (r *Router) Explain(account *smpp.Account, pdu []byte) (*Explanation, error) {
	m := &Message{r: r, Account: account, PDU: pdu, Trace: &Trace{}, bind: -1}
	if err := smpp.ParseSubmit(pdu[smpp.HeaderLen:], &m.Submit); err != nil {
		return nil, err
	}
	if rt, ok := account.Value.(*Route); ok {
		m.Pool = rt.Pool
	}
	ex := &Explanation{Status: smpp.StatusOK.String()}
	for _, st := range r.cfg.Stages {
		v := st.Process(m)
		if v.Status != smpp.StatusOK || v.Reply || v.Hold {
			ex.Status, ex.Rule = v.Status.String(), v.Rule
			break
		}
	}
	if ex.Rule == "" && m.Pool == nil {
		ex.Status, ex.Rule = smpp.StatusInvDstAddr.String(), "no_route"
	}
	if m.Pool != nil {
		ex.Upstream = m.Pool.name
	}
	ex.Steps, ex.Dest, ex.Country, ex.Operator, ex.Lane = m.Trace.Steps, m.Dest, m.Country, m.Operator, m.Lane.String()
	if ex.Steps == nil {
		ex.Steps = []Step{}
	}
	return ex, nil
}
