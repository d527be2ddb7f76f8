package router

import (
	"fmt"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/smpp"
)

// routerMetrics caches counters so the hot path looks them up without formatting or allocating.
type routerMetrics struct {
	set *metrics.Set

	mu       sync.RWMutex
	submits  map[submitKey]*metrics.Counter // guarded by mu
	retries  map[submitKey]*metrics.Counter // guarded by mu
	inDoubts map[string]*metrics.Counter    // guarded by mu
	lat      map[string]*metrics.Histogram  // guarded by mu
	stages   map[stageKey]*metrics.Counter  // guarded by mu
}

type stageKey struct{ account, stage, rule string }

type submitKey struct {
	account, upstream string
	status            smpp.Status
}

func newRouterMetrics(set *metrics.Set, pools []*Pool) *routerMetrics {
	m := &routerMetrics{set: set, submits: map[submitKey]*metrics.Counter{}, retries: map[submitKey]*metrics.Counter{},
		inDoubts: map[string]*metrics.Counter{}, lat: map[string]*metrics.Histogram{}, stages: map[stageKey]*metrics.Counter{}}
	for _, p := range pools {
		p := p
		set.GetOrCreateGauge(fmt.Sprintf(`smppd_upstream_window_in_use{upstream=%q}`, p.name), func() float64 { return float64(p.InUse()) })
		set.GetOrCreateGauge(fmt.Sprintf(`smppd_upstream_binds_up{upstream=%q}`, p.name), func() float64 {
			n := 0
			for i := range p.binds {
				if p.up(i) {
					n++
				}
			}
			return float64(n)
		})
		m.inDoubts[p.name] = set.GetOrCreateCounter(fmt.Sprintf(`smppd_in_doubt_total{upstream=%q}`, p.name))
		m.lat[p.name] = set.GetOrCreateHistogram(fmt.Sprintf(`smppd_upstream_latency_seconds{upstream=%q}`, p.name))
	}
	return m
}

func poolName(p *Pool) string {
	if p == nil {
		return "none"
	}
	return p.name
}

func (m *routerMetrics) counter(cache map[submitKey]*metrics.Counter, k submitKey, format string) *metrics.Counter {
	m.mu.RLock()
	c := cache[k]
	m.mu.RUnlock()
	if c != nil {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c = cache[k]; c == nil {
		c = m.set.GetOrCreateCounter(fmt.Sprintf(format, k.account, k.upstream, k.status.String()))
		cache[k] = c
	}
	return c
}

// submit counts a client-visible outcome.
func (m *routerMetrics) submit(account string, p *Pool, st smpp.Status) *metrics.Counter {
	return m.counter(m.submits, submitKey{account, poolName(p), st}, `smppd_submits_total{system_id=%q,upstream=%q,status=%q}`)
}

// retry counts an upstream "slow down" answer that was retried.
func (m *routerMetrics) retry(p *Pool, st smpp.Status) *metrics.Counter {
	return m.counter(m.retries, submitKey{"", poolName(p), st}, `smppd_upstream_retries_total{%.0supstream=%q,status=%q}`)
}

// decision counts a stage's refusal, reply or hold of an account's message, by rule.
func (m *routerMetrics) decision(account, stage, rule string) *metrics.Counter {
	k := stageKey{account, stage, rule}
	m.mu.RLock()
	c := m.stages[k]
	m.mu.RUnlock()
	if c != nil {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c = m.stages[k]; c == nil {
		c = m.set.GetOrCreateCounter(fmt.Sprintf(`smppd_pipeline_decisions_total{system_id=%q,stage=%q,rule=%q}`, account, stage, rule))
		m.stages[k] = c
	}
	return c
}

func (m *routerMetrics) inDoubt(p *Pool) *metrics.Counter {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.inDoubts[p.name]
}

func (m *routerMetrics) latency(p *Pool, d time.Duration) {
	m.mu.RLock()
	h := m.lat[p.name]
	m.mu.RUnlock()
	h.Update(d.Seconds())
}
