package content

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

// concatStage returns a content stage rejecting "free money", judging concatenated messages
// whole with no hold (hold 0: each segment with the segments before it).
func concatStage(t *testing.T, mutate func(*ConcatConfig)) (*Stage, *metrics.Set) {
	t.Helper()
	rules := filepath.Join(t.TempDir(), "spam.rules")
	if err := os.WriteFile(rules, []byte("spam reject free money\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Rules, cfg.Concat, cfg.Metrics = []string{rules}, DefaultConcatConfig(), metrics.NewSet()
	cfg.Concat.Hold = 0
	if mutate != nil {
		mutate(&cfg.Concat)
	}
	s, err := NewStage(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, cfg.Metrics
}

// seg is segment seq of total of message ref to dst, GSM7 unpacked, as the router hands it over.
func seg(t *testing.T, dst string, ref, total, seq byte, text string) *router.Message {
	t.Helper()
	sub := smpp.Submit{DstTON: 1, DstNPI: 1, DstAddr: []byte(dst), ESMClass: 0x40,
		ShortMessage: append([]byte{5, 0, 3, ref, total, seq}, text...)}
	pdu := smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &sub)
	m := &router.Message{Account: &smpp.Account{SystemID: "shop"}, PDU: pdu}
	if err := smpp.ParseSubmit(pdu[smpp.HeaderLen:], &m.Submit); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestConcatWithEarlierSegments: without a hold, each segment is judged with the text of the
// segments before it: the segment that completes a split phrase is refused, and so is every
// later one; other messages (another reference, another destination) are not affected.
func TestConcatWithEarlierSegments(t *testing.T) {
	s, set := concatStage(t, nil)
	steps := []struct {
		m    *router.Message
		want smpp.Status
	}{
		{seg(t, "4915100000001", 1, 3, 1, "Get your free"), 0},
		{seg(t, "4915100000002", 1, 3, 2, " money"), 0},          // another destination: its own message
		{seg(t, "4915100000001", 2, 2, 2, " money today"), 0},    // another reference: its own message
		{seg(t, "4915100000001", 1, 3, 2, " money today"), 0x45}, // completes the phrase
		{seg(t, "4915100000001", 1, 3, 3, " and more"), 0x45},    // later: refused too
	}
	for i, st := range steps {
		if v := s.Process(st.m); v.Status != st.want {
			t.Fatalf("step %d: %+v, want %v", i, v, st.want)
		}
	}
	if got := counterValue(set, `smppd_content_concat_refused_after_release_total`); got != 1 {
		t.Fatalf("refused after the phrase: %v, want 1", got)
	}
	// The refusing decision is counted once for the message.
	if got := counterValue(set, `smppd_stage_decisions_total{stage="content",decision="reject",category="spam"}`); got != 1 {
		t.Fatalf("reject decisions counted: %v, want 1", got)
	}
}

// TestConcatKeptBounded: the text kept for later segments is bounded in messages; the oldest
// goes first (its later segments are then judged with less text, and that is counted).
func TestConcatKeptBounded(t *testing.T) {
	s, set := concatStage(t, func(c *ConcatConfig) { c.MaxMessages = 2 })
	s.Process(seg(t, "4915100000001", 1, 2, 1, "Get your free"))
	s.Process(seg(t, "4915100000002", 1, 2, 1, "x"))
	s.Process(seg(t, "4915100000003", 1, 2, 1, "y")) // evicts the first message's text
	if got := counterValue(set, `smppd_content_concat_text_dropped_total`); got != 1 {
		t.Fatalf("dropped: %v, want 1", got)
	}
	if v := s.Process(seg(t, "4915100000001", 1, 2, 2, " money today")); v.Status != 0 {
		t.Fatalf("after its text was evicted: %+v, want judged alone (passed)", v)
	}
	if v := s.Process(seg(t, "4915100000002", 1, 2, 2, " free money")); v.Status != 0x45 {
		t.Fatalf("a kept message: %+v", v)
	}
}

// TestConcatDryRun: explain judges a segment alone and changes no state.
func TestConcatDryRun(t *testing.T) {
	s, _ := concatStage(t, nil)
	m := seg(t, "4915100000001", 1, 2, 1, "Get your free")
	m.Trace = &router.Trace{}
	if v := s.Process(m); v.Status != 0 || len(m.Trace.Steps) < 2 {
		t.Fatalf("dry run: %+v %+v", v, m.Trace.Steps)
	}
	if v := s.Process(seg(t, "4915100000001", 1, 2, 2, " money")); v.Status != 0 {
		t.Fatalf("segment 2 after a dry run of segment 1: %+v, want judged alone", v)
	}
}

func TestConcatConfigValidate(t *testing.T) {
	for _, c := range []ConcatConfig{
		{Enabled: true, Hold: -time.Second, KeepFor: time.Minute, MaxMessages: 1, MaxBytes: 1 << 20},
		{Enabled: true, KeepFor: 0, MaxMessages: 1, MaxBytes: 1 << 20},
		{Enabled: true, KeepFor: time.Minute, MaxMessages: 0, MaxBytes: 1 << 20},
		{Enabled: true, KeepFor: time.Minute, MaxMessages: 1, MaxBytes: 100},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func counterValue(set *metrics.Set, name string) float64 {
	return float64(set.GetOrCreateCounter(name).Get())
}
