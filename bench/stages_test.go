package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/router/content"
	"github.com/smppd/smppd/router/dedup"
	"github.com/smppd/smppd/router/lane"
	"github.com/smppd/smppd/router/number"
	"github.com/smppd/smppd/smpp"
)

// ruleFile writes 6,000 keyword rules (English and Chinese) and returns its path.
func ruleFile(tb testing.TB) string {
	var sb strings.Builder
	han := []rune("赌博贷款发票代开色情刷单兼职返利中奖领取免费")
	for i := 0; i < 6000; i++ {
		if i%2 == 0 {
			fmt.Fprintf(&sb, "spam reject forbidden%04d phrase\n", i)
		} else {
			fmt.Fprintf(&sb, "spam reject %c%c%c%d\n", han[i%len(han)], han[(i/7)%len(han)], han[(i/49)%len(han)], i)
		}
	}
	p := filepath.Join(tb.TempDir(), "bench.rules")
	if err := os.WriteFile(p, []byte(sb.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// allStages turns every pipeline stage on: number cleaning, the content filter with 6,000
// keywords, OTP lanes and dedup.
func allStages(rules string) func(*config.Config) {
	return func(c *config.Config) {
		c.Numbers.Enabled, c.Lanes.Enabled, c.Dedup.Enabled = true, true, true
		c.Content.RuleFiles = []string{rules}
	}
}

// BenchmarkStages drives 16 connections x window 100 of distinct 160-character GSM7 messages
// through two nodes in one invocation: one with no pipeline stages, one with all of them, and
// reports both rates and their ratio (target: stages on within 15 % of off).
func BenchmarkStages(b *testing.B) {
	off := newEnv(b, nil)
	on := newEnv(b, allStages(ruleFile(b)))
	pdu := submitPDU()
	var loads [2]*Load
	for i, e := range []*env{off, on} {
		l, err := Dial(e.node.SMPPAddr(), "demo", "demo", 16, 100, bindTimeout)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		l.Vary = len(pdu) - 8 // the text's last 8 characters: every message distinct
		if r := l.Run(pdu, 32000, runTimeout); r.Err != nil {
			b.Fatalf("warm-up: %v", r.Err)
		}
		loads[i] = l
	}
	b.ResetTimer()
	var rate [2]float64
	for i, name := range []string{"stages_off", "stages_on"} {
		runtime.GC()
		b.StartTimer()
		r := loads[i].Run(pdu, b.N, runTimeout)
		b.StopTimer()
		if r.Err != nil {
			b.Fatalf("%s: %v", name, r.Err)
		}
		rate[i] = r.Rate()
		b.ReportMetric(r.Rate(), name+"_msgs/s")
	}
	b.ReportMetric(rate[1]/rate[0], "on/off")
}

// BenchmarkPipeline runs the whole stage chain — number, content (6,000 keywords), lane, dedup —
// on a 160-character GSM7 message per iteration, as the router does, without the network.
func BenchmarkPipeline(b *testing.B) {
	set := metrics.NewSet()
	nc := number.DefaultConfig()
	nc.DefaultCountry, nc.Metrics = "DE", set
	pool := router.NewPool("sim", nil, 10)
	num, err := number.NewStage(nc, map[string]*router.Pool{"sim": pool})
	if err != nil {
		b.Fatal(err)
	}
	cc := content.DefaultConfig()
	cc.Rules, cc.Metrics = []string{ruleFile(b)}, set
	con, err := content.NewStage(cc)
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := lane.New(lane.Config{Metrics: set})
	dc := dedup.DefaultConfig()
	dc.Metrics = set
	dd, err := dedup.NewStage(dc)
	if err != nil {
		b.Fatal(err)
	}
	stages := []router.Stage{num, con, ln, dd}
	text := []byte(strings.Repeat("smppd benchmark message, 160 GSM characters. ", 4)[:160])
	acct := &smpp.Account{SystemID: "demo", Value: &router.Route{Pool: pool}}
	m := &router.Message{Account: acct}
	dst := []byte("4915112345678")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		for k, v := 0, i; k < 8; k++ { // distinct texts, as real traffic, so dedup records each
			text[159-k] = "0123456789abcdef"[v&0xF]
			v >>= 4
		}
		m.Submit = smpp.Submit{DstTON: 1, DstNPI: 1, DstAddr: dst, ShortMessage: text}
		m.Pool, m.Lane, m.HasDupKey, m.TextDone = pool, router.LaneBulk, false, false
		for _, st := range stages {
			if v := st.Process(m); v.Status != 0 || v.Hold || v.Reply {
				b.Fatalf("%s refused: %+v", st.Name(), v)
			}
		}
		dd.Finish(m, smpp.StatusOK, uint64(i))
	}
}
