// Package governor keeps each account's and each upstream channel's complaint rate under the
// operators' limit: complaints per million messages sent, over a rolling window, counted across
// every node of the cluster.
//
// Inputs: the messages this node's upstreams accepted (the stage's Finish), the other nodes'
// sent counts (replicated as store.CmdSentCounts, which this node also proposes for its own
// every ReportInterval), and the complaint records of the replicated state (the governor is a
// store.Indexer). Every EvalInterval it recomputes the rates and publishes an immutable table;
// the stage reads it with one atomic load per message (no lock, no I/O).
//
// Rates, at three levels, with ppm = complaints × 10⁶ / max(sent, MinSent, 1):
//
//   - pair (account, channel): the account's complaints that name the channel;
//   - account: all the account's complaints (also those that name no channel), over all it sent;
//   - channel: all complaints that name the channel (also those that name no account).
//
// At WarnPPM a level warns (log, metrics, status); at LimitPPM it acts: with Action "refuse" a
// pair stops the account's non-OTP traffic to that channel and an account level stops its
// non-OTP traffic to every channel; with ChannelAction "refuse" a channel stops every account's
// non-OTP traffic to it. OTP always passes. The stop lifts by itself once the rate falls below
// the limit (complaints age out of the window, or a complaint is removed).
package governor

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/store"
)

// Actions at the limit.
const (
	ActionRefuse = "refuse" // refuse non-OTP traffic with Status
	ActionAlarm  = "alarm"  // log, metrics and status only
)

// Config configures the governor.
type Config struct {
	Window        time.Duration // rolling window the rates are computed over
	Bucket        time.Duration // granularity of sent counts; Window is a multiple of it
	WarnPPM       float64       // warn from this rate
	LimitPPM      float64       // act from this rate (the operators' 2 ppm)
	MinSent       uint64        // rates are computed over at least this many messages
	Action        string        // pair and account levels: ActionRefuse | ActionAlarm
	ChannelAction string        // channel level: ActionRefuse | ActionAlarm
	Status        smpp.Status   // answers a refused message

	ReportInterval time.Duration // how often this node proposes its sent counts
	EvalInterval   time.Duration // how often rates are recomputed

	// Reporter names this node's counts in the replicated state: node id and boot time, so a
	// restarted node reports under a new name and its counts before the restart remain.
	Reporter string
	// Counts reads the replicated sent counts from bucket from on (store.FSM.SentCounts).
	Counts func(from int64, fn func(c store.SentCount, reporter string) bool) error
	// Propose replicates a command (through the leader); nil: counts stay local (a node without
	// cluster state).
	Propose func(*store.Command) error

	Metrics *metrics.Set
	Logger  *slog.Logger
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.Bucket <= 0:
		return fmt.Errorf("bucket: must be positive, got %s", c.Bucket)
	case c.Window < c.Bucket || c.Window%c.Bucket != 0:
		return fmt.Errorf("window: must be a positive multiple of bucket (%s), got %s", c.Bucket, c.Window)
	case c.LimitPPM <= 0 || math.IsNaN(c.LimitPPM) || math.IsInf(c.LimitPPM, 0):
		return fmt.Errorf("limit_ppm: must be a positive number, got %v", c.LimitPPM)
	case c.WarnPPM <= 0 || c.WarnPPM > c.LimitPPM || math.IsNaN(c.WarnPPM):
		return fmt.Errorf("warn_ppm: must be positive and at most limit_ppm (%v), got %v", c.LimitPPM, c.WarnPPM)
	case c.Action != ActionRefuse && c.Action != ActionAlarm:
		return fmt.Errorf("action: want refuse or alarm, got %q", c.Action)
	case c.ChannelAction != ActionRefuse && c.ChannelAction != ActionAlarm:
		return fmt.Errorf("channel_action: want refuse or alarm, got %q", c.ChannelAction)
	case c.Status == smpp.StatusOK && (c.Action == ActionRefuse || c.ChannelAction == ActionRefuse):
		return errors.New("status: must not be 0 (ESME_ROK)")
	case c.ReportInterval <= 0:
		return fmt.Errorf("report_interval: must be positive, got %s", c.ReportInterval)
	case c.EvalInterval <= 0:
		return fmt.Errorf("eval_interval: must be positive, got %s", c.EvalInterval)
	case c.Reporter == "":
		return errors.New("governor: Reporter is required")
	}
	return nil
}

// Level names.
const (
	LevelPair    = "pair"
	LevelAccount = "account"
	LevelChannel = "channel"
)

