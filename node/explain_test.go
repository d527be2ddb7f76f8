package node

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp/smpptest"
)

func postExplain(t *testing.T, n *Node, body string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+n.AdminAddr()+"/api/v1/explain", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestExplainAPI: a dry run reports the route without sending anything; bad requests get a 400
// naming the field.
func TestExplainAPI(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, nil)
	code, body := postExplain(t, n, `{"account":"demo","to":"+4915112345678","text":"验证码 123456"}`)
	var ex router.Explanation
	if code != 200 || json.Unmarshal([]byte(body), &ex) != nil || ex.Status != "ESME_ROK" || ex.Upstream != "sim" ||
		ex.Lane != "otp" || ex.Operator == "" || ex.Country != "DE" {
		t.Fatalf("explain = %d %s", code, body)
	}
	if sim.Count() != 0 {
		t.Fatal("a dry run reached the SMSC")
	}
	for _, tc := range []struct{ body, field string }{
		{`{"to":"1","text":"x"}`, "account: required"},
		{`{"account":"nobody","to":"1","text":"x"}`, "account: no account"},
		{`{"account":"demo","text":"x"}`, "to: required"},
		{`{"account":"demo","to":"1"}`, "text: required"},
		{`{"account":"demo","to":"123456789012345678901","text":"x"}`, "to: at most"},
		{`{"account":"demo","to":"1","text":"x","color":"red"}`, "body: "},
		{`not json`, "body: "},
	} {
		code, body := postExplain(t, n, tc.body)
		if code != 400 || !strings.Contains(body, tc.field) {
			t.Errorf("%s: %d %s, want 400 naming %q", tc.body, code, body, tc.field)
		}
	}
}
