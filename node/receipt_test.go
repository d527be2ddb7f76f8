package node

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// inbox records the deliver_sm smppd sends a test ESME and answers them (ESME_ROK unless answer
// says otherwise).
type inbox struct {
	ch     chan []byte
	n      atomic.Int64
	answer func(n int64, pdu []byte) smpp.Status // nil: ESME_ROK
}

func newInbox() *inbox { return &inbox{ch: make(chan []byte, 100000)} }

func (ib *inbox) onDeliver(c *smpp.Client, ref smpp.DeliverRef, pdu []byte) {
	n := ib.n.Add(1)
	st := smpp.StatusOK
	if ib.answer != nil {
		st = ib.answer(n, pdu)
	}
	if st == noAnswer {
		return
	}
	if st == smpp.StatusOK {
		ib.ch <- append([]byte(nil), pdu...)
	}
	_ = c.RespondDeliver(ref, st)
}

// noAnswer, returned by inbox.answer, leaves a deliver_sm unanswered.
const noAnswer = smpp.Status(0x7FFFFFFF)

// next returns the next deliver_sm acknowledged, parsed.
func (ib *inbox) next(t testing.TB) ([]byte, smpp.Submit) {
	t.Helper()
	select {
	case pdu := <-ib.ch:
		var s smpp.Submit
		if err := smpp.ParseSubmit(pdu[smpp.HeaderLen:], &s); err != nil {
			t.Fatalf("deliver_sm from smppd does not parse: %v", err)
		}
		return pdu, s
	case <-time.After(10 * time.Second):
		t.Fatal("no deliver_sm within 10s")
	}
	panic("unreachable")
}

// none asserts nothing more arrives while the node settles (its counters are checked instead).
func (ib *inbox) none(t testing.TB) {
	t.Helper()
	select {
	case pdu := <-ib.ch:
		t.Fatalf("unexpected deliver_sm: % x", pdu)
	default:
	}
}

// receiverESME binds to smppd as bt with an inbox (password = system_id, as addAccounts and
// the demo account have it).
func receiverESME(t testing.TB, n *Node, systemID string, bt smpp.BindType, ib *inbox) *esme {
	t.Helper()
	return dialESMEWith(t, n.SMPPAddr(), systemID, systemID, 100, func(cc *smpp.ClientConfig) {
		cc.BindType = bt
		if ib != nil {
			cc.OnDeliver = ib.onDeliver
		}
	})
}

// withReceipt builds a GSM7 submit_sm asking for a delivery receipt.
func withReceipt(dst, text string) []byte {
	s := smpp.Submit{SrcTON: 5, SrcAddr: []byte("shop"), DstTON: 1, DstNPI: 1, DstAddr: []byte(dst),
		RegisteredDelivery: 1, ShortMessage: []byte(text)}
	return smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s)
}

// addAccounts adds accounts (password = system_id) routed to the simulator.
func addAccounts(c *config.Config, ids ...string) {
	for _, id := range ids {
		a := c.Accounts[0]
		a.SystemID, a.Password = id, config.Secret(id)
		c.Accounts = append(c.Accounts, a)
	}
}

