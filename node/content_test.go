package node

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

func ucs2Submit(dst, text string) []byte {
	parts, dc := smpp.EncodeText(text)
	s := smpp.Submit{DstTON: 1, DstNPI: 1, DstAddr: []byte(dst), DataCoding: dc, ShortMessage: parts[0]}
	return smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s)
}

// TestContentFilter: a rejected phrase (also in traditional Chinese, full-width or spaced out)
// never reaches the SMSC and the client gets the rule's status; a monitor-only rule lets the
// message through; rules reload atomically and a bad file keeps the old ones.
func TestContentFilter(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	rules := filepath.Join(t.TempDir(), "spam.rules")
	write := func(s string) {
		if err := os.WriteFile(rules, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("spam reject free money\ngambling reject:0x58 网上赌场\ntrial monitor crypto giveaway\n")
	n := startNode(t, sim, func(c *config.Config) { c.Content.RuleFiles = []string{rules} })
	waitFor(t, "upstream", 5*time.Second, n.Ready)
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)

	for _, tc := range []struct {
		text string
		want smpp.Status
	}{
		{"Get FREE MONEY now", 0x45},
		{"ｆｒｅｅ ｍｏｎｅｙ", 0x45},
		{"f r e e  m o n e y", 0x45},
		{"欢迎来到網上賭場", 0x58},
		{"Your code is 123456", smpp.StatusOK},
		{"crypto giveaway today", smpp.StatusOK}, // monitor only
	} {
		if r := e.submit(ucs2Submit("4915112345678", tc.text)); r.Status != tc.want {
			t.Errorf("%q: %v, want %v", tc.text, r.Status, tc.want)
		}
	}
	if sim.Count() != 2 {
		t.Fatalf("SMSC got %d messages, want only the 2 allowed", sim.Count())
	}
	reload := func() (int, string) {
		resp, err := http.Post("http://"+n.AdminAddr()+"/api/v1/reload", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	write("spam reject your code\n")
	if code, body := reload(); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if r := e.submit(ucs2Submit("4915112345678", "Your code is 123456")); r.Status != 0x45 {
		t.Fatalf("after reload: %v, want the new rule to reject", r.Status)
	}
	write("spam blok free money\n")
	if code, body := reload(); code != 422 || !strings.Contains(body, "spam.rules:1") {
		t.Fatalf("bad rules: %d %s, want 422 naming spam.rules:1", code, body)
	}
	if r := e.submit(ucs2Submit("4915112345678", "Your code is 123456")); r.Status != 0x45 {
		t.Fatalf("after a bad reload: %v, want the previous rules kept", r.Status)
	}
	if _, m := httpGet(t, n, "/metrics"); !strings.Contains(m, `stage="content",decision="monitor"`) {
		t.Error("/metrics lacks the content stage's monitor decisions")
	}
}
