package smpptest_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/pdu"

	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

func TestIDFormat(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    uint64
		want string
	}{
		{"dec", 2748, "2748"},
		{"hex", 2748, "abc"},
		{"HEX", 2748, "ABC"},
		{"dec:8", 2748, "00002748"},
		{"HEX:8", 2748, "00000ABC"},
		{"hex:2", 2748, "abc"}, // a width is a minimum
		{"hex:0", 0, "0"},
		{"dec:20", 1<<64 - 1, "18446744073709551615"},
	} {
		f, err := smpptest.ParseIDFormat(tt.in)
		if err != nil {
			t.Fatalf("ParseIDFormat(%q): %v", tt.in, err)
		}
		if got := f.Format(tt.n); got != tt.want {
			t.Errorf("%s.Format(%d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
		if got := string(f.Append([]byte("x"), tt.n)); got != "x"+tt.want {
			t.Errorf("%s.Append = %q", tt.in, got)
		}
		back, err := smpptest.ParseIDFormat(f.String())
		if err != nil || back != f {
			t.Errorf("ParseIDFormat(%q.String() = %q) = %+v, %v", tt.in, f.String(), back, err)
		}
	}
	for _, bad := range []string{"", "Hex", "dec:", "dec:x", "hex:-1", "HEX:65"} {
		if _, err := smpptest.ParseIDFormat(bad); err == nil {
			t.Errorf("ParseIDFormat(%q) succeeded", bad)
		}
	}
	if _, err := smpptest.Start(smpptest.Config{RespIDFormat: smpptest.IDFormat{Width: 100}}); err == nil {
		t.Fatal("Start accepted a 100-digit id width")
	}
	f := smpptest.IDFormat{Radix: smpptest.HexUpper, Width: 12}
	buf := make([]byte, 0, 32)
	if a := testing.AllocsPerRun(100, func() { buf = f.Append(buf[:0], 0xDEADBEEF) }); a != 0 {
		t.Fatalf("Append allocates %.0f times with room in dst", a)
	}
}

var (
	receiptRE = regexp.MustCompile(`^id:(\S+) sub:001 dlvrd:(\d{3}) submit date:\d{10} done date:\d{10} stat:(\w+) err:(\d{3}) text:hello$`)
	hexID     = func(f smpptest.IDFormat) *smpptest.IDFormat { return &f }
)

// parsedReceipt is what a receipt says about its message.
type parsedReceipt struct {
	textID, dlvrd, stat, err string
	tlvID                    string // "" when absent
	hasTLVs                  bool
	state                    byte
	netErr                   []byte
}

func parseReceipt(t *testing.T, r smpp.Submit) parsedReceipt {
	t.Helper()
	m := receiptRE.FindSubmatch(r.ShortMessage)
	if r.ESMClass != 0x04 || m == nil {
		t.Fatalf("not a receipt: esm_class %#x text %q", r.ESMClass, r.ShortMessage)
	}
	p := parsedReceipt{textID: string(m[1]), dlvrd: string(m[2]), stat: string(m[3]), err: string(m[4]), hasTLVs: len(r.TLVs) > 0}
	if v, ok := smpp.FindTLV(r.TLVs, smpp.TagReceiptedMsgID); ok {
		if len(v) == 0 || v[len(v)-1] != 0 {
			t.Fatalf("receipted_message_id %q is not a C-string", v)
		}
		p.tlvID = string(v[:len(v)-1])
	}
	if v, ok := smpp.FindTLV(r.TLVs, smpp.TagMessageState); ok && len(v) == 1 {
		p.state = v[0]
	}
	p.netErr, _ = smpp.FindTLV(r.TLVs, 0x0423)
	return p
}

func TestReceiptIDFormats(t *testing.T) {
	for _, tt := range []struct {
		name                string
		cfg                 smpptest.Config
		resp, textID, tlvID string
	}{
		{name: "decimal default", resp: "2748", textID: "2748", tlvID: "2748"},
		{name: "hex resp, decimal receipt",
			cfg:  smpptest.Config{RespIDFormat: smpptest.IDFormat{Radix: smpptest.HexLower}},
			resp: "abc", textID: "2748", tlvID: "2748"},
		{name: "decimal resp, padded upper-case hex receipt",
			cfg:  smpptest.Config{ReceiptIDFormat: smpptest.IDFormat{Radix: smpptest.HexUpper, Width: 8}},
			resp: "2748", textID: "00000ABC", tlvID: "00000ABC"},
		{name: "padded decimal resp",
			cfg:  smpptest.Config{RespIDFormat: smpptest.IDFormat{Width: 10}},
			resp: "0000002748", textID: "2748", tlvID: "2748"},
		{name: "hex TLV, decimal text",
			cfg:  smpptest.Config{RespIDFormat: smpptest.IDFormat{Radix: smpptest.HexLower}, ReceiptTLVIDFormat: hexID(smpptest.IDFormat{Radix: smpptest.HexLower})},
			resp: "abc", textID: "2748", tlvID: "abc"},
		{name: "text only",
			cfg:  smpptest.Config{ReceiptTextOnly: true, ReceiptIDFormat: smpptest.IDFormat{Radix: smpptest.HexLower}},
			resp: "2748", textID: "abc"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.FirstID, cfg.ReceiptDelay = 2748, time.Millisecond
			sim := start(t, cfg)
			c := connect(t, sim, "smppd", "smppd", smpp.Transceiver)
			o := c.submit(t, 1)
			if o.Status != smpp.StatusOK || o.ID != tt.resp {
				t.Fatalf("submit_sm_resp %+v, want id %s", o, tt.resp)
			}
			r := parseReceipt(t, c.nextDeliver(t))
			if r.textID != tt.textID || r.tlvID != tt.tlvID || r.stat != "DELIVRD" || r.dlvrd != "001" || r.err != "000" {
				t.Fatalf("receipt %+v, want text id %s, TLV id %q, DELIVRD", r, tt.textID, tt.tlvID)
			}
			if tt.tlvID == "" && r.hasTLVs || tt.tlvID != "" && (r.state != 2 || !bytes.Equal(r.netErr, []byte{3, 0, 0})) {
				t.Fatalf("receipt TLVs %+v", r)
			}
		})
	}
}