// States of a level.
const (
	StateOK    = "ok"
	StateWarn  = "warn"
	StateLimit = "limit"
)

// Row is one level's rate.
type Row struct {
	Level      string  `json:"level"`
	Account    string  `json:"account,omitempty"`
	Channel    string  `json:"channel,omitempty"`
	Sent       uint64  `json:"sent"`
	Complaints int     `json:"complaints"`
	PPM        float64 `json:"ppm"`
	State      string  `json:"state"`
	Refusing   bool    `json:"refusing"` // non-OTP traffic is being refused because of this row
}

// Report is the governor's view at one evaluation.
type Report struct {
	At       time.Time `json:"at"`
	Window   string    `json:"window"`
	WarnPPM  float64   `json:"warn_ppm"`
	LimitPPM float64   `json:"limit_ppm"`
	Rows     []Row     `json:"rows"` // worst first
}

type pair struct{ account, channel string }

// table is what the stage reads: immutable once published.
type table struct {
	pairs    map[pair]bool   // (account, channel) whose non-OTP traffic is refused
	accounts map[string]bool // accounts whose non-OTP traffic is refused on every channel
	channels map[string]bool // channels whose non-OTP traffic is refused
	rows     []Row
	at       time.Time
}

func (t *table) empty() bool {
	return len(t.pairs) == 0 && len(t.accounts) == 0 && len(t.channels) == 0
}

// complaint is what the governor keeps of a complaint record.
type complaint struct {
	account, channel string
	created          int64
}

// Governor is the pipeline stage (router.Stage and router.Finisher) and the store.Indexer of
// complaints. Start its loop with Start; Close stops it.
type Governor struct {
	cfg Config
	log *slog.Logger

	cur atomic.Pointer[table]

	// Messages sent, since this boot, per (account, channel): copy-on-write map of counters.
	sentMu sync.Mutex
	sent   atomic.Pointer[map[pair]*atomic.Uint64]

	// Complaint records of the replicated state (FSM goroutine writes, the loop reads).
	cmu        sync.Mutex
	complaints map[store.Key]complaint

	// Loop state (loop goroutine only): this boot's counts per bucket, what was last folded in
	// from sent, and the buckets changed since the last report.
	buckets  map[int64]map[pair]uint64
	folded   map[pair]uint64
	dirty    map[int64]bool
	states   map[string]string // row key -> last state, for transition logs
	gauges   map[string]bool   // rows that have gauges
	reported atomic.Pointer[map[string]Row]

	refused, reportsOK, reportsFailed *metrics.Counter

	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	started atomic.Bool
}

var (
	_ router.Stage    = (*Governor)(nil)
	_ router.Finisher = (*Governor)(nil)
	_ store.Indexer   = (*Governor)(nil)
)

