package deliver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/router/content"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/store"
	"github.com/zeebo/xxh3"
)

// Config configures the Service.
type Config struct {
	Store *store.Local
	// Hold: a receipt whose mapping is not there yet (it overtook the submit_sm_resp) waits this
	// long for it before it counts as unmatched.
	Hold    time.Duration
	MaxHeld int // receipts held at once; beyond: unmatched at once (reason hold_full)
	// UnmatchedStatus answers the upstream for a receipt that matches no message: ESME_ROK
	// (default) drops it, counted; a temporary error makes the SMSC send it again later.
	UnmatchedStatus smpp.Status
	// MORoutes route MO messages to accounts, first match wins.
	MORoutes         []MORoute
	UnroutableStatus smpp.Status // answered for an MO no route matches (default ESME_RINVDSTADR)
	// RetryMin and RetryMax bound the backoff between attempts to deliver an item a client did
	// not acknowledge.
	RetryMin, RetryMax time.Duration
	// ExpireEvery is how often expired mappings and outbox items are removed.
	ExpireEvery time.Duration
	// OptOutWords are first words of an MO that opt its sender out of messages from the address
	// it was sent to (STOP, 退订, ...; any case). OnOptOut is told each one, once the MO is
	// stored or refused, with the MO (valid only during the call) and the upstream it came
	// from; it must not block.
	OptOutWords []string
	OnOptOut    func(number uint64, mo *smpp.Submit, account, upstream string)
	// OutboxTTL is the store's outbox TTL: older items are not sent (they are being expired).
	OutboxTTL time.Duration
	// Window bounds, per receiver session of an account, the deliver_sm answered whose removal
	// is not yet synced; the session's own window (smpp.ServerConfig.OutboundWindow, the same
	// figure) bounds those sent and not yet answered. Together: what a crash can make smppd
	// deliver twice.
	Window  int
	Logger  *slog.Logger
	Metrics *metrics.Set
}

// MORoute sends MO messages whose destination address matches To (exactly, or as a prefix when
// To ends in '*') and, if Keyword is set, whose first word is Keyword (any case), to Account.
type MORoute struct {
	To, Keyword, Account string
}

// DefaultConfig returns the defaults documented in configs/dev.yaml.
func DefaultConfig() Config {
	return Config{Hold: 10 * time.Second, MaxHeld: 100000, UnroutableStatus: smpp.StatusInvDstAddr,
		RetryMin: time.Second, RetryMax: time.Minute, ExpireEvery: time.Minute, OutboxTTL: 72 * time.Hour, Window: 10}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("deliver: store is required")
	case c.Hold <= 0:
		return fmt.Errorf("hold: must be positive, got %s", c.Hold)
	case c.MaxHeld < 0:
		return fmt.Errorf("max_held: must not be negative, got %d", c.MaxHeld)
	case c.RetryMin <= 0 || c.RetryMax < c.RetryMin:
		return fmt.Errorf("retry: want 0 < retry_min <= retry_max, got %s and %s", c.RetryMin, c.RetryMax)
	case c.Window < 1:
		return fmt.Errorf("window: must be at least 1, got %d", c.Window)
	case c.OutboxTTL <= 0:
		return fmt.Errorf("outbox ttl: must be positive, got %s", c.OutboxTTL)
	case c.ExpireEvery <= 0:
		return fmt.Errorf("expire_every: must be positive, got %s", c.ExpireEvery)
	}
	for i, r := range c.MORoutes {
		if r.To == "" || r.Account == "" {
			return fmt.Errorf("mo.routes[%d]: to and account are required", i)
		}
	}
	return nil
}

