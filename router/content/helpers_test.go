package content

import (
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf16"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

// parse builds s into a whole submit_sm and parses it back, as the router sees it.
func parse(t testing.TB, s *smpp.Submit) *smpp.Submit {
	t.Helper()
	if s.DstAddr == nil {
		s.DstAddr = []byte("4915112345678")
	}
	if s.SrcAddr == nil {
		s.SrcAddr = []byte("smppd")
	}
	pdu := smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, s)
	var out smpp.Submit
	if err := smpp.ParseSubmit(pdu[smpp.HeaderLen:], &out); err != nil {
		t.Fatalf("parse submit: %v", err)
	}
	return &out
}

// gsm encodes text as GSM 7-bit unpacked with smpp.EncodeText (which must pick GSM for it).
func gsm(t testing.TB, text string) []byte {
	t.Helper()
	parts, dc := smpp.EncodeText(text)
	if dc != 0 || len(parts) != 1 {
		t.Fatalf("EncodeText(%q): data_coding %d, %d parts; want GSM in one part", text, dc, len(parts))
	}
	return parts[0]
}

// ucs2 encodes text as big-endian UTF-16.
func ucs2(text string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(text)) {
		b = binary.BigEndian.AppendUint16(b, u)
	}
	return b
}

// textSubmit returns a parsed single-part submit of text: GSM 7-bit if it can be, else UCS2.
func textSubmit(t testing.TB, text string) *smpp.Submit {
	t.Helper()
	parts, dc := smpp.EncodeText(text)
	if len(parts) != 1 {
		t.Fatalf("%q needs %d parts", text, len(parts))
	}
	return parse(t, &smpp.Submit{DataCoding: dc, ShortMessage: parts[0]})
}

// segSubmit returns segment seq of total (UDH IE 0x00, reference ref) carrying user data ud.
func segSubmit(t testing.TB, dc byte, ref, total, seq byte, ud []byte) *smpp.Submit {
	t.Helper()
	sm := append([]byte{5, 0, 3, ref, total, seq}, ud...)
	return parse(t, &smpp.Submit{ESMClass: 0x40, DataCoding: dc, ShortMessage: sm})
}

// message wraps s in a router.Message from account "acct".
func message(s *smpp.Submit) *router.Message {
	return &router.Message{Account: &smpp.Account{SystemID: "acct"}, Submit: *s}
}

// writeRules writes a rule file in dir and returns its path.
func writeRules(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// newStage returns a stage with the rules in content (one file, rules.txt) and its metrics.
func newStage(t testing.TB, content string, edit ...func(*Config)) (*Stage, *metrics.Set) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Metrics = metrics.NewSet()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Rules = []string{writeRules(t, t.TempDir(), "rules.txt", content)}
	for _, e := range edit {
		e(&cfg)
	}
	s, err := NewStage(cfg)
	if err != nil {
		t.Fatalf("NewStage: %v", err)
	}
	return s, cfg.Metrics
}

// decisions returns smppd_stage_decisions_total for decision and category.
func decisions(set *metrics.Set, decision, category string) uint64 {
	return set.GetOrCreateCounter(`smppd_stage_decisions_total{stage="content",decision="` + decision +
		`",category="` + category + `"}`).Get()
}
