package router

import (
	"testing"
	"time"

	"github.com/smppd/smppd/smpp"
)

// refuse is a stage that refuses messages to one destination.
type refuse struct{ dst string }

func (refuse) Name() string { return "refuse" }
func (s refuse) Process(m *Message) Verdict {
	if string(m.Submit.DstAddr) == s.dst {
		m.Explain("refuse", "destination %s is refused", s.dst)
		return Verdict{Status: 0x45, Rule: "test_rule"}
	}
	m.Explain("refuse", "passed")
	return Verdict{}
}

func TestExplainRunsStagesDry(t *testing.T) {
	ids, _ := NewIDGen(1, "")
	cfg := DefaultConfig()
	cfg.IDs, cfg.IDMap, cfg.Stages = ids, NewMemIDMap(time.Hour, 100), []Stage{refuse{"111"}}
	pool := NewPool("p", nil, 0)
	r, err := New(cfg, []*Pool{pool})
	if err != nil {
		t.Fatal(err)
	}
	acct := &smpp.Account{SystemID: "a", Value: &Route{Pool: pool}}
	pdu := func(dst string) []byte {
		return smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &smpp.Submit{DstAddr: []byte(dst), ShortMessage: []byte("x")})
	}
	ex, err := r.Explain(acct, pdu("111"))
	if err != nil || ex.Status != "ESME_RSUBMITFAIL" || ex.Rule != "test_rule" || len(ex.Steps) != 1 ||
		ex.Steps[0].Decision != "destination 111 is refused" {
		t.Fatalf("refused: %+v %v", ex, err)
	}
	ex, err = r.Explain(acct, pdu("222"))
	if err != nil || ex.Status != "ESME_ROK" || ex.Upstream != "p" || ex.Steps[0].Decision != "passed" {
		t.Fatalf("passed: %+v %v", ex, err)
	}
	ex, _ = r.Explain(&smpp.Account{SystemID: "noroute"}, pdu("222"))
	if ex.Rule != "no_route" || ex.Status != "ESME_RINVDSTADR" {
		t.Fatalf("no route: %+v", ex)
	}
}