// events records, in wire order, what a client's read loop saw: "resp:<id>" for a
// submit_sm_resp, "receipt:<id>" for a receipt.
type events chan string

func (e events) SubmitDone(_ *smpp.Batch, st smpp.Status, id []byte, err error) {
	e <- fmt.Sprintf("resp:%s %v %v", id, st, err)
}

func (e events) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-e:
		return s
	case <-time.After(waitTimeout):
		t.Fatal("no event")
		return ""
	}
}

func TestReceiptBeforeResp(t *testing.T) {
	sim := start(t, smpptest.Config{ReceiptDelay: 20 * time.Millisecond, ReceiptBeforeResp: true})
	ev := make(events, 10)
	cfg := smpp.DefaultClientConfig()
	cfg.Addr, cfg.SystemID, cfg.Password, cfg.BindType, cfg.Window = sim.Addr(), "smppd", "smppd", smpp.Transceiver, 10
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.OnDeliver = func(cl *smpp.Client, ref smpp.DeliverRef, p []byte) {
		var m smpp.Submit
		if err := smpp.ParseSubmit(p[smpp.HeaderLen:], &m); err != nil {
			t.Errorf("deliver_sm: %v", err)
		}
		id, _ := smpp.FindTLV(m.TLVs, smpp.TagReceiptedMsgID)
		ev <- "receipt:" + string(bytes.TrimRight(id, "\x00"))
		_ = cl.RespondDeliver(ref, smpp.StatusOK)
	}
	c := smpp.NewClient(cfg)
	c.Start()
	t.Cleanup(func() { c.Close(context.Background()) })
	waitFor(t, "bind", c.Bound)
	for i, want := range []string{"1", "2"} {
		p := smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 0, &smpp.Submit{SrcAddr: []byte("Brand"), DstAddr: []byte("447700900001"),
			RegisteredDelivery: 1, ShortMessage: []byte("hello")})
		if err := c.Submit(p, ev); err != nil {
			t.Fatal(err)
		}
		if got := ev.next(t); got != "receipt:"+want {
			t.Fatalf("submit %d: first event %q, want the receipt for %s", i+1, got, want)
		}
		if got := ev.next(t); got != "resp:"+want+" ESME_ROK <nil>" {
			t.Fatalf("submit %d: second event %q, want the resp", i+1, got)
		}
	}
	waitFor(t, "receipts acked", func() bool { return sim.ReceiptsAcked() == 2 && sim.Accepted() == 2 })
}

