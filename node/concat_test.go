package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// segment builds segment seq of total of a concatenated GSM7 (unpacked) message to dst, UDH IE
// 0x00 with reference ref.
func segment(dst string, ref, total, seq byte, text string) []byte {
	s := smpp.Submit{DstTON: 1, DstNPI: 1, DstAddr: []byte(dst), ESMClass: 0x40,
		ShortMessage: append([]byte{5, 0, 3, ref, total, seq}, text...)}
	return smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s)
}

// texts returns the text of every segment the SMSC received, UDH stripped, in arrival order.
func texts(sim *smpptest.SMSC) []string {
	var out []string
	for _, pdu := range sim.Received() {
		var s smpp.Submit
		if err := smpp.ParseSubmit(pdu[smpp.HeaderLen:], &s); err == nil && len(s.ShortMessage) > 6 {
			out = append(out, string(s.ShortMessage[6:]))
		}
	}
	return out
}

func contentNode(t *testing.T, hold time.Duration) (*Node, *smpptest.SMSC) {
	t.Helper()
	sim := startSim(t, smpptest.Config{Record: true})
	rules := filepath.Join(t.TempDir(), "spam.rules")
	if err := os.WriteFile(rules, []byte("spam reject free money\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, sim, func(c *config.Config) {
		c.Content.RuleFiles, c.Content.Hold = []string{rules}, config.Duration(hold)
		c.Dedup.Enabled = false
	})
	waitFor(t, "upstream", 5*time.Second, n.Ready)
	return n, sim
}

// TestConcatJudgedWhole: a phrase split between the segments of a concatenated message is
// caught and no segment reaches the SMSC; a clean message goes through whole, also with its
// segments out of order.
func TestConcatJudgedWhole(t *testing.T) {
	n, sim := contentNode(t, 10*time.Second) // a long hold: completion, not the timer, decides here
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	a, b := e.send(segment("4915100000001", 1, 2, 1, "Get your free")), e.send(segment("4915100000001", 1, 2, 2, " money today"))
	for i, w := range []resultCh{a, b} {
		if r := w.Next(t, 5*time.Second); r.Status != 0x45 {
			t.Fatalf("segment %d of the split phrase: %v, want 0x45", i+1, r.Status)
		}
	}
	// Out of order, clean.
	a, b = e.send(segment("4915100000002", 2, 2, 2, " my friend")), e.send(segment("4915100000002", 2, 2, 1, "Hello"))
	for i, w := range []resultCh{a, b} {
		if r := w.Next(t, 5*time.Second); r.Status != smpp.StatusOK {
			t.Fatalf("clean segment %d: %v", i+1, r.Status)
		}
	}
	if got := strings.Join(texts(sim), "|"); got != " my friend|Hello" && got != "Hello| my friend" {
		t.Fatalf("SMSC received %q, want the clean message's two segments only", got)
	}
	// A segment sent twice (a client's retry) while held: the older copy is answered
	// ESME_RSYSERR, the newer one goes with the message; nothing is sent twice.
	first, again := e.send(segment("4915100000004", 4, 2, 1, "Hi")), e.send(segment("4915100000004", 4, 2, 1, "Hi"))
	if r := first.Next(t, 5*time.Second); r.Status != smpp.StatusSysErr {
		t.Fatalf("replaced segment: %v, want ESME_RSYSERR", r.Status)
	}
	last := e.send(segment("4915100000004", 4, 2, 2, " there"))
	for _, w := range []resultCh{again, last} {
		if r := w.Next(t, 5*time.Second); r.Status != smpp.StatusOK {
			t.Fatalf("retried message: %v", r.Status)
		}
	}
	if got := len(texts(sim)); got != 4 {
		t.Fatalf("SMSC received %d segments, want 4", got)
	}
}