// Service correlates receipts, routes MO messages and delivers both to clients. See the
// package doc.
type Service struct {
	cfg Config
	st  *store.Local
	log *slog.Logger
	m   *metrics.Set

	// Owned by the store's writer goroutine (touched only inside store.Op Apply/Done).
	held     map[string][]*receiptOp // by upstream "\x00" candidate
	heldFIFO []*receiptOp            // in hold order (= deadline order)
	nHeld    int
	moParts  map[moPartKey]moPart // the route of each concatenated MO's first part
	learned  map[string]*learning // auto mode: what each upstream's receipts showed
	scratch  []byte

	mapOps, rcOps sync.Pool

	mu       sync.Mutex
	accounts map[string]*outbox // guarded by mu
	closed   bool               // guarded by mu
	started  bool               // guarded by mu

	stop chan struct{}
	wg   sync.WaitGroup

	heldGauge                         int64 // guarded by heldMu, for the gauge
	heldMu                            sync.Mutex
	storeErrors, mappingsWritten      *metrics.Counter
	moUnroutable, moRouted, heldFull  *metrics.Counter
	optOuts                           *metrics.Counter
	matched, duplicate, noID, noMatch *metrics.Counter
}

type moPartKey struct {
	upstream, src string
	ref           uint16
}

type moPart struct {
	account string
	at      time.Time
}

// New returns a Service; Start begins delivering.
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	s := &Service{cfg: cfg, st: cfg.Store, log: cfg.Logger.With("component", "deliver"), m: cfg.Metrics,
		held: map[string][]*receiptOp{}, moParts: map[moPartKey]moPart{}, learned: map[string]*learning{},
		accounts: map[string]*outbox{},
		stop:     make(chan struct{})}
	s.mapOps.New = func() any { return &mappingOp{s: s} }
	s.rcOps.New = func() any { return &receiptOp{s: s} }
	s.storeErrors = s.m.GetOrCreateCounter(`smppd_store_errors_total`)
	s.mappingsWritten = s.m.GetOrCreateCounter(`smppd_receipt_mappings_total`)
	s.matched = s.m.GetOrCreateCounter(`smppd_receipts_total{result="matched"}`)
	s.duplicate = s.m.GetOrCreateCounter(`smppd_receipts_total{result="duplicate"}`)
	s.noID = s.m.GetOrCreateCounter(`smppd_receipts_total{result="unmatched",reason="no_id"}`)
	s.noMatch = s.m.GetOrCreateCounter(`smppd_receipts_total{result="unmatched",reason="no_mapping"}`)
	s.heldFull = s.m.GetOrCreateCounter(`smppd_receipts_total{result="unmatched",reason="hold_full"}`)
	s.moRouted = s.m.GetOrCreateCounter(`smppd_mo_total{result="routed"}`)
	s.moUnroutable = s.m.GetOrCreateCounter(`smppd_mo_total{result="unroutable"}`)
	s.optOuts = s.m.GetOrCreateCounter(`smppd_mo_optouts_total`)
	s.m.NewGauge(`smppd_receipts_held`, func() float64 {
		s.heldMu.Lock()
		defer s.heldMu.Unlock()
		return float64(s.heldGauge)
	})
	s.m.NewGauge(`smppd_store_disk_bytes`, func() float64 { return float64(s.st.DiskBytes()) })
	pending, err := s.st.Pending()
	if err != nil {
		return nil, fmt.Errorf("deliver: read outbox: %w", err)
	}
	for acct, n := range pending {
		s.outbox(acct).addPending(n)
	}
	return s, nil
}

// Start starts the timers (held receipts, expiry) and the outboxes found on disk.
func (s *Service) Start() {
	s.wg.Add(1)
	go s.timers()
	s.mu.Lock()
	s.started = true
	for _, ob := range s.accounts {
		ob.startLocked()
	}
	s.mu.Unlock()
}

// Close stops delivering (unanswered deliver_sm stay in the store for next time) and answers
// held receipts as unmatched. The store is the caller's to close, after.
func (s *Service) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	s.wg.Wait()
	done := make(chan struct{})
	s.st.Do(&tickOp{s: s, all: true, done: done})
	<-done
}

