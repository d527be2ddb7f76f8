// Package recipient is the pipeline stage that caps non-OTP traffic per recipient: at most
// DailyCap messages to one number per UTC day, so no subscriber is flooded with marketing (the
// complaints that close an operator's channel). Verification codes (router.LaneOTP) are never
// capped. A message over the cap is refused with a configured status, never dropped silently.
//
// Memory is bounded: at most MaxEntries numbers are tracked per day; past that, new numbers are
// let through uncounted (fail open, counted in smppd_recipient_untracked_total) rather than
// refused. A message is counted when it passes, so one that later fails upstream still counts.
package recipient

import (
	"errors"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

const shards = 16

// Config configures the stage.
type Config struct {
	DailyCap   int          // messages per recipient per UTC day for non-OTP traffic; 0: no cap
	MaxEntries int          // recipients tracked per day (default 1<<22)
	Status     smpp.Status  // answers a message over the cap (default ESME_RSUBMITFAIL 0x45)
	Now        func() int64 // unix nanos; nil: smpp.Now
	Metrics    *metrics.Set
}

// Stage counts messages per recipient. Safe for concurrent use; allocation-free but for map growth.
type Stage struct {
	cap, perShard             int
	status                    smpp.Status
	now                       func() int64
	shards                    [shards]shard
	capped, untracked, passed *metrics.Counter
}

type shard struct {
	mu     sync.Mutex
	day    int64             // guarded by mu: the UTC day counts belong to
	counts map[uint64]uint32 // guarded by mu
	_      [40]byte          // keep shards on separate cache lines
}

// New builds the stage.
func New(cfg Config) (*Stage, error) {
	if cfg.DailyCap < 0 {
		return nil, errors.New("recipients.daily_cap: must not be negative")
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = 1 << 22
	}
	if cfg.Status == smpp.StatusOK {
		cfg.Status = 0x45
	}
	if cfg.Now == nil {
		cfg.Now = smpp.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	s := &Stage{cap: cfg.DailyCap, perShard: max(cfg.MaxEntries/shards, 1), status: cfg.Status, now: cfg.Now,
		capped:    cfg.Metrics.GetOrCreateCounter(`smppd_stage_decisions_total{stage="recipient",decision="daily_cap"}`),
		passed:    cfg.Metrics.GetOrCreateCounter(`smppd_stage_decisions_total{stage="recipient",decision="pass"}`),
		untracked: cfg.Metrics.GetOrCreateCounter(`smppd_recipient_untracked_total`)}
	for i := range s.shards {
		s.shards[i].counts = map[uint64]uint32{}
	}
	return s, nil
}

// Name implements router.Stage.
func (s *Stage) Name() string { return "recipient" }

// Process implements router.Stage.
func (s *Stage) Process(m *router.Message) router.Verdict {
	if s.cap == 0 || m.Lane == router.LaneOTP || m.Dest == 0 {
		return router.Verdict{}
	}
	day := s.now() / int64(24*time.Hour)
	sh := &s.shards[m.Dest%shards]
	sh.mu.Lock()
	if sh.day != day {
		clear(sh.counts)
		sh.day = day
	}
	c, known := sh.counts[m.Dest]
	switch {
	case int(c) >= s.cap:
		sh.mu.Unlock()
		if m.Trace != nil {
			m.Explain("recipient", "over the daily cap of %d messages to this number", s.cap)
		} else {
			s.capped.Inc()
		}
		return router.Verdict{Status: s.status, Rule: "daily_cap"}
	case m.Trace != nil: // dry run: decide, change nothing
	case known || len(sh.counts) < s.perShard:
		sh.counts[m.Dest] = c + 1
	default:
		s.untracked.Inc()
	}
	sh.mu.Unlock()
	if m.Trace != nil {
		m.Explain("recipient", "%d of %d today", c+1, s.cap)
	} else {
		s.passed.Inc()
	}
	return router.Verdict{}
}