// checkReceipt asserts a receipt smppd delivered carries one of ids (and says which), in the
// text and the TLV alike, with the simulator's other fields intact.
func checkReceipt(t testing.TB, s *smpp.Submit, ids map[string]bool) string {
	t.Helper()
	if !smpp.IsReceipt(s) || s.ESMClass&0x3C != 0x04 {
		t.Fatalf("esm_class 0x%02x: not a delivery receipt", s.ESMClass)
	}
	rc, err := smpp.ParseReceipt(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(rc.TextID) != string(rc.TLVID) {
		t.Fatalf("text id %q and receipted_message_id %q disagree", rc.TextID, rc.TLVID)
	}
	id := string(rc.TLVID)
	if !ids[id] {
		t.Fatalf("receipt for %q, which is not a message_id this client was given", id)
	}
	if string(rc.Stat) != "DELIVRD" || string(rc.Err) != "000" || rc.HasState && rc.State != 2 {
		t.Fatalf("receipt fields changed: stat %q err %q state %d", rc.Stat, rc.Err, rc.State)
	}
	if !strings.Contains(string(s.ShortMessage), " sub:001 dlvrd:001 submit date:") {
		t.Fatalf("receipt text changed: %q", s.ShortMessage)
	}
	return id
}

// sendWithReceipts submits n messages asking for receipts and returns the ids given.
func sendWithReceipts(t testing.TB, e *esme, n int, prefix string) map[string]bool {
	t.Helper()
	var chs []resultCh
	for i := range n {
		chs = append(chs, e.send(withReceipt(fmt.Sprintf("4915112%06d", i), prefix+fmt.Sprint(i))))
	}
	ids := map[string]bool{}
	for _, ch := range chs {
		r := ch.Next(t, 15*time.Second)
		if r.Err != nil || r.Status != smpp.StatusOK {
			t.Fatalf("submit: %v %v", r.Status, r.Err)
		}
		ids[r.ID] = true
	}
	if len(ids) != n {
		t.Fatalf("%d distinct ids for %d messages", len(ids), n)
	}
	return ids
}

// collect reads n receipts and checks each matches a distinct id of ids.
func collect(t testing.TB, ib *inbox, ids map[string]bool, n int) {
	t.Helper()
	seen := map[string]bool{}
	for range n {
		_, s := ib.next(t)
		id := checkReceipt(t, &s, ids)
		if seen[id] {
			t.Fatalf("receipt for %s delivered twice", id)
		}
		seen[id] = true
	}
}

func TestReceiptRewrittenToOurID(t *testing.T) {
	sim := startSim(t, smpptest.Config{ReceiptDelay: time.Millisecond})
	n := startNode(t, sim, nil)
	ib := newInbox()
	e := receiverESME(t, n, "demo", smpp.Transceiver, ib)
	ids := sendWithReceipts(t, e, 50, "hello ")
	collect(t, ib, ids, 50)
	waitFor(t, "matched counter", 10*time.Second, func() bool { return counter(n, `smppd_receipts_total{result="matched"}`) == 50 })
	waitFor(t, "outbox drained", 10*time.Second, func() bool { return pending(n, "demo") == 0 })
	ib.none(t)
}

// counter reads a metric of the node.
func counter(n *Node, name string) float64 {
	var b bytes.Buffer
	n.Metrics().WritePrometheus(&b)
	for line := range strings.Lines(b.String()) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

func pending(n *Node, account string) int {
	for _, a := range n.Deliver().Status() {
		if a.SystemID == account {
			return a.Pending
		}
	}
	return 0
}

func TestReceiptsWaitForAReceiver(t *testing.T) {
	sim := startSim(t, smpptest.Config{ReceiptDelay: time.Millisecond})
	n := startNode(t, sim, nil)
	tx := dialESMEWith(t, n.SMPPAddr(), "demo", "demo", 100, func(cc *smpp.ClientConfig) { cc.BindType = smpp.Transmitter })
	ids := sendWithReceipts(t, tx, 30, "wait ")
	waitFor(t, "30 receipts stored", 10*time.Second, func() bool { return pending(n, "demo") == 30 })
	ib := newInbox()
	receiverESME(t, n, "demo", smpp.Receiver, ib)
	collect(t, ib, ids, 30)
	waitFor(t, "outbox drained", 10*time.Second, func() bool { return pending(n, "demo") == 0 })
	ib.none(t)
}

// TestReceiptsGoToTheirOwnAccount: two accounts send at once, each through a transmitter and a
// receiver bind; each gets exactly its own receipts, on its receiver.
func TestReceiptsGoToTheirOwnAccount(t *testing.T) {
	sim := startSim(t, smpptest.Config{ReceiptDelay: time.Millisecond})
	n := startNode(t, sim, func(c *config.Config) { addAccounts(c, "alpha", "beta") })
	type acct struct {
		id  string
		ib  *inbox
		tx  *esme
		ids map[string]bool
	}
	accts := []*acct{{id: "alpha", ib: newInbox()}, {id: "beta", ib: newInbox()}}
	txInbox := newInbox() // a transmitter never receives: this stays empty
	for _, a := range accts {
		receiverESME(t, n, a.id, smpp.Receiver, a.ib)
		a.tx = dialESMEWith(t, n.SMPPAddr(), a.id, a.id, 100, func(cc *smpp.ClientConfig) {
			cc.BindType, cc.OnDeliver = smpp.Transmitter, txInbox.onDeliver
		})
	}
	var wg sync.WaitGroup
	for _, a := range accts {
		wg.Add(1)
		go func() { defer wg.Done(); a.ids = sendWithReceipts(t, a.tx, 100, a.id) }()
	}
	wg.Wait()
	for _, a := range accts {
		collect(t, a.ib, a.ids, 100)
	}
	waitFor(t, "outboxes drained", 10*time.Second, func() bool { return pending(n, "alpha")+pending(n, "beta") == 0 })
	for _, a := range accts {
		a.ib.none(t)
	}
	txInbox.none(t)
}

// TestReceiptRetriedUntilAcknowledged: the client refuses the first deliver_sm (ESME_RX_T_APPN);
// smppd sends it again after retry_min, and stops once it is acknowledged.
func TestReceiptRetriedUntilAcknowledged(t *testing.T) {
	sim := startSim(t, smpptest.Config{ReceiptDelay: time.Millisecond})
	n := startNode(t, sim, func(c *config.Config) {
		c.Receipts.RetryMin, c.Receipts.RetryMax = config.Duration(10*time.Millisecond), config.Duration(50*time.Millisecond)
		c.Server.ResponseTimeout = config.Duration(300 * time.Millisecond)
	})
	ib := newInbox()
	ib.answer = func(n int64, _ []byte) smpp.Status {
		if n == 1 {
			return smpp.StatusTempAppErr
		}
		return smpp.StatusOK
	}
	e := receiverESME(t, n, "demo", smpp.Transceiver, ib)
	ids := sendWithReceipts(t, e, 1, "retry")
	collect(t, ib, ids, 1)
	waitFor(t, "outbox drained", 10*time.Second, func() bool { return pending(n, "demo") == 0 })
	if got := ib.n.Load(); got != 2 {
		t.Fatalf("client saw %d deliver_sm, want 2 (refused, then acknowledged)", got)
	}
	if r := counter(n, `smppd_outbox_retries_total{system_id="demo"}`); r != 1 {
		t.Fatalf("retries = %v, want 1", r)
	}
}

// TestMORouting: MO messages go to the account their destination and keyword route to, intact;
// concatenated parts follow their first part; an unroutable one is refused and counted.
func TestMORouting(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) {
		addAccounts(c, "alpha", "beta")
		c.MO.Routes = []config.MORoute{
			{To: "12345", Keyword: "stop", Account: "beta"},
			{To: "12345", Account: "alpha"},
			{To: "9*", Account: "beta"},
		}
	})
	ibA, ibB := newInbox(), newInbox()
	receiverESME(t, n, "alpha", smpp.Receiver, ibA)
	receiverESME(t, n, "beta", smpp.Receiver, ibB)
	waitFor(t, "upstream binds", 10*time.Second, func() bool { return n.Ready() })

	mo := func(to string, text []byte, udh bool) smpp.Submit {
		s := smpp.Submit{SrcTON: 1, SrcNPI: 1, SrcAddr: []byte("491511234567"), DstAddr: []byte(to), ShortMessage: text}
		if udh {
			s.ESMClass = 0x40
		}
		return s
	}
	send := func(s smpp.Submit) []byte {
		t.Helper()
		if err := sim.SendMO("smppd", &s); err != nil {
			t.Fatal(err)
		}
		return smpp.AppendSubmitPDU(nil, smpp.DeliverSM, 0, &s)[smpp.HeaderLen:]
	}
	expect := func(ib *inbox, body []byte) {
		t.Helper()
		pdu, _ := ib.next(t)
		if !bytes.Equal(pdu[smpp.HeaderLen:], body) {
			t.Fatalf("MO changed on the way:\n got % x\nwant % x", pdu[smpp.HeaderLen:], body)
		}
	}
	expect(ibA, send(mo("12345", []byte("hello shop"), false)))
	expect(ibB, send(mo("12345", []byte("STOP please"), false)))
	expect(ibB, send(mo("999", []byte("anything"), false)))
	// A two-part message whose first part has the keyword: both parts to beta, bytes intact.
	p1 := send(mo("12345", append([]byte{5, 0, 3, 0x42, 2, 1}, "Stop sending me"...), true))
	p2 := send(mo("12345", append([]byte{5, 0, 3, 0x42, 2, 2}, " these offers"...), true))
	expect(ibB, p1)
	expect(ibB, p2)
	// Unroutable: refused with mo.unroutable_status and counted, delivered to nobody.
	send(mo("555", []byte("lost"), false))
	waitFor(t, "unroutable counted", 10*time.Second, func() bool { return counter(n, `smppd_mo_total{result="unroutable"}`) >= 1 })
	if got := counter(n, `smppd_mo_total{result="routed"}`); got != 5 {
		t.Fatalf("routed = %v, want 5", got)
	}
	ibA.none(t)
	ibB.none(t)
}

