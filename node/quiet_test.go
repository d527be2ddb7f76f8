package node

import (
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// TestQuietHours: with a quiet window around the current time in Berlin, marketing to a German
// number is refused with the configured status and not sent; a code still goes; a Chinese number
// (seven hours ahead, outside the window) is not held.
func TestQuietHours(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(berlin)
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) {
		c.QuietHours.Enabled = true
		c.QuietHours.Start = now.Add(-time.Hour).Format("15:04")
		c.QuietHours.End = now.Add(time.Hour).Format("15:04")
	})
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	if r := e.submit(gsm("4915112345678", "Big sale tonight")); r.Status != smpp.StatusThrottled {
		t.Fatalf("marketing in quiet hours: %v, want ESME_RTHROTTLED", r.Status)
	}
	if r := e.submit(gsm("4915112345678", "Your code is 482913")); r.Status != smpp.StatusOK {
		t.Fatalf("OTP in quiet hours: %v, want ESME_ROK", r.Status)
	}
	if r := e.submit(gsm("8613800138000", "Big sale tonight")); r.Status != smpp.StatusOK {
		t.Fatalf("CN number outside its quiet hours: %v", r.Status)
	}
	if sim.Count() != 2 {
		t.Fatalf("SMSC got %d, want 2", sim.Count())
	}
}
