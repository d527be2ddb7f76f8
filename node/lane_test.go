package node

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// otpByPrefix marks messages whose text starts with "OTP" as verification codes (the real
// classifier is a later stage; this one only drives the lane).
type otpByPrefix struct{}

func (otpByPrefix) Name() string { return "test_otp" }
func (otpByPrefix) Process(m *router.Message) router.Verdict {
	if bytes.HasPrefix(m.Submit.ShortMessage, []byte("OTP")) {
		m.Lane = router.LaneOTP
	}
	return router.Verdict{}
}

// TestOTPPassesBulkFlood: bulk traffic saturates the only bind (the SMSC answers slowly); a
// verification code sent meanwhile takes the window share reserved for OTP and reaches the SMSC
// at once, ahead of the bulk backlog, which still gets through afterwards.
func TestOTPPassesBulkFlood(t *testing.T) {
	sim := startSim(t, smpptest.Config{Record: true})
	n := startNode(t, sim, func(c *config.Config) {
		c.Upstreams[0].Binds, c.Upstreams[0].Window = 1, 10
		c.Router.OTPReservePercent = 20 // bulk may use 8 of the 10 slots
		c.Router.MaxWait = config.Duration(10 * time.Second)
	}, otpByPrefix{})
	waitFor(t, "upstream bind", 5*time.Second, n.Ready)
	sim.SetFaults(smpptest.Faults{Delay: 400 * time.Millisecond})

	bulk := dialESME(t, n.SMPPAddr(), "demo", "demo", 50)
	var chans []resultCh
	for i := 0; i < 30; i++ {
		chans = append(chans, bulk.send(gsm("4915112345678", fmt.Sprint("bulk ", i))))
	}
	waitFor(t, "bulk to fill its share of the window", 5*time.Second, func() bool { return sim.Count() == 8 })
	otp := dialESME(t, n.SMPPAddr(), "demo", "demo", 1)
	if r := otp.submit(gsm("4915112345678", "OTP 123456 is your code")); r.Status != smpp.StatusOK {
		t.Fatalf("OTP: %v %v", r.Status, r.Err)
	}
	got := sim.Received()
	pos := -1
	for i, p := range got {
		if bytes.Contains(p, []byte("OTP 123456")) {
			pos = i
		}
	}
	if pos < 0 || pos > 8 {
		t.Fatalf("OTP reached the SMSC as submit %d of %d; want right after the 8 bulk ones in flight", pos+1, len(got))
	}
	for i, c := range chans {
		if r := c.Next(t, 15*time.Second); r.Status != smpp.StatusOK {
			t.Fatalf("bulk %d: %v (bulk must not starve)", i, r.Status)
		}
	}
}
