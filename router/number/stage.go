package number

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

// Config configures the number Stage.
type Config struct {
	// Normalizer: default country, reading of TON 0 numbers, minimum digits.
	NormalizerConfig
	// RangeFiles are operator-supplied "prefix,operator" files extending (and, for the same
	// prefix, overriding) the generated carrier prefixes; later files win.
	RangeFiles []string
	// PortFiles are "msisdn,operator" files of ported numbers; an exact number wins over any
	// prefix; later files win.
	PortFiles []string
	// Routes are tried in order; the first matching rule's pool takes the message.
	Routes []Rule
	// Fallback is the pool for messages no rule matches; "" keeps the pool the account routes
	// to, if any. A message left without a pool is refused with NoRouteStatus.
	Fallback string
	// NoRouteStatus answers a message no rule, fallback or account pool routes.
	NoRouteStatus smpp.Status
	Logger        *slog.Logger
	// Metrics receives the stage's counters (nil: a private set).
	Metrics *metrics.Set
}

// DefaultConfig returns the defaults: DefaultNormalizerConfig, no files, no routes, refuse
// unroutable messages with ESME_RINVDSTADR.
func DefaultConfig() Config {
	return Config{NormalizerConfig: DefaultNormalizerConfig(), NoRouteStatus: smpp.StatusInvDstAddr}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if err := c.NormalizerConfig.Validate(); err != nil {
		return err
	}
	if c.NoRouteStatus == smpp.StatusOK {
		return errors.New("no_route_status: must not be 0 (ESME_ROK)")
	}
	for i, r := range c.Routes {
		if r.Pool == "" {
			return fmt.Errorf("routes[%d]: pool: required", i)
		}
	}
	return nil
}

// Stage name, rules and decisions (Verdict.Rule, metric labels).
const (
	StageName          = "number"
	RuleInvalid        = "invalid_destination"
	RuleNoRoute        = "no_route"
	decisionRouted     = "routed"
	unknownOperatorTag = "unknown"
)

// Stage is the router stage that normalises a submit_sm's destination to E.164, attributes its
// country and operator (m.Dest, m.Country, m.Operator) and routes it by operator, country and
// account. Process allocates nothing; the operator table reloads underneath it (Reload).
type Stage struct {
	norm    *Normalizer
	ops     *Reloader
	routes  *Routes
	noRoute smpp.Status
	m       *stageMetrics
}

// NewStage builds the stage, loading the operator table; pools are the upstream pools by name.
func NewStage(cfg Config, pools map[string]*router.Pool) (*Stage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	norm, err := NewNormalizer(cfg.NormalizerConfig)
	if err != nil {
		return nil, err
	}
	routes, err := NewRoutes(cfg.Routes, cfg.Fallback, pools)
	if err != nil {
		return nil, err
	}
	ops, err := NewReloader(cfg.RangeFiles, cfg.PortFiles, cfg.Logger)
	if err != nil {
		return nil, err
	}
	return &Stage{norm: norm, ops: ops, routes: routes, noRoute: cfg.NoRouteStatus, m: newStageMetrics(cfg.Metrics)}, nil
}

// Name implements router.Stage.
func (s *Stage) Name() string { return StageName }

// Reload rebuilds the operator table from its files; on error the current one stays.
func (s *Stage) Reload() error { return s.ops.Reload() }

// Reloader returns the stage's operator table holder.
func (s *Stage) Reloader() *Reloader { return s.ops }

