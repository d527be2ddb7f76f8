package node

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/router/governor"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
	"github.com/smppd/smppd/store"
)

// governorRow returns node n's governor row of level for account/channel from its status API.
func governorRow(t *testing.T, n *Node, level, account, channel string) (governor.Row, bool) {
	t.Helper()
	code, body := httpGet(t, n, "/api/v1/status")
	if code != 200 {
		t.Fatalf("status: %d %s", code, body)
	}
	var st struct {
		Governor *governor.Report `json:"governor"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Governor == nil {
		t.Fatalf("status: %v %s", err, body)
	}
	for _, r := range st.Governor.Rows {
		if r.Level == level && r.Account == account && r.Channel == channel {
			return r, true
		}
	}
	return governor.Row{}, false
}

// TestGovernorAcrossNodes: messages sent through two nodes and complaints posted on a third
// give every node the same complaint rate for (demo, sim); under the limit nothing is refused,
// at it every node refuses demo's bulk traffic to sim and still forwards its OTP.
func TestGovernorAcrossNodes(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	nodes := startCluster(t, sim, 3, func(_ int, c *config.Config) {
		g := &c.Governor
		g.WarnPPM, g.LimitPPM, g.ReportInterval = 500, 1000, config.Duration(50*time.Millisecond)
		g.Window, g.Bucket = config.Duration(time.Hour), config.Duration(time.Minute)
		c.Protection.ComplaintBlocks = false
	})
	// 600 messages through node 1 and 600 through node 2, each to its own number.
	for i, n := range nodes[:2] {
		e := dialESME(t, n.SMPPAddr(), "demo", "demo", 100)
		var pending []resultCh
		for j := range 600 {
			pending = append(pending, e.send(gsm(fmt.Sprintf("+4915%d%07d", i+1, j), "Summer sale: 20% off")))
		}
		for _, w := range pending {
			if r := w.Next(t, 15*time.Second); r.Status != smpp.StatusOK {
				t.Fatalf("node %d: %v", i+1, r.Status)
			}
		}
	}
	for _, n := range nodes {
		waitFor(t, "every node counts 1200 sent", 10*time.Second, func() bool {
			r, ok := governorRow(t, n, governor.LevelPair, "demo", "sim")
			return ok && r.Sent == 1200
		})
	}
	complain := func(number string) {
		t.Helper()
		if code, out := adminPost(t, nodes[2], "/api/v1/complaints", "", map[string]any{"number": number, "account": "demo", "upstream": "sim"}); code != 200 {
			t.Fatalf("complaint: %d %v", code, out)
		}
	}
	// One complaint in 1200: 833 ppm, past warn (500), under the limit (1000). A node that
	// counted only its own messages would see 1 in 600 or 1 in 0 and refuse.
	complain("+4915100000001")
	for i, n := range nodes {
		waitFor(t, "the complaint counted", 10*time.Second, func() bool {
			r, _ := governorRow(t, n, governor.LevelPair, "demo", "sim")
			return r.Complaints == 1
		})
		r, _ := governorRow(t, n, governor.LevelPair, "demo", "sim")
		if r.Sent != 1200 || r.State != governor.StateWarn || r.Refusing || int(r.PPM) != 833 {
			t.Fatalf("node %d after one complaint: %+v, want 1200 sent, 833 ppm, warn, not refusing", i+1, r)
		}
	}
	for i, n := range nodes { // after every node was checked: these sends change the counts
		e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
		if r := e.submit(gsm(fmt.Sprintf("+491701234%03d", i), "Summer sale: 20% off")); r.Status != smpp.StatusOK {
			t.Fatalf("node %d refused under the limit: %v", i+1, r.Status)
		}
	}
	complain("+4915100000002") // 2 in ~1200: past the limit
	for i, n := range nodes {
		waitFor(t, "the limit reached", 10*time.Second, func() bool {
			r, _ := governorRow(t, n, governor.LevelPair, "demo", "sim")
			return r.Refusing
		})
		e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
		if r := e.submit(gsm(fmt.Sprintf("+491701235%03d", i), "Summer sale: 30% off")); r.Status != smpp.Status(0x45) {
			t.Fatalf("node %d: bulk at the limit answered %v, want 0x45", i+1, r.Status)
		}
		if r := e.submit(gsm(fmt.Sprintf("+491701236%03d", i), "Your verification code is 483920")); r.Status != smpp.StatusOK {
			t.Fatalf("node %d: OTP at the limit answered %v, want ESME_ROK", i+1, r.Status)
		}
		if got := counter(n, `smppd_stage_decisions_total{stage="governor",decision="refused"}`); got != 1 {
			t.Fatalf("node %d: %v governor refusals counted, want 1", i+1, got)
		}
		if got := counter(n, `smppd_governor_state{system_id="demo",upstream="sim"}`); got != 2 {
			t.Fatalf("node %d: smppd_governor_state = %v, want 2 (limit)", i+1, got)
		}
	}
}

// TestGovernorComplaintsAfterRestart: a restarted node reads the complaints back from its state
// (one pass for the index and the governor) and its rates count them.
func TestGovernorComplaintsAfterRestart(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	dir := t.TempDir()
	start := func() *Node {
		n := startNode(t, sim, func(c *config.Config) { c.Node.DataDir = dir })
		waitFor(t, "leader", 10*time.Second, n.Cluster().IsLeader)
		return n
	}
	n := start()
	if code, out := adminPost(t, n, "/api/v1/complaints", "", map[string]any{"number": "+4915100000001", "account": "demo", "upstream": "sim "}); code != 400 ||
		!strings.Contains(fmt.Sprint(out["error"]), `upstream: "sim " is not a configured upstream (sim)`) {
		t.Fatalf("complaint naming no upstream: %d %v, want 400 naming the field", code, out)
	}
	if code, out := adminPost(t, n, "/api/v1/complaints", "", map[string]any{"number": "+4915100000001", "account": "demo", "upstream": "sim"}); code != 200 {
		t.Fatalf("complaint: %d %v", code, out)
	}
	if err := n.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	n = start()
	waitFor(t, "complaint counted after the restart", 5*time.Second, func() bool {
		r, _ := governorRow(t, n, governor.LevelPair, "demo", "sim")
		return r.Complaints == 1 && r.Refusing
	})
	if !n.Index().Check(4915100000001, "demo", "").Has(store.KindComplaint) {
		t.Fatal("the index lost the complaint")
	}
}