// TestConcatEveryForm: the split phrase is caught in each of the three ways concatenation is
// sent: UDH with an 8-bit or a 16-bit reference (here UCS2), and the SAR TLVs with no UDH.
func TestConcatEveryForm(t *testing.T) {
	n, sim := contentNode(t, 10*time.Second)
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	ucs2 := func(s string) []byte {
		var b []byte
		for _, r := range s {
			b = append(b, byte(r>>8), byte(r))
		}
		return b
	}
	forms := map[string]func(seq byte, text string) smpp.Submit{
		"udh16_ucs2": func(seq byte, text string) smpp.Submit {
			return smpp.Submit{DstTON: 1, DstNPI: 1, DstAddr: []byte("4915100000011"), ESMClass: 0x40, DataCoding: 0x08,
				ShortMessage: append([]byte{6, 8, 4, 0x12, 0x34, 2, seq}, ucs2(text)...)}
		},
		"sar": func(seq byte, text string) smpp.Submit {
			return smpp.Submit{DstTON: 1, DstNPI: 1, DstAddr: []byte("4915100000012"), ShortMessage: []byte(text),
				TLVs: smpp.AppendTLV(smpp.AppendTLV(smpp.AppendTLV(nil, smpp.TagSarMsgRefNum, []byte{0xAB, 0xCD}),
					smpp.TagSarTotalSegments, []byte{2}), smpp.TagSarSegmentSeqnum, []byte{seq})}
		},
	}
	for name, form := range forms {
		p1, p2 := form(1, "Get your FREE"), form(2, " MONEY today")
		a := e.send(smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &p1))
		b := e.send(smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &p2))
		for i, w := range []resultCh{a, b} {
			if r := w.Next(t, 5*time.Second); r.Status != 0x45 {
				t.Fatalf("%s: segment %d: %v, want 0x45", name, i+1, r.Status)
			}
		}
	}
	if got := sim.Count(); got != 0 {
		t.Fatalf("SMSC received %d segments, want none", got)
	}
}

// TestConcatOneAtATime: a client that sends the next segment only after the previous one's
// answer (window 1) is not stuck: its first segment is judged and sent when the hold ends, and
// each later segment is judged with the text before it, so the split phrase is still refused.
func TestConcatOneAtATime(t *testing.T) {
	n, sim := contentNode(t, 150*time.Millisecond)
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 1)
	start := time.Now()
	if r := e.submit(segment("4915100000001", 7, 3, 1, "Get your free")); r.Status != smpp.StatusOK {
		t.Fatalf("first segment: %v", r.Status)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Fatalf("first segment answered after %s, before the hold ended", waited)
	}
	for seq := byte(2); seq <= 3; seq++ {
		if r := e.submit(segment("4915100000001", 7, 3, seq, " money today")); r.Status != 0x45 {
			t.Fatalf("segment %d after the phrase: %v, want 0x45", seq, r.Status)
		}
	}
	for seq, text := range []string{"Hello", " my", " friend"} {
		if r := e.submit(segment("4915100000002", 8, 3, byte(seq+1), text)); r.Status != smpp.StatusOK {
			t.Fatalf("clean segment %d: %v", seq+1, r.Status)
		}
	}
	if got := strings.Join(texts(sim), "|"); got != "Get your free|Hello| my| friend" {
		t.Fatalf("SMSC received %q", got)
	}
}

// TestConcatHeldAnsweredAtShutdown: a segment whose message never completes is judged and sent
// when the node shuts down: its client gets the upstream's answer, not silence.
func TestConcatHeldAnsweredAtShutdown(t *testing.T) {
	n, sim := contentNode(t, time.Hour)
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	w := e.send(segment("4915100000001", 9, 2, 1, "Hello"))
	waitFor(t, "segment held", 5*time.Second, func() bool { return counter(n, `smppd_reassembly_pending{kind="parts"}`) == 1 })
	done := make(chan error, 1)
	go func() { done <- n.Shutdown(t.Context()) }()
	if r := w.Next(t, 10*time.Second); r.Status != smpp.StatusOK {
		t.Fatalf("held segment at shutdown: %v", r.Status)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := texts(sim); len(got) != 1 || got[0] != "Hello" {
		t.Fatalf("SMSC received %q", got)
	}
}