// TestReceiptIDFormats: every way an SMSC writes the id in its submit_sm_resp and its receipt
// (decimal, hex upper and lower, zero padding, TLV and text apart, text only) finds the
// message, with the upstream's receipt_id setting or by auto mode.
func TestReceiptIDFormats(t *testing.T) {
	dec, hex, HEX := smpptest.IDFormat{}, smpptest.IDFormat{Radix: smpptest.HexLower}, smpptest.IDFormat{Radix: smpptest.HexUpper}
	pad := func(f smpptest.IDFormat, w int) smpptest.IDFormat { f.Width = w; return f }
	for _, tc := range []struct {
		name          string
		resp, receipt smpptest.IDFormat
		tlv           *smpptest.IDFormat // nil: as receipt
		textOnly      bool
		mode          string
	}{
		{name: "decimal both", resp: dec, receipt: dec, mode: "auto"},
		{name: "hex lower resp, HEX receipt", resp: hex, receipt: HEX, mode: "auto"},
		{name: "zero-padded resp, bare receipt", resp: pad(dec, 12), receipt: dec, mode: "auto"},
		{name: "bare resp, zero-padded HEX receipt", resp: hex, receipt: pad(HEX, 16), mode: "same"},
		{name: "kannel: hex resp, decimal receipt", resp: hex, receipt: dec, mode: "receipt_decimal"},
		{name: "decimal resp, hex receipt", resp: dec, receipt: HEX, mode: "receipt_hex"},
		{name: "auto learns hex resp, decimal receipt", resp: hex, receipt: dec, mode: "auto"},
		{name: "text decimal, TLV hex", resp: dec, receipt: dec, tlv: &hex, mode: "receipt_hex"},
		{name: "text only", resp: pad(HEX, 10), receipt: hex, textOnly: true, mode: "auto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := startSim(t, smpptest.Config{ReceiptDelay: time.Millisecond, FirstID: 1_000_000_007,
				RespIDFormat: tc.resp, ReceiptIDFormat: tc.receipt, ReceiptTLVIDFormat: tc.tlv, ReceiptTextOnly: tc.textOnly})
			n := startNode(t, sim, func(c *config.Config) {
				c.Upstreams[0].ReceiptID = tc.mode
				c.Receipts.Hold = config.Duration(100 * time.Millisecond)
			})
			ib := newInbox()
			e := receiverESME(t, n, "demo", smpp.Transceiver, ib)
			const msgs = 40
			ids := sendWithReceipts(t, e, msgs, "fmt ")
			collect(t, ib, ids, msgs)
			if got := counter(n, `smppd_receipts_total{result="matched"}`); got != msgs {
				t.Fatalf("matched %v, want %d", got, msgs)
			}
		})
	}
}