func TestReceiptDuplicates(t *testing.T) {
	sim := start(t, smpptest.Config{ReceiptDelay: time.Millisecond, ReceiptDuplicates: 2, Record: true})
	c := connect(t, sim, "smppd", "smppd", smpp.Transceiver)
	o := c.submit(t, 1)
	for i := 0; i < 3; i++ {
		checkReceipt(t, c.nextDeliver(t), o.ID)
	}
	waitFor(t, "three receipts acked", func() bool { return sim.ReceiptsAcked() == 3 })
	if sim.ReceiptsSent() != 3 || sim.ReceiptsPending() != 0 {
		t.Fatalf("sent %d pending %d, want 3 and 0", sim.ReceiptsSent(), sim.ReceiptsPending())
	}
	copies := map[int]bool{}
	for _, a := range sim.Acked() {
		if a.Kind != smpptest.KindReceipt || a.MessageID != o.ID || a.N != 1 || a.Attempts != 1 {
			t.Fatalf("acked %+v", a)
		}
		copies[a.Copy] = true
	}
	if len(copies) != 3 || !copies[0] || !copies[1] || !copies[2] {
		t.Fatalf("acked copies %v, want 0, 1 and 2", copies)
	}
}

func TestReceiptRetryAfterError(t *testing.T) {
	sim := start(t, smpptest.Config{ReceiptDelay: time.Millisecond, RetryBackoff: 10 * time.Millisecond, Record: true})
	c := connectAnswering(t, sim, "smppd", "smppd", smpp.Transceiver, func(n int) smpp.Status {
		if n == 1 {
			return smpp.StatusTempAppErr // the first attempt is refused: keep it and retry
		}
		return smpp.StatusOK
	})
	o := c.submit(t, 1)
	checkReceipt(t, c.nextDeliver(t), o.ID)
	checkReceipt(t, c.nextDeliver(t), o.ID) // sent again
	waitFor(t, "the receipt acked", func() bool { return sim.ReceiptsAcked() == 1 })
	if sim.ReceiptsSent() != 2 || sim.ReceiptsPending() != 0 {
		t.Fatalf("sent %d pending %d, want 2 and 0", sim.ReceiptsSent(), sim.ReceiptsPending())
	}
	if a := sim.Acked(); len(a) != 1 || a[0].Attempts != 2 || a[0].MessageID != o.ID {
		t.Fatalf("Acked %+v, want one receipt for %s after 2 attempts", a, o.ID)
	}
}

// readDeliver reads one deliver_sm from a raw connection, skipping enquire_link.
func readDeliver(t *testing.T, r *bufio.Reader) smpp.Header {
	t.Helper()
	buf := make([]byte, 1024)
	for {
		h := readPDU(t, r, buf)
		if h.ID == smpp.DeliverSM {
			return h
		}
		if h.ID != smpp.EnquireLink {
			t.Fatalf("got %v, want deliver_sm", h.ID)
		}
	}
}

