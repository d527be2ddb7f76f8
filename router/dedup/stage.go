package dedup

import (
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
	"github.com/zeebo/xxh3"
)

// Action is what the router must do with a message after the dedup stage.
type Action uint8

const (
	// Continue: not a duplicate. Run the next stages and forward it; report its final
	// outcome with Stage.Done(Decision.Key, …) exactly once, whatever it is.
	Continue Action = iota
	// Reply: a duplicate of an accepted original. Answer ESME_ROK with Decision.MessageID
	// (router.FormatID) and do not forward it.
	Reply
	// Refuse: answer Decision.Status and do not forward it.
	Refuse
	// Wait: a duplicate of an original in flight; the Waiter passed to Decide was registered
	// and will be called once. Answer nothing now, keep the message, and on
	// OriginalDone(id, true) answer ESME_ROK with id; on OriginalDone(_, false) run Decide
	// again and act on its new Decision (the original failed: this message may go).
	Wait
)

func (a Action) String() string {
	switch a {
	case Continue:
		return "continue"
	case Reply:
		return "reply"
	case Refuse:
		return "refuse"
	case Wait:
		return "wait"
	}
	return "unknown"
}

// Rules reported in Decision.Rule (and router.Verdict.Rule).
const (
	RuleUnique             = "unique"
	RuleDuplicate          = "duplicate"
	RuleDuplicateInFlight  = "duplicate_in_flight"
	RuleNearDuplicateFlood = "near_duplicate_flood"
)

// Decision is the dedup stage's decision on one message.
type Decision struct {
	Action    Action
	Status    smpp.Status // Refuse: the status to answer
	MessageID uint64      // Reply: the original's message_id
	Key       Key         // the message's key; Continue: the key to report the outcome for
	Rule      string      // RuleUnique, RuleDuplicate, RuleDuplicateInFlight, RuleNearDuplicateFlood
}

// Stage is the dedup pipeline stage: exact duplicates by Index, near-duplicate floods by Near.
// Safe for concurrent use; Decide allocates nothing unless a duplicate waits (or in a dry run).
type Stage struct {
	x        *Index
	near     *Near // nil: no near-duplicate limit
	policy   Policy
	reject   smpp.Status
	inFlight smpp.Status
	withRef  bool

	unique, dup, flood *metrics.Counter
}

// NewStage returns a stage configured by cfg, with its own Index (and Near when enabled).
func NewStage(cfg Config) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	x, err := New(cfg)
	if err != nil {
		return nil, err
	}
	s := &Stage{x: x, policy: cfg.Policy, reject: cfg.RejectStatus, inFlight: cfg.InFlightStatus,
		withRef: cfg.KeyConcatRef}
	if cfg.NearDup.Enabled {
		if s.near, err = NewNear(cfg.NearDup, cfg.Now, cfg.Metrics); err != nil {
			return nil, err
		}
	}
	s.unique = cfg.Metrics.GetOrCreateCounter(`smppd_stage_decisions_total{stage="dedup",decision="unique"}`)
	s.dup = cfg.Metrics.GetOrCreateCounter(`smppd_stage_decisions_total{stage="dedup",decision="duplicate"}`)
	s.flood = cfg.Metrics.GetOrCreateCounter(`smppd_stage_decisions_total{stage="dedup",decision="near_duplicate_flood"}`)
	return s, nil
}

// Name implements router.Stage.
func (s *Stage) Name() string { return "dedup" }

// Index returns the stage's index.
func (s *Stage) Index() *Index { return s.x }

// Key returns m's duplicate key as this stage computes it.
func (s *Stage) Key(m *router.Message) Key { return keyOf(m, s.withRef) }

// Decide decides on m. w (may be nil) is registered to wait when m duplicates an original still
// in flight under Policy ReturnOriginal; without w such a duplicate is refused with
// InFlightStatus. A Continue decision must be followed by exactly one Done for its Key.
//
// In a dry run (m.Trace non-nil) Decide explains its decision and changes nothing: no key is
// recorded, no waiter registered, nothing counted; a duplicate that would wait is reported as
// refused with InFlightStatus, and the router must not call Done.
func (s *Stage) Decide(m *router.Message, w Waiter) Decision {
	key := keyOf(m, s.withRef)
	if s.policy == Reject {
		w = nil
	}
	if m.Trace != nil {
		return s.dryRun(m, key, w != nil)
	}
	if orig, dup := s.x.BeginWait(key, w); dup {
		s.dup.Inc()
		return s.duplicate(key, orig, w != nil)
	}
	if s.near != nil {
		if fp, ok := fingerprintOf(m); ok && !s.near.Allow(Tag(m, s.near.perDest), fp) {
			s.x.Failed(key) // it does not go: a resubmission later is not a duplicate
			s.flood.Inc()
			return Decision{Action: Refuse, Status: s.near.status, Key: key, Rule: RuleNearDuplicateFlood}
		}
	}
	s.unique.Inc()
	return Decision{Action: Continue, Key: key, Rule: RuleUnique}
}