// TestReceiptBeforeResp: the SMSC sends each receipt before the submit_sm_resp; smppd holds it
// until the mapping exists, so every one still reaches its client.
func TestReceiptBeforeResp(t *testing.T) {
	sim := startSim(t, smpptest.Config{ReceiptDelay: 20 * time.Millisecond, ReceiptBeforeResp: true})
	n := startNode(t, sim, nil)
	ib := newInbox()
	e := receiverESME(t, n, "demo", smpp.Transceiver, ib)
	ids := sendWithReceipts(t, e, 30, "early ")
	collect(t, ib, ids, 30)
	if got := counter(n, `smppd_receipts_total{result="unmatched",reason="no_mapping"}`); got != 0 {
		t.Fatalf("%v receipts unmatched", got)
	}
}

// TestDuplicateReceipts: every receipt comes three times; the client gets each once.
func TestDuplicateReceipts(t *testing.T) {
	sim := startSim(t, smpptest.Config{ReceiptDelay: time.Millisecond, ReceiptDuplicates: 2})
	n := startNode(t, sim, nil)
	ib := newInbox()
	e := receiverESME(t, n, "demo", smpp.Transceiver, ib)
	ids := sendWithReceipts(t, e, 25, "dup ")
	collect(t, ib, ids, 25)
	waitFor(t, "duplicates answered", 10*time.Second, func() bool {
		return counter(n, `smppd_receipts_total{result="duplicate"}`) == 50 && sim.ReceiptsPending() == 0
	})
	ib.none(t)
}