// Process implements router.Stage.
func (s *Stage) Process(m *router.Message) router.Verdict {
	dry := m.Trace != nil
	num, err := s.norm.Normalize(m.Submit.DstAddr, m.Submit.DstTON)
	if err != nil {
		if dry {
			m.Explain(StageName, "destination %q (ton %d): %v", m.Submit.DstAddr, m.Submit.DstTON, err)
		} else {
			s.m.count(decInvalid, nil, 0)
		}
		return router.Verdict{Status: smpp.StatusInvDstAddr, Rule: RuleInvalid}
	}
	t := s.ops.Table()
	op := t.lookup(num.E164)
	m.Dest, m.Country, m.Operator = num.E164, num.Region, t.names[op]
	account := ""
	if m.Account != nil {
		account = m.Account.SystemID
	}
	pool, rule := s.routes.Route(m.Operator, m.Country, account)
	how := "fallback"
	if rule >= 0 {
		how = "rule"
	} else if pool == nil && m.Pool != nil {
		pool, how = m.Pool, "account"
	}
	if pool == nil {
		if dry {
			m.Explain(StageName, "dest=+%d country=%s operator=%s: no route", num.E164, num.Region, m.Operator)
		} else {
			s.m.count(decNoRoute, t, op)
		}
		return router.Verdict{Status: s.noRoute, Rule: RuleNoRoute}
	}
	m.Pool = pool
	if dry {
		if rule >= 0 {
			how = fmt.Sprintf("routes[%d]", rule)
		}
		m.Explain(StageName, "dest=+%d country=%s operator=%s pool=%s by %s", num.E164, num.Region, m.Operator, pool.Name(), how)
	} else {
		s.m.count(decRouted, t, op)
	}
	return router.Verdict{}
}

// decisions counted per operator.
const (
	decInvalid = iota
	decNoRoute
	decRouted
	decisions
)

var decisionNames = [decisions]string{RuleInvalid, RuleNoRoute, decisionRouted}

// stageMetrics caches smppd_stage_decisions_total counters per decision and operator so the hot
// path neither formats names nor takes a lock: a slice per operator table, indexed like its
// names, whose counters are created on first use.
type stageMetrics struct {
	set     *metrics.Set
	invalid *metrics.Counter
	cur     atomic.Pointer[opCounters]
	mu      sync.Mutex // serialises counter creation and cache replacement
}

// opCounters holds the counters of one operator table's names.
type opCounters struct {
	t *Table
	c [decisions][]atomic.Pointer[metrics.Counter]
}

func newStageMetrics(set *metrics.Set) *stageMetrics {
	m := &stageMetrics{set: set}
	m.invalid = set.GetOrCreateCounter(counterName(decInvalid, ""))
	return m
}

func counterName(dec int, operator string) string {
	if operator == "" {
		operator = unknownOperatorTag
	}
	return fmt.Sprintf(`smppd_stage_decisions_total{stage=%q,decision=%q,operator=%q}`, StageName, decisionNames[dec], operator)
}

// count increments the counter of decision dec for operator op of table t (nil: no operator).
func (m *stageMetrics) count(dec int, t *Table, op uint16) {
	if t == nil {
		m.invalid.Inc()
		return
	}
	oc := m.cur.Load()
	if oc == nil || oc.t != t {
		if oc = m.forTable(t); oc == nil {
			// A message that read the table just before a reload: rare, not worth a cache.
			m.set.GetOrCreateCounter(counterName(dec, t.names[op])).Inc()
			return
		}
	}
	c := oc.c[dec][op].Load()
	if c == nil {
		m.mu.Lock()
		if c = oc.c[dec][op].Load(); c == nil {
			c = m.set.GetOrCreateCounter(counterName(dec, t.names[op]))
			oc.c[dec][op].Store(c)
		}
		m.mu.Unlock()
	}
	c.Inc()
}

// forTable returns the counter cache for t, replacing the one of an older table (a reload),
// or nil if t is older than the cached one. Counters carry over: the set returns the existing
// counter for a name.
func (m *stageMetrics) forTable(t *Table) *opCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	if oc := m.cur.Load(); oc != nil && oc.t == t {
		return oc
	} else if oc != nil && oc.t.gen > t.gen {
		return nil
	}
	oc := &opCounters{t: t}
	for d := range oc.c {
		oc.c[d] = make([]atomic.Pointer[metrics.Counter], len(t.names))
	}
	m.cur.Store(oc)
	return oc
}
