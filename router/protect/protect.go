// Package protect is the pipeline stage that refuses messages to numbers on the replicated
// blocklist, with a complaint record, or opted out of the sender (package store keeps them;
// its Index answers each check from an immutable in-memory snapshot: no lock, no I/O).
//
// It runs after the lane stage (the stale policy spares OTP) and needs the destination as an
// E.164 integer: the number stage's, or with that stage off a destination of digits only, with
// or without a leading +, read as is (smpp.AddrNumber).
package protect

import (
	"errors"
	"fmt"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

// Kinds of entries a Check reports, as bits.
const (
	Block     = 1 << 1
	Complaint = 1 << 2
	OptOut    = 1 << 3
)

// Config configures the stage.
type Config struct {
	// Check returns the kinds (bits above) of the entries of number whose scope matches a
	// message of account from sender. It must not block (store.Index.Check). sender is the
	// message's source address, valid only during the call: as bytes, so the check costs no
	// string allocation per message.
	Check   func(number uint64, account string, sender []byte) uint8
	Status  smpp.Status // answers a refused message (default ESME_RSUBMITFAIL 0x45)
	Metrics *metrics.Set
	// Stale, if set and true, refuses non-OTP traffic with StaleStatus: the node has not heard
	// from a cluster leader for longer than the staleness budget (policy "refuse").
	Stale       func() bool
	StaleStatus smpp.Status
}

// Stage is the protection stage.
type Stage struct {
	cfg                            Config
	block, complaint, optout, stal *metrics.Counter
	passed                         *metrics.Counter
}

// New returns the stage.
func New(cfg Config) (*Stage, error) {
	if cfg.Check == nil {
		return nil, errors.New("protect: Check is required")
	}
	if cfg.Status == 0 {
		return nil, errors.New("protect: status must not be 0 (ESME_ROK)")
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	c := func(d string) *metrics.Counter {
		return cfg.Metrics.GetOrCreateCounter(fmt.Sprintf(`smppd_stage_decisions_total{stage="protect",decision=%q}`, d))
	}
	return &Stage{cfg: cfg, block: c("blocklist"), complaint: c("complaint"), optout: c("optout"),
		stal: c("stale"), passed: c("pass")}, nil
}

// Name implements router.Stage.
func (s *Stage) Name() string { return "protect" }

// Process implements router.Stage.
func (s *Stage) Process(m *router.Message) router.Verdict {
	if s.cfg.Stale != nil && m.Lane != router.LaneOTP && s.cfg.Stale() {
		m.Explain("protect", "refused: cluster state stale (no leader within the staleness budget)")
		if m.Trace == nil {
			s.stal.Inc()
		}
		return router.Verdict{Status: s.cfg.StaleStatus, Rule: "stale"}
	}
	num := m.Dest
	if num == 0 {
		num = smpp.AddrNumber(m.Submit.DstAddr)
	}
	if num == 0 {
		m.Explain("protect", "not checked: destination is not a number")
		return router.Verdict{}
	}
	k := s.cfg.Check(num, m.Account.SystemID, m.Submit.SrcAddr)
	var rule string
	var c *metrics.Counter
	switch {
	case k&Block != 0:
		rule, c = "blocklist", s.block
	case k&Complaint != 0:
		rule, c = "complaint", s.complaint
	case k&OptOut != 0:
		rule, c = "optout", s.optout
	default:
		if m.Trace != nil { // formatting boxes its arguments: only in a dry run
			m.Explain("protect", "%d: no blocklist, complaint or opt-out entry", num)
		} else {
			s.passed.Inc()
		}
		return router.Verdict{}
	}
	if m.Trace != nil {
		m.Explain("protect", "%d: refused (%s)", num, rule)
	} else {
		c.Inc()
	}
	return router.Verdict{Status: s.cfg.Status, Rule: rule}
}
