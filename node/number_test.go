package node

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// TestNumberCleaningAndRouting: invalid destinations are refused with ESME_RINVDSTADR and never
// reach an SMSC; national numbers are understood with the default country; an operator route
// sends Chinese numbers to a second upstream; explain shows the decision; a port file reloads
// through the admin API, and a bad one keeps the old data with file:line in the error.
func TestNumberCleaningAndRouting(t *testing.T) {
	de := startSim(t, smpptest.Config{Record: true})
	cn := startSim(t, smpptest.Config{Record: true})
	ports := filepath.Join(t.TempDir(), "ports.csv")
	if err := os.WriteFile(ports, []byte("# ported numbers\n4915112345678,PortedCo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, de, func(c *config.Config) {
		cn0 := c.Upstreams[0]
		cn0.Name, cn0.Address = "cn", cn.Addr()
		c.Upstreams = append(c.Upstreams, cn0)
		c.Numbers.PortFiles = []string{ports}
		c.Numbers.Routes = []config.NumberRoute{{Country: "CN", Upstream: "cn"}}
	})
	waitFor(t, "both upstreams", 5*time.Second, func() bool { return de.Binds() == 2 && cn.Binds() == 2 })
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)

	for _, bad := range []string{"12", "49151abc", "4915112345678901234"} {
		if r := e.submit(gsm(bad, "x")); r.Status != smpp.StatusInvDstAddr {
			t.Errorf("destination %q: %v, want ESME_RINVDSTADR", bad, r.Status)
		}
	}
	if de.Count()+cn.Count() != 0 {
		t.Fatal("an invalid destination reached an SMSC")
	}
	national := smpp.Submit{DstTON: 2, DstNPI: 1, DstAddr: []byte("015112345678"), ShortMessage: []byte("national")}
	if r := e.submit(smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &national)); r.Status != smpp.StatusOK {
		t.Fatalf("national DE number: %v", r.Status)
	}
	if r := e.submit(gsm("8613800138000", "to China")); r.Status != smpp.StatusOK {
		t.Fatalf("CN number: %v", r.Status)
	}
	if de.Count() != 1 || cn.Count() != 1 {
		t.Fatalf("de got %d, cn got %d; want the CN number routed to upstream cn", de.Count(), cn.Count())
	}

	explain := func() router.Explanation {
		t.Helper()
		code, body := postExplain(t, n, `{"account":"demo","to":"+4915112345678","text":"hi"}`)
		var ex router.Explanation
		if code != 200 || json.Unmarshal([]byte(body), &ex) != nil {
			t.Fatalf("explain: %d %s", code, body)
		}
		return ex
	}
	if ex := explain(); ex.Operator != "PortedCo" || ex.Country != "DE" || ex.Dest != 4915112345678 || ex.Upstream != "sim" {
		t.Fatalf("explain before reload: %+v", ex)
	}
	if err := os.WriteFile(ports, []byte("4915112345678,OtherCo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+n.AdminAddr()+"/api/v1/reload", "application/json", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reload: %v %v", resp.Status, err)
	}
	resp.Body.Close()
	if ex := explain(); ex.Operator != "OtherCo" {
		t.Fatalf("after reload operator %q, want OtherCo", ex.Operator)
	}
	if err := os.WriteFile(ports, []byte("4915112345678,OtherCo\nnot-a-number,X\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post("http://"+n.AdminAddr()+"/api/v1/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 422 || !strings.Contains(string(body), "ports.csv:2") {
		t.Fatalf("bad reload: %d %s, want 422 naming ports.csv:2", resp.StatusCode, body)
	}
	if ex := explain(); ex.Operator != "OtherCo" {
		t.Fatalf("after a bad reload operator %q, want the old data kept", ex.Operator)
	}
	_, m := httpGet(t, n, "/metrics")
	if !strings.Contains(m, `smppd_stage_decisions_total{stage="number",decision="invalid_destination"`) {
		t.Error("/metrics lacks the number stage's decisions")
	}
	if !strings.Contains(m, `smppd_pipeline_decisions_total{system_id="demo",stage="number",rule="invalid_destination"} 3`) {
		t.Error("/metrics lacks the per-account count of refusals by stage and rule")
	}
}
