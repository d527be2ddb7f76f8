package content

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

// ConcatConfig makes the stage judge a concatenated message on its whole text, so that a phrase
// split between two segments is caught.
//
// Each segment that arrives is held (Verdict.Hold) until every segment of its message is there,
// at most Hold after the first one; then the message is judged whole and its segments are all
// forwarded, or all refused. If the hold ends first (a segment is missing: the client sends the
// next segment only after the previous one's submit_sm_resp, a window of 1, or it lost one),
// the segments present are judged together and forwarded or refused, and each segment still to
// come is judged at once with the text of the segments before it (kept, within the same bounds,
// for KeepFor): refused if the text so far hits a reject rule, and then every later segment of
// that message is refused too. Hold 0 holds nothing and judges every segment that way.
type ConcatConfig struct {
	Enabled     bool
	Hold        time.Duration // longest a segment waits for the rest of its message
	KeepFor     time.Duration // how long the text of a message's earlier segments is kept
	MaxMessages int           // messages with segments held, and messages with text kept (each)
	MaxBytes    int           // bytes of segments held, and of text kept (each)
}

// DefaultConcatConfig returns the defaults: enabled, hold 1 s, keep 60 s, 10,000 messages,
// 4 MiB.
func DefaultConcatConfig() ConcatConfig {
	return ConcatConfig{Enabled: true, Hold: time.Second, KeepFor: time.Minute, MaxMessages: 10_000, MaxBytes: 4 << 20}
}

// Validate reports the first invalid field.
func (c *ConcatConfig) Validate() error {
	switch {
	case !c.Enabled:
		return nil
	case c.Hold < 0:
		return fmt.Errorf("content: hold must not be negative, got %s", c.Hold)
	case c.KeepFor <= 0:
		return fmt.Errorf("content: keep_for must be positive, got %s", c.KeepFor)
	case c.MaxMessages <= 0:
		return fmt.Errorf("content: max_held_messages must be positive, got %d", c.MaxMessages)
	case c.MaxBytes < 64<<10:
		return fmt.Errorf("content: max_held_bytes must be at least 64 KiB, got %d", c.MaxBytes)
	}
	return nil
}

// concat judges concatenated messages whole (see ConcatConfig).
type concat struct {
	s   *Stage
	cfg ConcatConfig
	r   *Reassembler[*router.Message] // nil with Hold 0

	mu    sync.Mutex
	kept  map[Key]*keptMsg // guarded by mu
	fifo  []*keptMsg       // guarded by mu: by creation, for expiry and eviction
	bytes int              // guarded by mu

	evicted, refusedLater *metrics.Counter

	closed  atomic.Bool // no more holds: segments are judged with those before them
	life    sync.Mutex  // orders start and close
	started bool        // guarded by life
	stop    chan struct{}
	done    chan struct{}
}

// keptMsg is a message whose segments are judged one by one with the text of those before.
type keptMsg struct {
	key     Key
	created int64
	parts   map[byte]*smpp.Submit // by segment number; each a view into its own copy of the PDU
	bytes   int
	refused router.Verdict // Status non-zero: rejected; its later segments are too
	gone    bool           // expired or evicted (still in fifo until the sweep passes it)
}

func newConcat(s *Stage, cfg ConcatConfig, set *metrics.Set) (*concat, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &concat{s: s, cfg: cfg, kept: map[Key]*keptMsg{}, stop: make(chan struct{}), done: make(chan struct{}),
		evicted:      set.GetOrCreateCounter(`smppd_content_concat_text_dropped_total`),
		refusedLater: set.GetOrCreateCounter(`smppd_content_concat_refused_after_release_total`)}
	if cfg.Hold > 0 {
		rc := ReassemblerConfig[*router.Message]{MaxMessages: cfg.MaxMessages, MaxParts: max(255, 4*cfg.MaxMessages),
			MaxBytes: cfg.MaxBytes, Timeout: cfg.Hold, Drop: c.released, Metrics: set}
		r, err := NewReassembler(rc)
		if err != nil {
			return nil, err
		}
		c.r = r
	}
	return c, nil
}

// start runs the loop that ends holds that expired.
func (c *concat) start() {
	c.life.Lock()
	defer c.life.Unlock()
	if c.started || c.closed.Load() {
		return
	}
	c.started = true
	go func() {
		defer close(c.done)
		if c.r == nil {
			<-c.stop
			return
		}
		t := time.NewTicker(max(c.cfg.Hold/10, 5*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case now := <-t.C:
				c.r.Expire(now.UnixNano())
			}
		}
	}()
}

// close ends every hold: the held segments are judged as they are and forwarded or refused, and
// no segment is held from then on.
func (c *concat) close() {
	c.life.Lock()
	if !c.closed.Swap(true) && c.started {
		close(c.stop)
		<-c.done
	}
	c.life.Unlock()
	if c.r != nil {
		c.r.Expire(1<<63 - 1)
	}
}

