package content

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

// StageName is the stage's name in the pipeline, in metrics and in explain.
const StageName = "content"

// Stage is the content filter as a router.Stage. Process judges single-part messages,
// message_payload texts and, with Config.JudgeSegments, each segment on its own; the router
// judges a reassembled concatenated message with JudgeParts (see doc.go, Concatenated messages).
//
// Every decision outside a dry run is counted in
// smppd_stage_decisions_total{stage="content",decision,category}: pass (category "none"),
// reject (the rule's category), monitor (once per matching category), skip ("binary" or
// "unsupported"). Safe for concurrent use.
type Stage struct {
	f   *Filter
	cfg Config
	set *metrics.Set

	pass *metrics.Counter

	mu       sync.RWMutex
	counters map[counterKey]*metrics.Counter // guarded by mu

	concat *concat // nil unless Config.Concat.Enabled
}

type counterKey struct {
	action   Action
	category string
}

var _ router.Stage = (*Stage)(nil)

// NewStage returns the stage with cfg.Rules loaded.
func NewStage(cfg Config) (*Stage, error) {
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	f, err := NewFilter(cfg)
	if err != nil {
		return nil, err
	}
	s := &Stage{f: f, cfg: f.cfg, set: cfg.Metrics, counters: map[counterKey]*metrics.Counter{}}
	s.pass = s.counter(Pass, "none")
	s.set.GetOrCreateGauge(`smppd_content_rules{kind="keyword"}`, func() float64 { return float64(f.Rules().Keywords()) })
	s.set.GetOrCreateGauge(`smppd_content_rules{kind="regexp"}`, func() float64 { return float64(f.Rules().Regexps()) })
	if cfg.Concat.Enabled {
		if s.concat, err = newConcat(s, cfg.Concat, s.set); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Start starts what ends the holds of concatenated messages (Config.Concat).
func (s *Stage) Start() {
	if s.concat != nil {
		s.concat.start()
	}
}

// Close ends every hold: held segments are judged as they are and forwarded or refused. Call
// it after the SMPP server has drained and before the router closes.
func (s *Stage) Close() {
	if s.concat != nil {
		s.concat.close()
	}
}

// Name implements router.Stage.
func (s *Stage) Name() string { return StageName }

// Filter returns the stage's filter, to Load new rules.
func (s *Stage) Filter() *Filter { return s.f }

// Reload loads the configured rule files again (see Filter.Load).
func (s *Stage) Reload() error { return s.f.Load(s.cfg.Rules...) }

// Process implements router.Stage.
func (s *Stage) Process(m *router.Message) router.Verdict {
	if s.concat != nil {
		if c, ok := m.Submit.Concat(); ok && c.Total > 1 {
			if m.Trace != nil {
				m.Explain(StageName, "segment %d of %d: judged with the other segments of its message when sent; alone here", c.Seq, c.Total)
				return s.judgeAlone(m)
			}
			return s.concat.process(m, c)
		}
		return s.judgeAlone(m)
	}
	if !s.cfg.JudgeSegments {
		if c, ok := m.Submit.Concat(); ok {
			if m.Trace != nil {
				m.Explain(StageName, "segment %d of %d: judged on the reassembled message", c.Seq, c.Total)
			}
			return router.Verdict{}
		}
	}
	return s.judgeAlone(m)
}

// judgeAlone judges m on its own text.
func (s *Stage) judgeAlone(m *router.Message) router.Verdict {
	var d Decision
	if text, c := TextOf(m, s.f.cfg.PackedGSM7); c.Text() {
		d = s.f.Check(text)
		d.Coding = c
	} else {
		d = Decision{Action: Skip, Coding: c}
	}
	if m.Trace != nil { // dry run: explain, count nothing
		s.explain(m, &d)
		return d.Verdict()
	}
	s.count(&d)
	if d.Action >= Monitor && s.f.log.Enabled(context.Background(), slog.LevelDebug) {
		s.f.log.Debug("content rule matched", "system_id", m.Account.SystemID, "decision", d.Action.String(),
			"rule", d.Rule.ID, "category", d.Rule.Category)
	}
	return d.Verdict()
}

// Judge judges decoded text (a reassembled message the router decoded itself) and counts the
// decision.
func (s *Stage) Judge(text []rune) Decision {
	d := s.f.Check(text)
	s.count(&d)
	return d
}

// JudgeParts judges a concatenated message from its segments in order (see Filter.CheckParts)
// and counts the decision. The router calls it once all segments are held (see Reassembler)
// and applies d.Verdict() to every one of them.
func (s *Stage) JudgeParts(parts ...*smpp.Submit) Decision {
	d := s.f.CheckParts(parts)
	s.count(&d)
	if d.Action >= Monitor && s.f.log.Enabled(context.Background(), slog.LevelDebug) {
		s.f.log.Debug("content rule matched", "segments", len(parts), "decision", d.Action.String(),
			"rule", d.Rule.ID, "category", d.Rule.Category)
	}
	return d
}

func (s *Stage) explain(m *router.Message, d *Decision) {
	switch d.Action {
	case Reject:
		m.Explain(StageName, "reject: rule %s, category %s, answered %s", d.Rule.ID, d.Rule.Category, d.Rule.Status.String())
	case Monitor:
		for _, r := range d.Monitors() {
			m.Explain(StageName, "monitor: rule %s, category %s (counted, not blocked)", r.ID, r.Category)
		}
	case Skip:
		m.Explain(StageName, "skip: data_coding 0x%02X is %s, not text", m.Submit.DataCoding, d.Coding)
	default:
		rs := s.f.Rules()
		m.Explain(StageName, "pass: no rule matched (%s, %d keywords, %d regexps)", d.Coding, rs.Keywords(), rs.Regexps())
	}
}

func (s *Stage) count(d *Decision) {
	switch d.Action {
	case Pass:
		s.pass.Inc()
	case Reject:
		s.counter(Reject, d.Rule.Category).Inc()
	case Monitor:
		for _, r := range d.Monitors() {
			s.counter(Monitor, r.Category).Inc()
		}
	case Skip:
		cat := "binary"
		if d.Coding == CodingUnsupported {
			cat = "unsupported"
		}
		s.counter(Skip, cat).Inc()
	}
}

// counter returns the decision counter, created on first use and cached: no formatting on the
// hot path.
func (s *Stage) counter(a Action, category string) *metrics.Counter {
	k := counterKey{a, category}
	s.mu.RLock()
	c := s.counters[k]
	s.mu.RUnlock()
	if c != nil {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.counters[k]; c == nil {
		c = s.set.GetOrCreateCounter(fmt.Sprintf(`smppd_stage_decisions_total{stage=%q,decision=%q,category=%q}`,
			StageName, a.String(), category))
		s.counters[k] = c
	}
	return c
}