// TestReceiptAfterRebind: a receipt sent to a receiver that goes away unanswered is kept and
// delivered to the receiver that binds next.
func TestReceiptAfterRebind(t *testing.T) {
	sim := start(t, smpptest.Config{ReceiptDelay: time.Millisecond, RetryBackoff: 10 * time.Millisecond, Record: true})
	tx := connect(t, sim, "smppd", "smppd", smpp.Transmitter)
	conn, st := rawBindAs(t, sim, "smppd", "smppd", pdu.Receiver)
	if st != smpp.StatusOK {
		t.Fatal(st)
	}
	o := tx.submit(t, 1)
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	readDeliver(t, bufio.NewReader(conn))
	conn.Close() // gone with the receipt unanswered
	waitFor(t, "the receiver's session to end", func() bool { return sim.Binds() == 1 })
	if sim.ReceiptsPending() != 1 || sim.ReceiptsAcked() != 0 {
		t.Fatalf("pending %d acked %d, want the receipt kept", sim.ReceiptsPending(), sim.ReceiptsAcked())
	}
	rx := connect(t, sim, "smppd", "smppd", smpp.Receiver)
	checkReceipt(t, rx.nextDeliver(t), o.ID)
	waitFor(t, "the receipt acked", func() bool { return sim.ReceiptsAcked() == 1 })
	if sim.ReceiptsSent() != 2 || sim.ReceiptsPending() != 0 {
		t.Fatalf("sent %d pending %d, want 2 and 0", sim.ReceiptsSent(), sim.ReceiptsPending())
	}
}

// TestReceiptTimeoutMovesOn: a receiver that stops answering is dropped after ResponseTimeout and
// the receipt goes to another receiver of the system_id.
func TestReceiptTimeoutMovesOn(t *testing.T) {
	sim := start(t, smpptest.Config{ReceiptDelay: time.Millisecond, RetryBackoff: 10 * time.Millisecond,
		ResponseTimeout: 200 * time.Millisecond})
	silent, st := rawBindAs(t, sim, "smppd", "smppd", pdu.Transceiver)
	if st != smpp.StatusOK {
		t.Fatal(st)
	}
	submit := smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 7, &smpp.Submit{SrcTON: 5, SrcAddr: []byte("Brand"), DstTON: 1, DstNPI: 1,
		DstAddr: []byte("447700900001"), RegisteredDelivery: 1, ShortMessage: []byte("hello")})
	if _, err := silent.Write(submit); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(silent)
	_ = silent.SetReadDeadline(time.Now().Add(waitTimeout))
	if h := readPDU(t, r, make([]byte, 256)); h.ID != smpp.SubmitSMResp || h.Status != smpp.StatusOK {
		t.Fatalf("got %v %v", h.ID, h.Status)
	}
	readDeliver(t, r) // the receipt comes to the submitting transceiver, which never answers
	rx := connect(t, sim, "smppd", "smppd", smpp.Receiver)
	checkReceipt(t, rx.nextDeliver(t), "1")
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("the silent session was not dropped")
	}
	waitFor(t, "the receipt acked", func() bool { return sim.ReceiptsAcked() == 1 && sim.ReceiptsPending() == 0 })
}

func TestFailureOnlyReceipts(t *testing.T) {
	sim := start(t, smpptest.Config{ReceiptDelay: time.Millisecond, Record: true,
		ReceiptStat: func(n uint64) (string, byte, int) {
			if n == 2 {
				return "UNDELIV", 5, 11
			}
			return "DELIVRD", 2, 0
		}})
	c := connect(t, sim, "smppd", "smppd", smpp.Transceiver)
	c.submit(t, 2)             // 1: delivered, failure receipts only: none
	failed := c.submit(t, 2)   // 2: failed: a receipt
	c.submit(t, 3)             // 3: registered_delivery 3 is reserved: none
	sentinel := c.submit(t, 1) // 4: delivered, receipt always
	r := parseReceipt(t, c.nextDeliver(t))
	if r.textID != failed.ID || r.stat != "UNDELIV" || r.dlvrd != "000" || r.err != "011" || r.state != 5 ||
		!bytes.Equal(r.netErr, []byte{3, 0, 11}) {
		t.Fatalf("first receipt %+v, want UNDELIV for %s", r, failed.ID)
	}
	checkReceipt(t, c.nextDeliver(t), sentinel.ID) // nothing for 1 or 3 came in between
	waitFor(t, "two receipts acked", func() bool { return sim.ReceiptsAcked() == 2 })
	if sim.ReceiptsSent() != 2 {
		t.Fatalf("%d receipts sent, want 2", sim.ReceiptsSent())
	}
}