// New returns a governor; nothing is refused until its first evaluation.
func New(cfg Config) (*Governor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Governor{cfg: cfg, log: cfg.Logger.With("component", "governor"), complaints: map[store.Key]complaint{},
		buckets: map[int64]map[pair]uint64{}, folded: map[pair]uint64{}, dirty: map[int64]bool{},
		states: map[string]string{}, gauges: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	g.cur.Store(&table{})
	empty := map[pair]*atomic.Uint64{}
	g.sent.Store(&empty)
	rows := map[string]Row{}
	g.reported.Store(&rows)
	g.refused = cfg.Metrics.GetOrCreateCounter(`smppd_stage_decisions_total{stage="governor",decision="refused"}`)
	g.reportsOK = cfg.Metrics.GetOrCreateCounter(`smppd_governor_reports_total{result="ok"}`)
	g.reportsFailed = cfg.Metrics.GetOrCreateCounter(`smppd_governor_reports_total{result="failed"}`)
	return g, nil
}

// Name implements router.Stage.
func (g *Governor) Name() string { return "governor" }

// Process implements router.Stage: it refuses m if its account or channel is over the limit
// (with a refuse action) and m is not OTP. It runs after the stages that choose the pool and
// the lane.
func (g *Governor) Process(m *router.Message) router.Verdict {
	t := g.cur.Load()
	if t.empty() || m.Pool == nil {
		if m.Trace != nil {
			m.Explain("governor", "complaint rates within the limit")
		}
		return router.Verdict{}
	}
	acct, ch := m.Account.SystemID, m.Pool.Name()
	var why string
	switch {
	case t.pairs[pair{acct, ch}]:
		why = "account's complaint rate on this channel"
	case t.accounts[acct]:
		why = "account's complaint rate"
	case t.channels[ch]:
		why = "channel's complaint rate"
	default:
		m.Explain("governor", "complaint rates within the limit")
		return router.Verdict{}
	}
	if m.Lane == router.LaneOTP {
		if m.Trace != nil { // formatting boxes its arguments: only in a dry run
			m.Explain("governor", "OTP passes although the %s is at the limit", why)
		}
		return router.Verdict{}
	}
	if m.Trace != nil { // formatting boxes its arguments: only in a dry run
		m.Explain("governor", "refused: %s is at the limit (%g ppm)", why, g.cfg.LimitPPM)
	}
	if m.Trace == nil {
		g.refused.Inc()
	}
	return router.Verdict{Status: g.cfg.Status, Rule: "complaint_rate"}
}

// Finish implements router.Finisher: it counts the messages an upstream accepted.
func (g *Governor) Finish(m *router.Message, _ smpp.Status, _ uint64) {
	if !m.Accepted() || m.Pool == nil {
		return
	}
	g.add(pair{m.Account.SystemID, m.Pool.Name()})
}

// add counts one message sent for k.
func (g *Governor) add(k pair) {
	if c := (*g.sent.Load())[k]; c != nil {
		c.Add(1)
		return
	}
	g.sentMu.Lock()
	cur := *g.sent.Load()
	c := cur[k]
	if c == nil {
		next := make(map[pair]*atomic.Uint64, len(cur)+1)
		for kk, v := range cur {
			next[kk] = v
		}
		c = new(atomic.Uint64)
		next[k] = c
		g.sent.Store(&next)
	}
	g.sentMu.Unlock()
	c.Add(1)
}

// Reset implements store.Indexer: it keeps the complaint records of the whole state.
func (g *Governor) Reset(all func(yield func(store.Entry) bool)) {
	observe, done := g.ResetObserver()
	all(func(e store.Entry) bool { observe(e); return true })
	done()
}

// ResetObserver is Reset for a caller that reads the state for another Indexer anyway (one pass
// for both): observe every entry of the new state, then call done.
func (g *Governor) ResetObserver() (observe func(store.Entry), done func()) {
	next := map[store.Key]complaint{}
	return func(e store.Entry) {
			if e.Kind == store.KindComplaint {
				next[e.Key] = complaint{e.Scope.Account, e.Upstream, e.Created}
			}
		}, func() {
			g.cmu.Lock()
			g.complaints = next
			g.cmu.Unlock()
		}
}

// Update implements store.Indexer.
func (g *Governor) Update(upserts []store.Entry, deletes []store.Key) {
	g.cmu.Lock()
	defer g.cmu.Unlock()
	for _, e := range upserts {
		if e.Kind == store.KindComplaint {
			g.complaints[e.Key] = complaint{e.Scope.Account, e.Upstream, e.Created}
		}
	}
	for _, k := range deletes {
		if k.Kind == store.KindComplaint {
			delete(g.complaints, k)
		}
	}
}

// Start starts the evaluation and reporting loop.
func (g *Governor) Start() {
	if g.started.CompareAndSwap(false, true) {
		go g.loop()
	}
}

// Close stops the loop after a last report of this node's counts (best effort).
func (g *Governor) Close() {
	g.once.Do(func() { close(g.stop) })
	if g.started.Load() {
		<-g.done
	}
}

func (g *Governor) loop() {
	defer close(g.done)
	eval := time.NewTicker(g.cfg.EvalInterval)
	defer eval.Stop()
	report := time.NewTicker(g.cfg.ReportInterval)
	defer report.Stop()
	g.Evaluate(time.Now())
	for {
		select {
		case <-g.stop:
			g.fold(time.Now())
			g.report(time.Now())
			return
		case now := <-eval.C:
			g.Evaluate(now)
		case now := <-report.C:
			g.fold(now)
			g.report(now)
		}
	}
}

func (g *Governor) bucketOf(ms int64) int64 {
	b := g.cfg.Bucket.Milliseconds()
	return ms - ms%b
}

// fold moves what was sent since the last fold into now's bucket.
func (g *Governor) fold(now time.Time) {
	b := g.bucketOf(now.UnixMilli())
	for k, c := range *g.sent.Load() {
		v := c.Load()
		if d := v - g.folded[k]; d > 0 {
			if g.buckets[b] == nil {
				g.buckets[b] = map[pair]uint64{}
			}
			g.buckets[b][k] += d
			g.folded[k] = v
			g.dirty[b] = true
		}
	}
	first := g.windowStart(now.UnixMilli())
	for b := range g.buckets {
		if b < first {
			delete(g.buckets, b)
			delete(g.dirty, b)
		}
	}
}

// windowStart is the first bucket that overlaps the window ending at now (unix ms).
func (g *Governor) windowStart(now int64) int64 {
	return g.bucketOf(now - g.cfg.Window.Milliseconds() + 1)
}

// report proposes this boot's counts of the buckets changed since the last report (absolute
// values: a repeated or retried report changes nothing), and prunes what left the window.
func (g *Governor) report(now time.Time) {
	if g.cfg.Propose == nil || len(g.dirty) == 0 {
		return
	}
	var items []store.SentCount
	for b := range g.dirty {
		for k, v := range g.buckets[b] {
			items = append(items, store.SentCount{Bucket: b, Account: k.account, Channel: k.channel, Sent: v})
		}
	}
	slices.SortFunc(items, func(a, b store.SentCount) int {
		return cmp.Or(cmp.Compare(a.Bucket, b.Bucket), strings.Compare(a.Account, b.Account), strings.Compare(a.Channel, b.Channel))
	})
	cutoff := g.windowStart(now.UnixMilli()) - g.cfg.Bucket.Milliseconds()
	for len(items) > 0 {
		n := min(len(items), store.MaxCommandItems)
		cmd := store.Command{Type: store.CmdSentCounts, Time: now.UnixMilli(), NodeID: g.cfg.Reporter,
			Cutoff: max(cutoff, 0), Counts: items[:n]}
		if err := g.cfg.Propose(&cmd); err != nil {
			g.reportsFailed.Inc()
			g.log.Debug("sent counts not replicated yet; retried at the next report", "err", err)
			return // dirty stays: the next report sends them again
		}
		items = items[n:]
	}
	g.reportsOK.Inc()
	clear(g.dirty)
}

// Evaluate recomputes the rates as of now and publishes the table the stage reads. The loop
// calls it every EvalInterval; call it directly only on a governor that was not started.
func (g *Governor) Evaluate(now time.Time) {
	nowMS := now.UnixMilli()
	first := g.windowStart(nowMS)
	g.fold(now)
	sent := map[pair]uint64{}
	for b, m := range g.buckets {
		if b >= first {
			for k, v := range m {
				sent[k] += v
			}
		}
	}
	if g.cfg.Counts != nil {
		err := g.cfg.Counts(first, func(c store.SentCount, reporter string) bool {
			if reporter != g.cfg.Reporter { // this boot's own counts are the local ones, fresher
				sent[pair{c.Account, c.Channel}] += c.Sent
			}
			return true
		})
		if err != nil {
			g.log.Warn("cannot read the replicated sent counts; rates use this node's counts only", "err", err)
		}
	}
	from := nowMS - g.cfg.Window.Milliseconds()
	cpl := map[pair]int{}
	g.cmu.Lock()
	for _, c := range g.complaints {
		if c.created > from && c.created <= nowMS {
			cpl[pair{c.account, c.channel}]++
		}
	}
	g.cmu.Unlock()

	// Aggregate the levels: (account, channel) a pair, (account, "") an account on every channel,
	// ("", channel) a channel for every account. A pair needs both names; complaints that name
	// only an account or only a channel count for that level alone.
	type agg struct {
		sent uint64
		cpl  int
	}
	levels := map[pair]*agg{}
	add := func(k pair, sent uint64, cpl int) {
		a := levels[k]
		if a == nil {
			a = &agg{}
			levels[k] = a
		}
		a.sent, a.cpl = a.sent+sent, a.cpl+cpl
	}
	spread := func(k pair, sent uint64, cpl int) {
		if k.account != "" && k.channel != "" {
			add(k, sent, cpl)
		}
		if k.account != "" {
			add(pair{account: k.account}, sent, cpl)
		}
		if k.channel != "" {
			add(pair{channel: k.channel}, sent, cpl)
		}
	}
	for k, v := range sent {
		spread(k, v, 0)
	}
	for k, n := range cpl {
		spread(k, 0, n)
	}
	t := &table{pairs: map[pair]bool{}, accounts: map[string]bool{}, channels: map[string]bool{}, at: now}
	for k, a := range levels {
		level, action := LevelPair, g.cfg.Action
		switch {
		case k.channel == "":
			level = LevelAccount
		case k.account == "":
			level, action = LevelChannel, g.cfg.ChannelAction
		}
		r := Row{Level: level, Account: k.account, Channel: k.channel, Sent: a.sent, Complaints: a.cpl,
			PPM: g.ppm(a.cpl, a.sent), State: StateOK}
		switch {
		case r.PPM >= g.cfg.LimitPPM:
			r.State, r.Refusing = StateLimit, action == ActionRefuse
		case r.PPM >= g.cfg.WarnPPM:
			r.State = StateWarn
		}
		switch {
		case !r.Refusing:
		case level == LevelPair:
			t.pairs[k] = true
		case level == LevelAccount:
			t.accounts[k.account] = true
		default:
			t.channels[k.channel] = true
		}
		t.rows = append(t.rows, r)
	}
	slices.SortFunc(t.rows, func(a, b Row) int {
		switch {
		case a.PPM != b.PPM:
			if a.PPM > b.PPM {
				return -1
			}
			return 1
		case a.Level != b.Level:
			return strings.Compare(a.Level, b.Level)
		case a.Account != b.Account:
			return strings.Compare(a.Account, b.Account)
		}
		return strings.Compare(a.Channel, b.Channel)
	})
	g.cur.Store(t)
	g.publish(t)
}

func (g *Governor) ppm(complaints int, sent uint64) float64 {
	if complaints == 0 {
		return 0
	}
	return float64(complaints) * 1e6 / float64(max(sent, g.cfg.MinSent, 1))
}

func rowKey(r Row) string {
	switch r.Level {
	case LevelPair:
		return fmt.Sprintf(`system_id=%q,upstream=%q`, r.Account, r.Channel)
	case LevelAccount:
		return fmt.Sprintf(`system_id=%q`, r.Account)
	}
	return fmt.Sprintf(`upstream=%q`, r.Channel)
}

// publish logs state transitions and keeps the gauges' values (loop goroutine).
func (g *Governor) publish(t *table) {
	rows := make(map[string]Row, len(t.rows))
	for _, r := range t.rows {
		k := rowKey(r)
		rows[k] = r
		if prev := g.states[k]; prev != r.State && (prev != "" || r.State != StateOK) {
			args := []any{"scope", r.Level, "system_id", r.Account, "upstream", r.Channel, "sent", r.Sent,
				"complaints", r.Complaints, "ppm", r.PPM, "warn_ppm", g.cfg.WarnPPM, "limit_ppm", g.cfg.LimitPPM, "refusing", r.Refusing}
			switch r.State {
			case StateLimit:
				g.log.Error("complaint rate at the limit", args...)
			case StateWarn:
				g.log.Warn("complaint rate approaching the limit", args...)
			default:
				g.log.Info("complaint rate back within the limit", args...)
			}
		}
		g.states[k] = r.State
	}
	for k := range g.states {
		if _, ok := rows[k]; !ok {
			delete(g.states, k)
		}
	}
	g.reported.Store(&rows)
	for k := range rows {
		if g.gauges[k] {
			continue
		}
		g.gauges[k] = true
		g.cfg.Metrics.GetOrCreateGauge(`smppd_governor_ppm{`+k+`}`, g.gauge(k, func(r Row) float64 { return r.PPM }))
		g.cfg.Metrics.GetOrCreateGauge(`smppd_governor_sent{`+k+`}`, g.gauge(k, func(r Row) float64 { return float64(r.Sent) }))
		g.cfg.Metrics.GetOrCreateGauge(`smppd_governor_complaints{`+k+`}`, g.gauge(k, func(r Row) float64 { return float64(r.Complaints) }))
		g.cfg.Metrics.GetOrCreateGauge(`smppd_governor_state{`+k+`}`, g.gauge(k, func(r Row) float64 {
			switch r.State {
			case StateLimit:
				return 2
			case StateWarn:
				return 1
			}
			return 0
		}))
	}
}

// gauge reads row k of the latest evaluation (0 once it has left the window).
func (g *Governor) gauge(k string, f func(Row) float64) func() float64 {
	return func() float64 {
		r, ok := (*g.reported.Load())[k]
		if !ok {
			return 0
		}
		return f(r)
	}
}

// Report returns the latest evaluation.
func (g *Governor) Report() Report {
	t := g.cur.Load()
	return Report{At: t.at, Window: g.cfg.Window.String(), WarnPPM: g.cfg.WarnPPM, LimitPPM: g.cfg.LimitPPM,
		Rows: slices.Clone(t.rows)}
}
