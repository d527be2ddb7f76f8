package bench

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// BenchmarkReceipts drives 16 ESMEs x window 100 through smppd twice in one invocation: with
// receipts off (registered_delivery 0) and on (registered_delivery 1: smppd makes each message's
// id mapping durable, group-committed to Pebble with fsync, before answering the client; the
// simulator sends a receipt for every message, which smppd matches, rewrites, stores durably and
// delivers to the submitting client). The "on" run ends only when every receipt has reached the
// clients. Reported: msgs/s for each, on/off, and the p50/p99 submit-to-response latency of the
// "on" run (which includes the fsync the mapping waits for).
func BenchmarkReceipts(b *testing.B) {
	off := newEnv(b, nil)
	// The simulator keeps up to 100 receipts unanswered per bind, as SMSCs commonly allow.
	on := newEnvSim(b, smpptest.Config{ReceiptDelay: time.Millisecond, DeliverWindow: 100}, nil)
	plain := submitPDU()
	var s smpp.Submit
	if err := smpp.ParseSubmit(plain[smpp.HeaderLen:], &s); err != nil {
		b.Fatal(err)
	}
	s.RegisteredDelivery = 1
	withReceipt := smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s)
	pdus := [2][]byte{plain, withReceipt}
	var loads [2]*Load
	for i, e := range []*env{off, on} {
		l, err := Dial(e.node.SMPPAddr(), "demo", "demo", 16, 100, bindTimeout)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		l.Vary = len(plain) - 8
		if r := l.Run(pdus[i], 16000, runTimeout); r.Err != nil {
			b.Fatalf("warm-up: %v", r.Err)
		}
		loads[i] = l
	}
	waitReceipts(b, on, loads[1], 16000)
	b.ResetTimer()
	var rate [2]float64
	for i, name := range []string{"receipts_off", "receipts_on"} {
		l := loads[i]
		base := l.Delivered.Load()
		runtime.GC()
		b.StartTimer()
		start := time.Now()
		r := l.Run(pdus[i], b.N, runTimeout)
		if r.Err != nil {
			b.Fatalf("%s: %v", name, r.Err)
		}
		if i == 1 {
			waitReceipts(b, on, l, base+int64(b.N))
		}
		elapsed := time.Since(start)
		b.StopTimer()
		rate[i] = float64(b.N) / elapsed.Seconds()
		b.ReportMetric(rate[i], name+"_msgs/s")
		if i == 1 {
			p := r.Percentiles(0.5, 0.99)
			b.ReportMetric(float64(p[0].Microseconds()), "p50_us")
			b.ReportMetric(float64(p[1].Microseconds()), "p99_us")
		}
	}
	b.ReportMetric(rate[1]/rate[0], "on/off")
}

// waitReceipts waits until the load's clients received n deliver_sm in all.
func waitReceipts(b *testing.B, e *env, l *Load, n int64) {
	b.Helper()
	deadline := time.Now().Add(runTimeout)
	for l.Delivered.Load() < n {
		if time.Now().After(deadline) {
			var m strings.Builder
			e.node.Metrics().WritePrometheus(&m)
			var rel []string
			for line := range strings.Lines(m.String()) {
				if strings.Contains(line, "receipt") || strings.Contains(line, "outbox") || strings.Contains(line, "store") {
					rel = append(rel, line)
				}
			}
			b.Fatalf("%d of %d receipts delivered within %s; simulator: %d receipts sent, %d acknowledged; smppd:\n%s",
				l.Delivered.Load(), n, runTimeout, e.sim.ReceiptsSent(), e.sim.ReceiptsAcked(), strings.Join(rel, ""))
		}
		time.Sleep(time.Millisecond) // polling a counter in a benchmark's tail, not synchronising a test
	}
}
