package node

import (
	"testing"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// TestRecipientDailyCap: past the daily cap a marketing message to the number is refused with
// the configured status and never sent; a verification code still goes.
func TestRecipientDailyCap(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) { c.Recipients.DailyCap, c.Recipients.Status = 2, 0x45 })
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	for i, want := range []smpp.Status{smpp.StatusOK, smpp.StatusOK, 0x45} {
		if r := e.submit(gsm("4915112345678", []string{"Sale today", "Sale tomorrow", "Last chance"}[i])); r.Status != want {
			t.Fatalf("marketing message %d: %v, want %v", i+1, r.Status, want)
		}
	}
	if r := e.submit(gsm("4915112345678", "Your code is 482913")); r.Status != smpp.StatusOK {
		t.Fatalf("OTP past the cap: %v, want ESME_ROK", r.Status)
	}
	if r := e.submit(gsm("4915112345679", "Sale today")); r.Status != smpp.StatusOK {
		t.Fatalf("another number: %v", r.Status)
	}
	if sim.Count() != 4 {
		t.Fatalf("SMSC got %d, want 4 (the capped one never sent)", sim.Count())
	}
}
