package number

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

type stageFixture struct {
	stage *Stage
	set   *metrics.Set
	pools map[string]*router.Pool
}

func newStage(t testing.TB, mutate func(*Config)) *stageFixture {
	t.Helper()
	pools := map[string]*router.Pool{}
	for _, n := range []string{"telekom", "vodafone", "de", "bulk-vf", "world", "account"} {
		pools[n] = router.NewPool(n, nil, 0)
	}
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DefaultCountry = "DE"
	cfg.RangeFiles = []string{writeFile(t, dir, "ranges.csv", "4915510,Lebara Custom\n")}
	cfg.PortFiles = []string{writeFile(t, dir, "ported.csv", "4915199999999,Vodafone\n")}
	cfg.Routes = []Rule{
		{Account: "bulk", Operator: "Vodafone", Pool: "bulk-vf"},
		{Operator: "T-Mobile", Pool: "telekom"},
		{Operator: "Vodafone", Pool: "vodafone"},
		{Country: "de", Pool: "de"},
	}
	cfg.Metrics, cfg.Logger = metrics.NewSet(), slog.New(slog.DiscardHandler)
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := NewStage(cfg, pools)
	if err != nil {
		t.Fatal(err)
	}
	return &stageFixture{s, cfg.Metrics, pools}
}

func message(account string, dst string, ton byte, pool *router.Pool) *router.Message {
	m := &router.Message{Account: &smpp.Account{SystemID: account}, Pool: pool}
	m.Submit.SrcTON, m.Submit.SrcAddr = TONAlphanumeric, []byte("MyShop")
	m.Submit.DstTON, m.Submit.DstNPI, m.Submit.DstAddr = ton, 1, []byte(dst)
	return m
}

func (f *stageFixture) metric(t *testing.T, decision, operator string) float64 {
	t.Helper()
	var b bytes.Buffer
	f.set.WritePrometheus(&b)
	want := `smppd_stage_decisions_total{stage="number",decision="` + decision + `",operator="` + operator + `"} `
	for _, l := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(l, want); ok {
			var n float64
			for _, c := range v {
				n = n*10 + float64(c-'0')
			}
			return n
		}
	}
	return 0
}

func TestStage(t *testing.T) {
	f := newStage(t, nil)
	tests := []struct {
		name     string
		account  string
		dst      string
		ton      byte
		accPool  string // the account's own pool, "" none
		status   smpp.Status
		rule     string
		dest     uint64
		country  string
		operator string
		pool     string
	}{
		{"T-Mobile national", "shop", "0151 1234 5678", TONNational, "", 0, "", 4915112345678, "DE", "T-Mobile", "telekom"},
		{"Vodafone international", "shop", "+49 162 1234567", TONInternational, "", 0, "", 491621234567, "DE", "Vodafone", "vodafone"},
		{"account rule before operator rule", "bulk", "491621234567", TONInternational, "", 0, "", 491621234567, "DE", "Vodafone", "bulk-vf"},
		{"ported number", "shop", "015199999999", TONUnknown, "", 0, "", 4915199999999, "DE", "Vodafone", "vodafone"},
		{"range file operator, country rule", "shop", "+49 1551 0123456", TONInternational, "", 0, "", 4915510123456, "DE", "Lebara Custom", "de"},
		{"German landline, country rule", "shop", "030 1234567", TONNational, "", 0, "", 49301234567, "DE", "", "de"},
		{"no rule: the account's pool", "shop", "+33 6 12 34 56 78", TONInternational, "account", 0, "", 33612345678, "FR", "SFR", "account"},
		{"no rule, no pool", "shop", "+33 6 12 34 56 78", TONInternational, "", smpp.StatusInvDstAddr, RuleNoRoute, 33612345678, "FR", "SFR", ""},
		{"invalid destination", "shop", "0151-CALL-ME", TONNational, "account", smpp.StatusInvDstAddr, RuleInvalid, 0, "", "", "account"},
		{"alphanumeric destination", "shop", "MyShop", TONAlphanumeric, "account", smpp.StatusInvDstAddr, RuleInvalid, 0, "", "", "account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := message(tt.account, tt.dst, tt.ton, f.pools[tt.accPool])
			v := f.stage.Process(m)
			if v.Status != tt.status || v.Rule != tt.rule {
				t.Fatalf("verdict %+v, want status %v rule %q", v, tt.status, tt.rule)
			}
			pool := ""
			if m.Pool != nil {
				pool = m.Pool.Name()
			}
			if m.Dest != tt.dest || m.Country != tt.country || m.Operator != tt.operator || pool != tt.pool {
				t.Fatalf("dest=%d country=%s operator=%q pool=%s, want %d %s %q %s", m.Dest, m.Country, m.Operator, pool,
					tt.dest, tt.country, tt.operator, tt.pool)
			}
		})
	}
	for _, c := range []struct {
		decision, operator string
		want               float64
	}{
		{"routed", "T-Mobile", 1}, {"routed", "Vodafone", 3}, {"routed", "Lebara Custom", 1}, {"routed", "unknown", 1},
		{"routed", "SFR", 1}, {"no_route", "SFR", 1}, {"invalid_destination", "unknown", 2},
	} {
		if got := f.metric(t, c.decision, c.operator); got != c.want {
			t.Errorf("decision %s operator %s counted %v, want %v", c.decision, c.operator, got, c.want)
		}
	}
}