func (s *Service) timers() {
	defer s.wg.Done()
	tick := time.NewTicker(max(min(s.cfg.Hold/10, time.Second), 10*time.Millisecond))
	defer tick.Stop()
	expire := time.NewTicker(s.cfg.ExpireEvery)
	defer expire.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.st.Do(&tickOp{s: s})
		case <-expire.C:
			s.st.Do(&store.ExpireOp{
				Expired: func(acct string, n int) {
					s.outbox(acct).expired(n)
				},
				Err: func(err error) { s.log.Error("expiry failed", "err", err) },
			})
		}
	}
}

func (s *Service) storeFailed(what string, err error) {
	s.storeErrors.Inc()
	s.log.Error("store write failed", "what", what, "err", err)
}

// ---- mappings (router.Journal) ----

type mappingOp struct {
	s        *Service
	m        *router.Message
	upstream string
	account  string
	id       uint64
	upID     [smpp.MaxIDLen]byte
	upIDLen  int
	resolved []*receiptOp // held receipts this mapping matched
}

// Record implements router.Journal.
func (s *Service) Record(m *router.Message, id uint64, upstreamID []byte) {
	op := s.mapOps.Get().(*mappingOp)
	op.m, op.upstream, op.account, op.id = m, m.Pool.Name(), m.Account.SystemID, id
	op.upIDLen = 0
	if len(upstreamID) <= smpp.MaxIDLen { // SMPP allows 64; anything longer cannot be stored or matched
		op.upIDLen = len(smpp.CanonicalID(op.upID[:0], upstreamID))
	}
	s.st.Do(op)
}

func encodeMapping(dst []byte, id uint64, account string, seen []byte) []byte {
	dst = append(dst, 1)
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = append(dst, byte(len(account)))
	dst = append(dst, account...)
	return append(dst, seen...)
}

// decodeMapping splits a mapping value; seen is a sequence of (len, stat key) entries.
func decodeMapping(v []byte) (id uint64, account string, seen []byte, ok bool) {
	if len(v) < 10 || v[0] != 1 || len(v) < 10+int(v[9]) {
		return 0, "", nil, false
	}
	n := int(v[9])
	return binary.BigEndian.Uint64(v[1:9]), string(v[10 : 10+n]), v[10+n:], true
}

// Apply implements store.Op.
func (op *mappingOp) Apply(tx *store.Tx) {
	s := op.s
	if op.upIDLen == 0 {
		return // the upstream gave no id: nothing can match it
	}
	upID := op.upID[:op.upIDLen]
	s.scratch = encodeMapping(s.scratch[:0], op.id, op.account, nil)
	tx.PutMapping(op.upstream, upID, s.scratch)
	if s.nHeld == 0 {
		return
	}
	k := heldKey(op.upstream, upID)
	list := s.held[k]
	if len(list) == 0 {
		return
	}
	for _, rc := range list {
		if rc.holding {
			s.unhold(rc)
			if !rc.match(tx) { // only if the value just written does not decode
				s.noMatch.Inc()
				rc.status = s.cfg.UnmatchedStatus
			}
			op.resolved = append(op.resolved, rc)
		}
	}
}

// Done implements store.Op.
func (op *mappingOp) Done(err error) {
	s := op.s
	if err != nil {
		// The upstream accepted the message: the client gets its id all the same (a refusal
		// would make it resend), but its receipt may not find it.
		s.storeFailed("receipt mapping", err)
	} else {
		s.mappingsWritten.Inc()
	}
	op.m.Recorded()
	for _, rc := range op.resolved {
		rc.finish(err)
	}
	op.m, op.resolved = nil, op.resolved[:0]
	s.mapOps.Put(op)
}

func heldKey(upstream string, id []byte) string { return upstream + "\x00" + string(id) }

// ---- deliver_sm from upstreams ----