// duplicate decides on a duplicate of orig; waiting: a Waiter was registered.
func (s *Stage) duplicate(key Key, orig Entry, waiting bool) Decision {
	switch {
	case s.policy == Reject:
		return Decision{Action: Refuse, Status: s.reject, Key: key, Rule: RuleDuplicate}
	case orig.State == Accepted:
		return Decision{Action: Reply, MessageID: orig.MessageID, Key: key, Rule: RuleDuplicate}
	case waiting:
		return Decision{Action: Wait, Key: key, Rule: RuleDuplicateInFlight}
	}
	return Decision{Action: Refuse, Status: s.inFlight, Key: key, Rule: RuleDuplicateInFlight}
}

// dryRun is Decide for `smppctl explain`: the same decision, explained, with no side effect.
func (s *Stage) dryRun(m *router.Message, key Key, canWait bool) Decision {
	if orig, dup := s.x.Peek(key); dup {
		d := s.duplicate(key, orig, false)
		wait := ""
		if canWait && d.Action == Refuse && orig.State == InFlight {
			wait = " (a live submit would wait for the original's outcome)"
		}
		m.Explain(s.Name(), "%s of %s original (message_id %016x, begun %s): %s %s%s", d.Rule, orig.State,
			orig.MessageID, time.Unix(0, orig.At).UTC().Format(time.RFC3339Nano), d.Action, d.Status, wait)
		return d
	}
	if s.near != nil {
		if fp, ok := fingerprintOf(m); ok && !s.near.Peek(Tag(m, s.near.perDest), fp) {
			m.Explain(s.Name(), "%s: fingerprint %016x over the limit: refuse %s", RuleNearDuplicateFlood, fp, s.near.status)
			return Decision{Action: Refuse, Status: s.near.status, Key: key, Rule: RuleNearDuplicateFlood}
		}
	}
	m.Explain(s.Name(), "unique (key %016x%016x)", key[0], key[1])
	return Decision{Action: Continue, Key: key, Rule: RuleUnique}
}

// Process implements router.Stage with today's router.Verdict (status and rule only): a
// duplicate cannot be answered ESME_ROK with its original's id, so Reply is refused with
// RejectStatus, and duplicates never wait (Refuse with InFlightStatus). Once router.Verdict
// carries Reply/MessageID and Hold, use Decide instead (see doc.go).
func (s *Stage) Process(m *router.Message) router.Verdict {
	var w Waiter
	if m.Trace == nil {
		w = m // a duplicate of an original in flight waits for its outcome (router.Message.OriginalDone)
	}
	d := s.Decide(m, w)
	switch d.Action {
	case Continue:
		if m.Trace == nil {
			m.DupKey, m.HasDupKey = d.Key, true
		}
		return router.Verdict{}
	case Reply:
		return router.Verdict{Reply: true, MessageID: d.MessageID, Rule: d.Rule}
	case Wait:
		return router.Verdict{Hold: true, Rule: d.Rule}
	}
	return router.Verdict{Status: d.Status, Rule: d.Rule}
}

// Finish implements router.Finisher: the outcome of an original this stage let through.
func (s *Stage) Finish(m *router.Message, status smpp.Status, messageID uint64) {
	if m.HasDupKey {
		s.Done(m.DupKey, status, messageID)
	}
}

// Done reports the final outcome of a message Decide let continue: status is what the client
// was answered, messageID the id it got with ESME_ROK. Any other status forgets the key, so a
// resubmission may go.
func (s *Stage) Done(key Key, status smpp.Status, messageID uint64) {
	if status == smpp.StatusOK {
		s.x.Accepted(key, messageID)
	} else {
		s.x.Failed(key)
	}
}

// Tag returns the near-duplicate counting identity of m: its account, and with perDest its
// destination (m.Dest, or the digits of destination_addr).
func Tag(m *router.Message, perDest bool) uint64 {
	t := xxh3.HashString(m.Account.SystemID)
	if !perDest {
		return t
	}
	if m.Dest != 0 {
		return mix64(t ^ mix64(m.Dest))
	}
	var buf [24]byte
	d := buf[:0]
	for _, c := range m.Submit.DstAddr {
		if '0' <= c && c <= '9' && len(d) < len(buf) {
			d = append(d, c)
		}
	}
	if len(d) == 0 {
		d = append(d, m.Submit.DstAddr[:min(len(m.Submit.DstAddr), len(buf))]...)
	}
	return mix64(t ^ xxh3.Hash(d))
}