func TestStageFallbackAndNoRouteStatus(t *testing.T) {
	f := newStage(t, func(c *Config) { c.Fallback = "world" })
	m := message("shop", "+33612345678", TONInternational, nil)
	if v := f.stage.Process(m); v.Status != 0 || m.Pool.Name() != "world" {
		t.Fatalf("fallback: %+v pool %v", v, m.Pool)
	}
	f = newStage(t, func(c *Config) { c.NoRouteStatus = 0x0B /* ESME_RINVDSTADR is the default */ + 0x5 })
	m = message("shop", "+33612345678", TONInternational, nil)
	if v := f.stage.Process(m); v.Status != 0x10 || v.Rule != RuleNoRoute {
		t.Fatalf("no route status: %+v", v)
	}
}

func TestStageExplainIsDry(t *testing.T) {
	f := newStage(t, nil)
	m := message("shop", "+49 151 1234 5678", TONInternational, nil)
	m.Trace = &router.Trace{}
	if v := f.stage.Process(m); v.Status != 0 || m.Pool.Name() != "telekom" {
		t.Fatalf("verdict %+v", v)
	}
	if len(m.Trace.Steps) != 1 || m.Trace.Steps[0].Stage != "number" ||
		m.Trace.Steps[0].Decision != "dest=+4915112345678 country=DE operator=T-Mobile pool=telekom by routes[1]" {
		t.Fatalf("trace %+v", m.Trace.Steps)
	}
	m = message("shop", "12", TONInternational, nil)
	m.Trace = &router.Trace{}
	if v := f.stage.Process(m); v.Rule != RuleInvalid || len(m.Trace.Steps) != 1 ||
		!strings.Contains(m.Trace.Steps[0].Decision, ErrTooShort.Error()) {
		t.Fatalf("invalid: %+v %+v", v, m.Trace.Steps)
	}
	if f.metric(t, "routed", "T-Mobile") != 0 || f.metric(t, "invalid_destination", "unknown") != 0 {
		t.Fatal("a dry run was counted")
	}
}

func TestStageReload(t *testing.T) {
	dir := t.TempDir()
	ranges := writeFile(t, dir, "r.csv", "4915112,Alpha\n")
	f := newStage(t, func(c *Config) {
		c.RangeFiles = []string{ranges}
		c.Routes = append([]Rule{{Operator: "Beta", Pool: "world"}}, c.Routes...)
	})
	m := message("shop", "+4915112345678", TONInternational, nil)
	f.stage.Process(m)
	if m.Operator != "Alpha" || m.Pool.Name() != "de" {
		t.Fatalf("before reload: %s %s", m.Operator, m.Pool.Name())
	}
	writeFile(t, dir, "r.csv", "4915112,Beta\n")
	if err := f.stage.Reload(); err != nil {
		t.Fatal(err)
	}
	m = message("shop", "+4915112345678", TONInternational, nil)
	f.stage.Process(m)
	if m.Operator != "Beta" || m.Pool.Name() != "world" || f.metric(t, "routed", "Beta") != 1 || f.metric(t, "routed", "Alpha") != 1 {
		t.Fatalf("after reload: %s %s", m.Operator, m.Pool.Name())
	}
}

func TestNewStageErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"unknown pool", func(c *Config) { c.Routes = []Rule{{Operator: "X", Pool: "nope"}} }, `routes[0]: pool "nope"`},
		{"rule without pool", func(c *Config) { c.Routes = []Rule{{Operator: "X"}} }, "routes[0]: pool: required"},
		{"unknown country", func(c *Config) { c.Routes = []Rule{{Country: "XX", Pool: "de"}} }, `routes[0]: country "XX"`},
		{"unknown fallback", func(c *Config) { c.Fallback = "nope" }, `fallback: pool "nope"`},
		{"status 0", func(c *Config) { c.NoRouteStatus = 0 }, "no_route_status"},
		{"bad default country", func(c *Config) { c.DefaultCountry = "Germany" }, "default_country"},
		{"bad range file", func(c *Config) { c.RangeFiles = []string{writeFile(t, t.TempDir(), "x.csv", "x\n")} }, "x.csv:1:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pools := map[string]*router.Pool{"de": router.NewPool("de", nil, 0)}
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			if _, err := NewStage(cfg, pools); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewStage: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestStageAllocatesNothing(t *testing.T) {
	f := newStage(t, nil)
	m := message("shop", "+49 151 1234 5678", TONInternational, nil)
	f.stage.Process(m) // creates the counter
	if n := testing.AllocsPerRun(100, func() { f.stage.Process(m) }); n != 0 {
		t.Fatalf("Process allocates %.0f times", n)
	}
}

func BenchmarkStage(b *testing.B) {
	f := newStage(b, nil)
	msgs := []*router.Message{
		message("shop", "+4915112345678", TONInternational, nil),
		message("shop", "015112345678", TONNational, nil),
		message("bulk", "0049 162 1234567", TONUnknown, nil),
		message("shop", "0301234567", TONNational, nil),
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if v := f.stage.Process(msgs[i&3]); v.Status != 0 {
			b.Fatal(v)
		}
	}
}

// TestStageConcurrentReload processes messages while the table is reloaded: every message sees
// one whole table, and every one is counted once.
func TestStageConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	ranges := writeFile(t, dir, "r.csv", "4915112,Alpha\n")
	f := newStage(t, func(c *Config) { c.RangeFiles = []string{ranges} })
	const workers, each = 4, 3000
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := message("shop", "+4915112345678", TONInternational, nil)
			for i := 0; i < each; i++ {
				if v := f.stage.Process(m); v.Status != 0 || (m.Operator != "Alpha" && m.Operator != "Beta") {
					errs <- fmt.Sprintf("verdict %+v operator %q", v, m.Operator)
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		writeFile(t, dir, "r.csv", "4915112,"+[]string{"Alpha", "Beta"}[i%2]+"\n")
		if err := f.stage.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if got := f.metric(t, "routed", "Alpha") + f.metric(t, "routed", "Beta"); got != workers*each {
		t.Fatalf("counted %v routed messages, want %d", got, workers*each)
	}
}