// OnDeliver is the upstream binds' smpp.ClientConfig.OnDeliver for the upstream pool named
// upstream, whose receipts write ids as mode says.
func (s *Service) OnDeliver(upstream string, mode smpp.IDMode) func(c *smpp.Client, ref smpp.DeliverRef, pdu []byte) {
	return func(c *smpp.Client, ref smpp.DeliverRef, pdu []byte) {
		op := s.rcOps.Get().(*receiptOp)
		op.client, op.ref, op.upstream, op.mode = c, ref, upstream, mode
		op.pdu = append(op.pdu[:0], pdu...)
		op.status, op.account, op.enqueued, op.holding, op.deferred, op.kind = smpp.StatusOK, "", false, false, false, 0
		op.optOut = false
		if err := smpp.ParseSubmit(op.pdu[smpp.HeaderLen:], &op.sub); err != nil {
			s.log.Warn("malformed deliver_sm from upstream", "upstream", upstream, "err", err)
			st := smpp.StatusSysErr
			if be, ok := err.(*smpp.BodyError); ok {
				st = be.Status
			}
			op.answer(st)
			return
		}
		if smpp.IsReceipt(&op.sub) {
			op.kind = kindReceipt
			rc, err := smpp.ParseReceipt(&op.sub)
			if err != nil {
				s.noID.Inc()
				s.log.Debug("receipt without an id", "upstream", upstream)
				op.answer(s.cfg.UnmatchedStatus)
				return
			}
			op.rc = rc
		} else {
			op.kind = kindMO
		}
		s.st.Do(op)
	}
}

const (
	kindReceipt = 1
	kindMO      = 2
)

// receiptOp is one deliver_sm from an upstream: a receipt or an MO message.
type receiptOp struct {
	s        *Service
	client   *smpp.Client
	ref      smpp.DeliverRef
	upstream string
	mode     smpp.IDMode
	kind     byte
	pdu      []byte
	sub      smpp.Submit
	rc       smpp.Receipt
	cands    smpp.IDCands
	eff      smpp.IDMode // the mode cands were made with (auto: as learnt so far)

	// decided in Apply
	status   smpp.Status
	account  string
	enqueued bool
	seq      uint64 // the outbox item's, when enqueued
	holding  bool   // in the held index
	// deferred: it was held, so whoever takes it out of the index answers it (its own Done,
	// which may come after, in the same group, must not).
	deferred bool
	deadline time.Time
	optOut   bool // an MO whose first word is an opt-out keyword
}

// answer answers the upstream and recycles op.
func (op *receiptOp) answer(st smpp.Status) {
	_ = op.client.RespondDeliver(op.ref, st) // a lost link: the SMSC sends it again
	op.client, op.rc, op.sub = nil, smpp.Receipt{}, smpp.Submit{}
	if cap(op.pdu) > 4096 {
		op.pdu = nil
	}
	op.s.rcOps.Put(op)
}

// Apply implements store.Op.
func (op *receiptOp) Apply(tx *store.Tx) {
	if op.kind == kindMO {
		op.route(tx)
		return
	}
	s := op.s
	op.eff = s.learnt(op.upstream, op.mode)
	smpp.IDCandidates(&op.cands, op.rc.ID, op.eff)
	if op.cands.Len() == 0 {
		s.noID.Inc()
		op.status = s.cfg.UnmatchedStatus
		return
	}
	if op.match(tx) {
		return
	}
	if s.nHeld >= s.cfg.MaxHeld {
		s.heldFull.Inc()
		op.status = s.cfg.UnmatchedStatus
		return
	}
	op.holding, op.deferred, op.deadline = true, true, tx.Now().Add(s.cfg.Hold)
	for i := range op.cands.Len() {
		k := heldKey(op.upstream, op.cands.At(i))
		s.held[k] = append(s.held[k], op)
	}
	s.heldFIFO = append(s.heldFIFO, op)
	s.nHeld++
	s.setHeldGauge()
}

func (s *Service) setHeldGauge() {
	s.heldMu.Lock()
	s.heldGauge = int64(s.nHeld)
	s.heldMu.Unlock()
}