func TestMOQueuedUntilReceiverBinds(t *testing.T) {
	sim := start(t, smpptest.Config{AnyAccount: true})
	if err := sim.SendMO("late", &smpp.Submit{SrcTON: 1, SrcNPI: 1, SrcAddr: []byte("447700900001"), DstAddr: []byte("12345"), ShortMessage: []byte("STOP")}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("Grüße aus Köln € ", 12) // GSM 7-bit with escapes, 204 septets: two parts
	parts, err := sim.SendMOText("late", "+447700900002", "12345", long)
	if err != nil || parts != 2 {
		t.Fatalf("SendMOText = %d, %v; want 2 parts", parts, err)
	}
	if st := sim.Stats(); st.MOPending != 3 || st.MOSent != 0 {
		t.Fatalf("before any receiver: %+v, want 3 MO pending, none sent", st)
	}
	tx := connect(t, sim, "late", "x", smpp.Transmitter) // cannot receive: still queued
	_ = tx
	rx := connect(t, sim, "late", "x", smpp.Receiver)
	if m := rx.nextDeliver(t); string(m.ShortMessage) != "STOP" || string(m.SrcAddr) != "447700900001" || m.ESMClass != 0 {
		t.Fatalf("first MO %+v", m)
	}
	var text []byte
	for i := 1; i <= 2; i++ {
		m := rx.nextDeliver(t)
		sm := m.ShortMessage
		if m.ESMClass != 0x40 || m.DataCoding != 0 || len(sm) < 6 || !bytes.Equal(sm[:3], []byte{5, 0, 3}) || sm[4] != 2 || sm[5] != byte(i) ||
			string(m.SrcAddr) != "447700900002" || m.SrcTON != 1 || m.DstTON != 0 {
			t.Fatalf("part %d: esm_class %#x dc %#x UDH % x from %s/%d to ton %d", i, m.ESMClass, m.DataCoding, sm[:min(6, len(sm))], m.SrcAddr, m.SrcTON, m.DstTON)
		}
		text = append(text, sm[6:]...)
	}
	segs, _ := smpp.EncodeText(long)
	if want := bytes.Join(segs, nil); !bytes.Equal(text, want) {
		t.Fatalf("reassembled parts differ from the encoded text")
	}
	waitFor(t, "the MOs acked", func() bool { return sim.Stats().MOAcked == 3 })
	if st := sim.Stats(); st.MOPending != 0 || st.MOSent != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSendMOTextErrors(t *testing.T) {
	sim := start(t, smpptest.Config{})
	for _, tt := range []struct {
		systemID, from, to, text string
		field                    string
	}{
		{"", "1", "2", "x", "system_id"},
		{"other", "1", "2", "x", "system_id"},
		{"smppd", "", "2", "x", "from"},
		{"smppd", "1", "", "x", "to"},
		{"smppd", "1", strings.Repeat("9", 21), "x", "to"},
		{"smppd", "bad\x01name", "2", "x", "from"},
		{"smppd", "1", "2", "", "text"},
		{"smppd", "1", "2", strings.Repeat("x", 153*256), "text"},
	} {
		if _, err := sim.SendMOText(tt.systemID, tt.from, tt.to, tt.text); err == nil || !strings.HasPrefix(err.Error(), tt.field+":") {
			t.Errorf("SendMOText(%q, %q, %q, %d chars) = %v, want an error about %s", tt.systemID, tt.from, tt.to, len(tt.text), err, tt.field)
		}
	}
	if n, err := sim.SendMOText("smppd", "Brand", "447700900001", "Привет"); err != nil || n != 1 {
		t.Fatalf("UCS2 MO: %d, %v", n, err)
	}
	if st := sim.Stats(); st.MOPending != 1 {
		t.Fatalf("%d MO pending, want only the valid one", st.MOPending)
	}
	sim.Close()
	if err := sim.SendMO("smppd", &smpp.Submit{DstAddr: []byte("1")}); !errors.Is(err, smpptest.ErrClosed) {
		t.Fatalf("SendMO after Close = %v, want ErrClosed", err)
	}
}