// process judges segment seg of m's message; the stage's Process calls it outside dry runs.
func (c *concat) process(m *router.Message, seg smpp.Concat) router.Verdict {
	k := KeyOf(m.Account.SystemID, &m.Submit, seg)
	now := time.Now().UnixNano()
	c.mu.Lock()
	km := c.kept[k]
	c.mu.Unlock()
	if km != nil || c.r == nil || c.closed.Load() {
		return c.judgeWithEarlier(k, m, seg, now)
	}
	added, err := c.r.Add(k, seg, m, len(m.PDU), now)
	switch err {
	case nil:
	case ErrBadSegment: // not a valid segment number: a message of its own
		return c.s.judgeAlone(m)
	default: // the bounds are full: the client should slow down
		return router.Verdict{Status: smpp.StatusThrottled, Rule: "concat_full"}
	}
	if added.HasReplaced { // the same segment again (a client's retry): the newer one is held
		added.Replaced.Refuse(smpp.StatusSysErr, "concat_segment_repeated")
	}
	if added.Complete == nil {
		if c.closed.Load() { // close ran its last Expire while this segment was being added
			c.r.Expire(1<<63 - 1)
		}
		return router.Verdict{Hold: true, Rule: "concat_hold"}
	}
	subs := make([]*smpp.Submit, len(added.Complete))
	for i, p := range added.Complete {
		subs[i] = &p.Submit
	}
	d := c.s.JudgeParts(subs...)
	v := d.Verdict()
	for _, p := range added.Complete {
		switch {
		case p == m:
		case v.Status != smpp.StatusOK:
			p.Refuse(v.Status, v.Rule)
		default:
			p.Resume()
		}
	}
	return v
}

// released is the Reassembler's Drop: the hold of k's segments ended before the message was
// complete. The segments present are judged together and forwarded or refused; their text is
// kept for the segments still to come.
func (c *concat) released(k Key, parts []*router.Message, _ DropReason) {
	now := time.Now().UnixNano()
	c.mu.Lock()
	km := c.keep(k, now)
	for _, p := range parts {
		seg, _ := p.Submit.Concat()
		c.add(km, seg.Seq, p)
	}
	d := c.s.f.CheckParts(km.ordered())
	v := d.Verdict()
	if v.Status != smpp.StatusOK {
		km.refused = v
	}
	c.mu.Unlock()
	c.s.count(&d)
	for _, p := range parts {
		if v.Status != smpp.StatusOK {
			p.Refuse(v.Status, v.Rule)
		} else {
			p.Resume()
		}
	}
}

// judgeWithEarlier judges m's segment with the kept text of the segments before it.
func (c *concat) judgeWithEarlier(k Key, m *router.Message, seg smpp.Concat, now int64) router.Verdict {
	c.mu.Lock()
	km := c.keep(k, now)
	if km.refused.Status != smpp.StatusOK {
		v := km.refused
		c.mu.Unlock()
		c.refusedLater.Inc()
		return v
	}
	c.add(km, seg.Seq, m)
	d := c.s.f.CheckParts(km.ordered())
	v := d.Verdict()
	last := len(km.parts) == int(k.Total)
	switch {
	case v.Status != smpp.StatusOK:
		km.refused = v
	case last: // every segment seen: the message is judged; its text is not needed any more
		c.drop(km)
	}
	c.mu.Unlock()
	if v.Status != smpp.StatusOK || last {
		c.s.count(&d) // once per message: when it is decided
	}
	return v
}

// keep returns k's kept message, creating it; mu is held.
func (c *concat) keep(k Key, now int64) *keptMsg {
	c.sweep(now)
	km := c.kept[k]
	if km == nil {
		km = &keptMsg{key: k, created: now, parts: map[byte]*smpp.Submit{}}
		c.kept[k] = km
		c.fifo = append(c.fifo, km)
		for len(c.kept) > c.cfg.MaxMessages {
			c.evictOldest()
		}
	}
	return km
}

// add keeps a copy of segment seq of m (its PDU, parsed again: a view of its own);
// mu is held. Past MaxBytes the oldest kept messages go first.
func (c *concat) add(km *keptMsg, seq byte, m *router.Message) {
	if _, ok := km.parts[seq]; ok {
		return
	}
	buf := slices.Clone(m.PDU)
	var sub smpp.Submit
	if len(buf) < smpp.HeaderLen || smpp.ParseSubmit(buf[smpp.HeaderLen:], &sub) != nil {
		return // the router parsed it once already; cannot happen
	}
	km.parts[seq] = &sub
	km.bytes += len(buf)
	c.bytes += len(buf)
	for c.bytes > c.cfg.MaxBytes && len(c.fifo) > 0 && c.fifo[0] != km {
		c.evictOldest()
	}
}

// ordered returns the kept segments in segment order.
func (km *keptMsg) ordered() []*smpp.Submit {
	seqs := make([]byte, 0, len(km.parts))
	for s := range km.parts {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	out := make([]*smpp.Submit, len(seqs))
	for i, s := range seqs {
		out[i] = km.parts[s]
	}
	return out
}

// sweep drops kept messages older than KeepFor; mu is held.
func (c *concat) sweep(now int64) {
	for len(c.fifo) > 0 && (c.fifo[0].gone || now-c.fifo[0].created > int64(c.cfg.KeepFor)) {
		km := c.fifo[0]
		c.fifo[0] = nil
		c.fifo = c.fifo[1:]
		if !km.gone {
			c.drop(km)
		}
	}
}

func (c *concat) evictOldest() {
	for len(c.fifo) > 0 {
		km := c.fifo[0]
		c.fifo[0] = nil
		c.fifo = c.fifo[1:]
		if !km.gone {
			c.drop(km)
			c.evicted.Inc()
			return
		}
	}
}

// drop forgets km; mu is held. It stays in fifo until the sweep reaches it.
func (c *concat) drop(km *keptMsg) {
	km.gone = true
	c.bytes -= km.bytes
	if c.kept[km.key] == km {
		delete(c.kept, km.key)
	}
}