// unhold takes op out of the held index (the FIFO entry is skipped later: holding is false).
func (s *Service) unhold(op *receiptOp) {
	op.holding = false
	for i := range op.cands.Len() {
		k := heldKey(op.upstream, op.cands.At(i))
		list := s.held[k]
		for j, o := range list {
			if o == op {
				list = append(list[:j], list[j+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(s.held, k)
		} else {
			s.held[k] = list
		}
	}
	s.nHeld--
	s.setHeldGauge()
}

// match looks the receipt up; found, it is queued for its account (or recognised as a
// duplicate) and op.status says what to answer.
func (op *receiptOp) match(tx *store.Tx) bool {
	s := op.s
	for i := range op.cands.Len() {
		cand := op.cands.At(i)
		v, ref, ok := tx.GetMapping(s.scratch[:0], op.upstream, cand)
		if !ok {
			continue
		}
		s.scratch = v
		id, account, seen, ok := decodeMapping(v)
		if !ok {
			continue
		}
		key := op.statKey()
		if hasSeen(seen, key) {
			s.duplicate.Inc()
			op.status = smpp.StatusOK
			return true
		}
		var idText [16]byte
		router.FormatID(&idText, id)
		item := appendItemHeader(nil, kindReceipt, op.upstream, nil)
		item, err := smpp.AppendRewrittenReceipt(item, &op.sub, idText[:])
		if err != nil {
			// Cannot carry our id: pass it as it came rather than lose it.
			s.log.Warn("receipt not rewritten, delivered as received", "upstream", op.upstream, "err", err)
			item = append(item, op.pdu[smpp.HeaderLen:]...)
		}
		op.seq = tx.Enqueue(account, item)
		if len(seen) < 64 {
			nv := encodeMapping(nil, id, account, seen)
			nv = append(append(nv, byte(len(key))), key...)
			tx.SetMapping(ref, op.upstream, cand, nv)
		}
		op.status, op.account, op.enqueued = smpp.StatusOK, account, true
		s.learn(op.upstream, op.mode, op.rc.ID, cand)
		return true
	}
	return false
}

// learning is what auto mode found out about an upstream's receipt ids: how many receipts
// matched as is and through each conversion. Owned by the writer goroutine.
type learning struct {
	n    [4]int // by smpp.IDMode: IDSame, IDReceiptDecimal, IDReceiptHex
	mode smpp.IDMode
}

// learnAfter is how many receipts of an upstream in auto mode must match one way, and none
// another, before its receipts are read only that way.
const learnAfter = 16

// learnt returns the mode to look receipts up with: the configured one, or in auto mode what
// the upstream's receipts showed (IDSame until then: a conversion is tried only at the end of
// a receipt's hold, because a decimal id such as "123" is also the hex spelling of another id,
// 291, that may well be in the store).
func (s *Service) learnt(upstream string, mode smpp.IDMode) smpp.IDMode {
	if mode != smpp.IDAuto {
		return mode
	}
	if l := s.learned[upstream]; l != nil && l.mode != smpp.IDAuto {
		return l.mode
	}
	return smpp.IDSame
}

// learn records, in auto mode, which way receipt id rid matched the stored id cand.
func (s *Service) learn(upstream string, mode smpp.IDMode, rid, cand []byte) {
	if mode != smpp.IDAuto {
		return
	}
	l := s.learned[upstream]
	if l == nil {
		l = &learning{}
		s.learned[upstream] = l
	}
	if l.mode != smpp.IDAuto {
		return
	}
	var c smpp.IDCands
	for _, m := range []smpp.IDMode{smpp.IDSame, smpp.IDReceiptDecimal, smpp.IDReceiptHex} {
		if smpp.IDCandidates(&c, rid, m); c.Len() > 0 && string(c.At(0)) == string(cand) {
			l.n[m]++
			break
		}
	}
	for _, m := range []smpp.IDMode{smpp.IDSame, smpp.IDReceiptDecimal, smpp.IDReceiptHex} {
		if l.n[m] >= learnAfter && l.n[smpp.IDSame]+l.n[smpp.IDReceiptDecimal]+l.n[smpp.IDReceiptHex] == l.n[m] {
			l.mode = m
			s.log.Info("receipt id format learnt", "upstream", upstream, "receipt_id", m.String())
		}
	}
}

// statKey says which receipt of a message this is, for duplicates: its stat, else its
// message_state, else a hash of its text.
func (op *receiptOp) statKey() []byte {
	switch {
	case len(op.rc.Stat) > 0:
		return op.rc.Stat[:min(len(op.rc.Stat), 16)]
	case op.rc.HasState:
		return []byte{'#', op.rc.State}
	}
	return binary.BigEndian.AppendUint64([]byte{'~'}, xxh3.Hash(op.sub.Payload()))
}

func hasSeen(seen, key []byte) bool {
	for len(seen) > 0 {
		n := int(seen[0])
		if n+1 > len(seen) {
			return false
		}
		if string(seen[1:1+n]) == string(key) {
			return true
		}
		seen = seen[1+n:]
	}
	return false
}

// Done implements store.Op.
func (op *receiptOp) Done(err error) {
	if op.deferred {
		return // answered when its mapping comes or its hold ends
	}
	op.finish(err)
}

// finish answers the upstream once op's outcome is durable, and hands a stored item to its
// account's outbox.
func (op *receiptOp) finish(err error) {
	s := op.s
	if err != nil {
		s.storeFailed("deliver_sm", err)
		op.answer(smpp.StatusTempAppErr) // not stored: the SMSC keeps it and retries
		return
	}
	if op.enqueued {
		if op.kind == kindReceipt {
			s.matched.Inc()
		} else {
			s.moRouted.Inc()
		}
		s.outbox(op.account).notify(op.seq)
	}
	if op.optOut && s.cfg.OnOptOut != nil {
		if num := smpp.AddrNumber(op.sub.SrcAddr); num != 0 {
			s.optOuts.Inc()
			s.cfg.OnOptOut(num, &op.sub, op.account, op.upstream)
		}
	}
	op.answer(op.status)
}

// ---- MO routing ----

func (op *receiptOp) route(tx *store.Tx) {
	s := op.s
	concat, isConcat := op.sub.Concat()
	if len(s.cfg.OptOutWords) > 0 && (!isConcat || concat.Seq == 1) {
		w := firstWord(&op.sub)
		for _, k := range s.cfg.OptOutWords {
			if strings.EqualFold(w, k) {
				op.optOut = true
				break
			}
		}
	}
	key := moPartKey{op.upstream, string(op.sub.SrcAddr), concat.Ref}
	account := ""
	if isConcat && concat.Seq > 1 {
		if p, ok := s.moParts[key]; ok && tx.Now().Sub(p.at) < time.Hour {
			account = p.account
		}
	}
	if account == "" {
		account = s.routeMO(&op.sub, !isConcat || concat.Seq == 1)
	}
	if account == "" {
		s.moUnroutable.Inc()
		op.status = s.cfg.UnroutableStatus
		return
	}
	if isConcat {
		if len(s.moParts) > 100000 {
			clear(s.moParts)
		}
		s.moParts[key] = moPart{account, tx.Now()}
	}
	var cp *smpp.Concat
	if isConcat {
		cp = &concat
	}
	item := appendItemHeader(nil, kindMO, op.upstream, cp)
	op.seq = tx.Enqueue(account, append(item, op.pdu[smpp.HeaderLen:]...))
	op.status, op.account, op.enqueued = smpp.StatusOK, account, true
}

// routeMO returns the account of the first route that matches; keywords are only read when
// withKeyword (a later part of a concatenated message has no first word of its own).
func (s *Service) routeMO(sub *smpp.Submit, withKeyword bool) string {
	to := string(sub.DstAddr)
	var word string
	wordDone := false
	for _, r := range s.cfg.MORoutes {
		if p, ok := strings.CutSuffix(r.To, "*"); ok {
			if !strings.HasPrefix(to, p) {
				continue
			}
		} else if to != r.To {
			continue
		}
		if r.Keyword != "" {
			if !withKeyword {
				continue
			}
			if !wordDone {
				word, wordDone = firstWord(sub), true
			}
			if !strings.EqualFold(word, r.Keyword) {
				continue
			}
		}
		return r.Account
	}
	return ""
}

func firstWord(sub *smpp.Submit) string {
	text, _ := content.AppendText(nil, sub, false)
	i := 0
	for i < len(text) && unicode.IsSpace(text[i]) {
		i++
	}
	j := i
	for j < len(text) && !unicode.IsSpace(text[j]) {
		j++
	}
	return string(text[i:j])
}

// ---- held receipts' deadlines ----

// tickOp ends the hold of receipts past their deadline (all of them when all).
type tickOp struct {
	s        *Service
	all      bool
	expired  []*receiptOp
	resolved []*receiptOp // matched at the end of their hold
	done     chan struct{}
}

// Apply implements store.Op.
func (t *tickOp) Apply(tx *store.Tx) {
	s := t.s
	now := tx.Now()
	i := 0
	for ; i < len(s.heldFIFO); i++ {
		op := s.heldFIFO[i]
		if !op.holding {
			continue
		}
		if !t.all && op.deadline.After(now) {
			break
		}
		s.unhold(op)
		if !t.all && op.mode == smpp.IDAuto && op.eff == smpp.IDSame {
			// Auto mode, nothing learnt yet: last, try the conversions.
			op.eff = smpp.IDAuto
			if smpp.IDCandidates(&op.cands, op.rc.ID, smpp.IDAuto); op.match(tx) {
				t.resolved = append(t.resolved, op)
				continue
			}
		}
		t.expired = append(t.expired, op)
	}
	s.heldFIFO = append(s.heldFIFO[:0], s.heldFIFO[i:]...)
}

// Done implements store.Op.
func (t *tickOp) Done(err error) {
	for _, op := range t.resolved {
		op.finish(err)
	}
	for _, op := range t.expired {
		if t.all {
			// Shutting down: the mapping may yet come after a restart; the SMSC sends it again.
			op.answer(smpp.StatusTempAppErr)
			continue
		}
		t.s.noMatch.Inc()
		t.s.log.Debug("receipt matched no message", "upstream", op.upstream, "id", string(op.rc.ID))
		op.answer(t.s.cfg.UnmatchedStatus)
	}
	if t.done != nil {
		close(t.done)
	}
}

// ---- outbox items ----

// appendItemHeader writes an outbox item's header: version, kind, upstream, and the
// concatenation reference of an MO part (so its parts go out on one session).
func appendItemHeader(dst []byte, kind byte, upstream string, c *smpp.Concat) []byte {
	flags := byte(0)
	var ref uint16
	if c != nil {
		flags, ref = 1, c.Ref
	}
	dst = append(dst, 1, kind, flags)
	dst = binary.BigEndian.AppendUint16(dst, ref)
	dst = append(dst, byte(len(upstream)))
	return append(dst, upstream...)
}

// item is an outbox item read back.
type item struct {
	seq      uint64
	kind     byte
	concat   bool
	ref      uint16
	body     []byte // deliver_sm body
	attempts int
	due      time.Time
}

func parseItem(seq uint64, v []byte) (item, bool) {
	if len(v) < 6 || v[0] != 1 || len(v) < 6+int(v[5]) {
		return item{}, false
	}
	return item{seq: seq, kind: v[1], concat: v[2]&1 != 0, ref: binary.BigEndian.Uint16(v[3:5]),
		body: append([]byte(nil), v[6+int(v[5]):]...)}, true
}
