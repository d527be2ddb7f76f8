package node

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	fsmpp "github.com/fiorix/go-smpp/smpp"
	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutext"
	fsmpptest "github.com/fiorix/go-smpp/smpp/smpptest"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// TestInteropFiorixClient: fiorix/go-smpp, an ESME implementation we did not write, binds to a
// whole node and sends GSM7, UCS2 and a 3-part message; statuses and ids come back, the SMSC gets
// every part; a wrong password is refused.
func TestInteropFiorixClient(t *testing.T) {
	sim := startSim(t, smpptest.Config{Record: true})
	n := startNode(t, sim, nil)

	bad := &fsmpp.Transceiver{Addr: n.SMPPAddr(), User: "demo", Passwd: "wrong", RespTimeout: 5 * time.Second}
	select {
	case st := <-bad.Bind():
		if st.Status() == fsmpp.Connected || st.Error() == nil || !strings.Contains(st.Error().Error(), "0x0000000D") &&
			!strings.Contains(strings.ToLower(st.Error().Error()), "bind failed") {
			t.Fatalf("bind with a wrong password: %v %v, want ESME_RBINDFAIL", st.Status(), st.Error())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no bind status")
	}
	bad.Close()

	tx := &fsmpp.Transceiver{Addr: n.SMPPAddr(), User: "demo", Passwd: "demo", RespTimeout: 5 * time.Second}
	select {
	case st := <-tx.Bind():
		if st.Status() != fsmpp.Connected {
			t.Fatalf("fiorix bind: %v %v", st.Status(), st.Error())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fiorix bind: no status")
	}
	defer tx.Close()

	var ids []string
	sm, err := tx.Submit(&fsmpp.ShortMessage{Src: "Bank", Dst: "4915112345678", Text: pdutext.GSM7("Your code is 123456")})
	if err != nil {
		t.Fatalf("GSM7: %v", err)
	}
	ids = append(ids, sm.RespID())
	sm, err = tx.Submit(&fsmpp.ShortMessage{Src: "Bank", Dst: "8613800138000", Text: pdutext.UCS2("您的验证码是 123456")})
	if err != nil {
		t.Fatalf("UCS2: %v", err)
	}
	ids = append(ids, sm.RespID())
	parts, err := tx.SubmitLongMsg(&fsmpp.ShortMessage{Src: "Bank", Dst: "4915112345678",
		Text: pdutext.GSM7(strings.Repeat("Long message text. ", 20))})
	if err != nil || len(parts) != 3 {
		t.Fatalf("long message: %d parts, %v", len(parts), err)
	}
	for i := range parts {
		ids = append(ids, parts[i].RespID())
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if !ourID.MatchString(id) || seen[id] {
			t.Fatalf("message_id %q: want a fresh smppd id", id)
		}
		seen[id] = true
	}
	got := sim.Received()
	if len(got) != 5 {
		t.Fatalf("SMSC received %d submits, want 5", len(got))
	}
	var s smpp.Submit
	if err := smpp.ParseSubmit(got[1][smpp.HeaderLen:], &s); err != nil || s.DataCoding != 0x08 || string(s.DstAddr) != "8613800138000" {
		t.Fatalf("UCS2 submit arrived as dc %d dst %s (%v)", s.DataCoding, s.DstAddr, err)
	}
	for i, p := range got[2:] {
		if err := smpp.ParseSubmit(p[smpp.HeaderLen:], &s); err != nil {
			t.Fatal(err)
		}
		if c, ok := s.Concat(); !ok || c.Total != 3 || int(c.Seq) != i+1 {
			t.Fatalf("part %d arrived as %+v %v", i+1, c, ok)
		}
	}
}

// TestInteropFiorixSMSC: smppd's upstream binds against fiorix's test SMSC, a server we did not
// write: submits are forwarded, its ids are mapped.
func TestInteropFiorixSMSC(t *testing.T) {
	var count atomic.Int64
	srv := fsmpptest.NewUnstartedServer()
	srv.User, srv.Passwd = "smppd", "smppd"
	srv.Handler = func(c fsmpptest.Conn, m pdu.Body) {
		switch m.Header().ID {
		case pdu.SubmitSMID:
			r := pdu.NewSubmitSMResp()
			r.Header().Seq = m.Header().Seq
			_ = r.Fields().Set(pdufield.MessageID, fmt.Sprintf("F%d", count.Add(1)))
			_ = c.Write(r)
		case pdu.EnquireLinkID:
			r := pdu.NewEnquireLinkResp()
			r.Header().Seq = m.Header().Seq
			_ = c.Write(r)
		case pdu.UnbindID:
			r := pdu.NewUnbindResp()
			r.Header().Seq = m.Header().Seq
			_ = c.Write(r)
		}
	}
	srv.Start()
	defer srv.Close()

	cfg := config.Default()
	cfg.Node.DataDir = t.TempDir()
	cfg.Listen.SMPP, cfg.Listen.Admin = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Upstreams[0].Address = srv.Addr()
	n, err := New(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(t.Context())
	waitFor(t, "binds to the fiorix SMSC", 5*time.Second, n.Ready)
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	for i := 0; i < 5; i++ {
		r := e.submit(gsm("4915112345678", fmt.Sprint("to fiorix ", i)))
		if r.Status != smpp.StatusOK || !ourID.MatchString(r.ID) {
			t.Fatalf("submit %d: %v %q %v", i, r.Status, r.ID, r.Err)
		}
		code, body := httpGet(t, n, "/api/v1/messages/"+r.ID)
		if code != 200 || !strings.Contains(body, `"upstream_message_id": "F`) {
			t.Fatalf("mapping of %s: %d %s", r.ID, code, body)
		}
	}
	if count.Load() != 5 {
		t.Fatalf("fiorix SMSC saw %d submits, want 5", count.Load())
	}
}

// TestInteropFiorixReceipts: fiorix/go-smpp as a transceiver asks for receipts; the receipts
// smppd sends it (deliver_sm of our making) parse in that library and carry the ids it was
// given, and an MO routed to its account arrives too.
func TestInteropFiorixReceipts(t *testing.T) {
	sim := startSim(t, smpptest.Config{ReceiptDelay: time.Millisecond})
	n := startNode(t, sim, func(c *config.Config) {
		c.MO.Routes = []config.MORoute{{To: "12345", Account: "demo"}}
	})
	got := make(chan pdu.Body, 16)
	tx := &fsmpp.Transceiver{Addr: n.SMPPAddr(), User: "demo", Passwd: "demo", RespTimeout: 5 * time.Second,
		Handler: func(p pdu.Body) {
			if p.Header().ID == pdu.DeliverSMID {
				got <- p
			}
		}}
	select {
	case st := <-tx.Bind():
		if st.Status() != fsmpp.Connected {
			t.Fatalf("fiorix bind: %v %v", st.Status(), st.Error())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fiorix bind: no status")
	}
	defer tx.Close()
	ids := map[string]bool{}
	for i := range 3 {
		sm, err := tx.Submit(&fsmpp.ShortMessage{Src: "Shop", Dst: fmt.Sprintf("491511234567%d", i),
			Text: pdutext.GSM7("Your parcel is on its way"), Register: pdufield.FinalDeliveryReceipt})
		if err != nil {
			t.Fatal(err)
		}
		ids[sm.RespID()] = true
	}
	for range 3 {
		select {
		case p := <-got:
			f := p.Fields()
			text := f[pdufield.ShortMessage].String()
			tlv := p.TLVFields()
			rid, ok := tlv[0x001E]
			if !ok {
				t.Fatalf("receipt without receipted_message_id: %q", text)
			}
			id := strings.TrimRight(string(rid.Bytes()), "\x00")
			if !ids[id] || !strings.HasPrefix(text, "id:"+id+" ") {
				t.Fatalf("receipt %q / TLV %q does not carry an id fiorix was given (%v)", text, id, ids)
			}
			delete(ids, id)
		case <-time.After(10 * time.Second):
			t.Fatal("fiorix got no receipt")
		}
	}
	mo := smpp.Submit{SrcTON: 1, SrcNPI: 1, SrcAddr: []byte("491511234567"), DstAddr: []byte("12345"), ShortMessage: []byte("hello shop")}
	if err := sim.SendMO("smppd", &mo); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if s := p.Fields()[pdufield.ShortMessage].String(); s != "hello shop" {
			t.Fatalf("MO text %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fiorix got no MO")
	}
}
