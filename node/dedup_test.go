package node

import (
	"strings"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// TestDedup: a client's resubmit gets the original's message_id and is not sent again — also
// while the original is still in flight (it waits for the outcome); a failed original does not
// block the resubmit; under policy reject the duplicate gets the configured status.
func TestDedup(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, nil)
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)

	first := e.submit(gsm("4915112345678", "Your parcel arrives today"))
	again := e.submit(gsm("4915112345678", "Your parcel arrives today"))
	if first.Status != smpp.StatusOK || again.Status != smpp.StatusOK || again.ID != first.ID {
		t.Fatalf("resubmit: %v %q, original %v %q: want ESME_ROK with the same id", again.Status, again.ID, first.Status, first.ID)
	}
	if other := e.submit(gsm("4915112345679", "Your parcel arrives today")); other.ID == first.ID {
		t.Fatal("another destination was taken for a duplicate")
	}
	if c := sim.Count(); c != 2 {
		t.Fatalf("SMSC got %d, want 2 (the duplicate not sent again)", c)
	}

	// In flight: the SMSC answers after 300 ms; the duplicate sent meanwhile waits for it.
	sim.SetFaults(smpptest.Faults{Delay: 300 * time.Millisecond})
	orig := e.send(gsm("4915112345678", "Flight LH 123 is delayed"))
	waitFor(t, "the original at the SMSC", 5*time.Second, func() bool { return sim.Count() == 3 })
	dup := e.send(gsm("4915112345678", "Flight LH 123 is delayed"))
	o, d := orig.Next(t, 5*time.Second), dup.Next(t, 5*time.Second)
	if o.Status != smpp.StatusOK || d.Status != smpp.StatusOK || d.ID != o.ID || sim.Count() != 3 {
		t.Fatalf("in flight: original %v %q, duplicate %v %q, SMSC %d: want one send, one id", o.Status, o.ID, d.Status, d.ID, sim.Count())
	}

	// A failed original: the resubmit must go.
	sim.SetFaults(smpptest.Faults{Status: 0x45, StatusEvery: 1})
	if r := e.submit(gsm("4915112345678", "Gate changed to B12")); r.Status != 0x45 {
		t.Fatalf("failing original: %v", r.Status)
	}
	sim.SetFaults(smpptest.Faults{})
	if r := e.submit(gsm("4915112345678", "Gate changed to B12")); r.Status != smpp.StatusOK || sim.Count() != 5 {
		t.Fatalf("resubmit after a failure: %v, SMSC %d, want it sent", r.Status, sim.Count())
	}

	if code, body := postExplain(t, n, `{"account":"demo","to":"+4915112345678","text":"Your parcel arrives today"}`); code != 200 ||
		!strings.Contains(body, `"rule": "duplicate"`) {
		t.Fatalf("explain of a duplicate: %d %s", code, body)
	}
}

func TestDedupPolicyReject(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) { c.Dedup.Policy, c.Dedup.RejectStatus = "reject", 0x45 })
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	if r := e.submit(gsm("4915112345678", "Sale ends tonight")); r.Status != smpp.StatusOK {
		t.Fatal(r.Status)
	}
	if r := e.submit(gsm("4915112345678", "Sale ends tonight")); r.Status != 0x45 {
		t.Fatalf("duplicate under policy reject: %v, want 0x45", r.Status)
	}
	if sim.Count() != 1 {
		t.Fatalf("SMSC got %d, want 1", sim.Count())
	}
}