// TestUnmatchedReceipt: a receipt for an id smppd never issued is held for receipts.hold, then
// answered with receipts.unmatched_status and counted; nothing reaches a client.
func TestUnmatchedReceipt(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) { c.Receipts.Hold = config.Duration(50 * time.Millisecond) })
	ib := newInbox()
	receiverESME(t, n, "demo", smpp.Transceiver, ib)
	waitFor(t, "upstream binds", 10*time.Second, n.Ready)
	rc := smpp.Submit{ESMClass: 0x04, SrcAddr: []byte("4915112345678"), DstAddr: []byte("shop"),
		ShortMessage: []byte("id:424242 sub:001 dlvrd:001 submit date:2611251200 done date:2611251201 stat:DELIVRD err:000 text:x"),
		TLVs:         smpp.AppendTLV(nil, smpp.TagReceiptedMsgID, []byte("424242\x00"))}
	if err := sim.SendMO("smppd", &rc); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "unmatched counted", 10*time.Second, func() bool {
		return counter(n, `smppd_receipts_total{result="unmatched",reason="no_mapping"}`) == 1
	})
	waitFor(t, "SMSC got its answer", 10*time.Second, func() bool { return sim.Stats().MOAcked == 1 })
	ib.none(t)
}

// TestReceiptRetriedAfterNoAnswer: the client never answers the first deliver_sm; after
// server.response_timeout smppd closes that session, and the receipt goes out again once the
// client has bound again.
func TestReceiptRetriedAfterNoAnswer(t *testing.T) {
	sim := startSim(t, smpptest.Config{ReceiptDelay: time.Millisecond})
	n := startNode(t, sim, func(c *config.Config) {
		c.Receipts.RetryMin, c.Receipts.RetryMax = config.Duration(10*time.Millisecond), config.Duration(50*time.Millisecond)
		c.Server.ResponseTimeout = config.Duration(200 * time.Millisecond)
	})
	ib := newInbox()
	ib.answer = func(n int64, _ []byte) smpp.Status {
		if n == 1 {
			return noAnswer
		}
		return smpp.StatusOK
	}
	e := dialESMEWith(t, n.SMPPAddr(), "demo", "demo", 100, func(cc *smpp.ClientConfig) {
		cc.OnDeliver = ib.onDeliver
		cc.ReconnectMin, cc.ReconnectMax = 20*time.Millisecond, 100*time.Millisecond
	})
	ids := sendWithReceipts(t, e, 1, "silent")
	collect(t, ib, ids, 1)
	waitFor(t, "outbox drained", 10*time.Second, func() bool { return pending(n, "demo") == 0 })
	if got := counter(n, `smppd_sessions_closed_total{reason="response_timeout"}`); got != 1 {
		t.Fatalf("sessions closed for not answering: %v, want 1", got)
	}
}
