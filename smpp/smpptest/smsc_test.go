package smpptest_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/pdu"

	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

const waitTimeout = 5 * time.Second

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	smpptest.WaitFor(t, what, waitTimeout, cond)
}

func start(t testing.TB, cfg smpptest.Config) *smpptest.SMSC {
	t.Helper()
	sim, err := smpptest.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

type (
	outcome = smpptest.Outcome
	waiter  = smpptest.Outcomes
)

// client is a bound smpp.Client whose deliver_sm PDUs arrive on delivered, answered with what
// answer returns for the nth deliver_sm (from 1) of this client (nil: ESME_ROK).
type client struct {
	*smpp.Client
	delivered chan []byte
	n         int // deliver_sm received; the client's read loop only
}

func connect(t *testing.T, sim *smpptest.SMSC, systemID, password string, bt smpp.BindType) *client {
	t.Helper()
	return connectAnswering(t, sim, systemID, password, bt, nil)
}

func connectAnswering(t *testing.T, sim *smpptest.SMSC, systemID, password string, bt smpp.BindType, answer func(n int) smpp.Status) *client {
	t.Helper()
	cfg := smpp.DefaultClientConfig()
	cfg.Addr, cfg.SystemID, cfg.Password, cfg.BindType, cfg.Window = sim.Addr(), systemID, password, bt, 10
	cfg.Logger = slog.New(slog.DiscardHandler)
	c := &client{delivered: make(chan []byte, 100)}
	cfg.OnDeliver = func(cl *smpp.Client, seq smpp.DeliverRef, p []byte) {
		c.n++
		c.delivered <- append([]byte(nil), p...)
		st := smpp.StatusOK
		if answer != nil {
			st = answer(c.n)
		}
		_ = cl.RespondDeliver(seq, st)
	}
	c.Client = smpp.NewClient(cfg)
	c.Start()
	t.Cleanup(func() { c.Close(context.Background()) })
	waitFor(t, "bind", c.Bound)
	return c
}

func (c *client) submit(t *testing.T, rd byte) outcome {
	t.Helper()
	w := make(waiter, 1)
	p := smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 0, &smpp.Submit{SrcTON: 5, SrcAddr: []byte("Brand"), DstTON: 1, DstNPI: 1,
		DstAddr: []byte("447700900001"), RegisteredDelivery: rd, ShortMessage: []byte("hello")})
	if err := c.Submit(p, w); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-w:
		return o
	case <-time.After(waitTimeout):
		t.Fatal("no submit outcome")
		return outcome{}
	}
}

func (c *client) nextDeliver(t *testing.T) smpp.Submit {
	t.Helper()
	select {
	case p := <-c.delivered:
		var s smpp.Submit
		if h := smpp.ParseHeader(p); h.ID != smpp.DeliverSM {
			t.Fatalf("got %v, want deliver_sm", h.ID)
		}
		if err := smpp.ParseSubmit(p[smpp.HeaderLen:], &s); err != nil {
			t.Fatalf("deliver_sm body: %v", err)
		}
		return s
	case <-time.After(waitTimeout):
		t.Fatal("no deliver_sm")
		return smpp.Submit{}
	}
}

var receiptText = regexp.MustCompile(`^id:(\S+) sub:001 dlvrd:001 submit date:\d{10} done date:\d{10} stat:DELIVRD err:000 text:hello$`)

func checkReceipt(t *testing.T, r smpp.Submit, id string) {
	t.Helper()
	m := receiptText.FindSubmatch(r.ShortMessage)
	if r.ESMClass != 0x04 || m == nil || string(m[1]) != id {
		t.Fatalf("receipt esm_class %#x text %q, want a receipt for id %s", r.ESMClass, r.ShortMessage, id)
	}
	if v, ok := smpp.FindTLV(r.TLVs, smpp.TagReceiptedMsgID); !ok || string(v) != id+"\x00" {
		t.Fatalf("receipted_message_id %q", v)
	}
	if v, ok := smpp.FindTLV(r.TLVs, smpp.TagMessageState); !ok || len(v) != 1 || v[0] != 2 {
		t.Fatalf("message_state %v", v)
	}
	if string(r.SrcAddr) != "447700900001" || r.SrcTON != 1 || string(r.DstAddr) != "Brand" || r.DstTON != 5 {
		t.Fatalf("receipt addresses %s -> %s, want the submit's reversed", r.SrcAddr, r.DstAddr)
	}
}

func TestReceipt(t *testing.T) {
	sim := start(t, smpptest.Config{ReceiptDelay: 20 * time.Millisecond})
	c := connect(t, sim, "smppd", "smppd", smpp.Transceiver)
	if o := c.submit(t, 0); o.Status != smpp.StatusOK { // no receipt asked for
		t.Fatalf("%+v", o)
	}
	o := c.submit(t, 1)
	if o.Status != smpp.StatusOK || o.ID != "2" {
		t.Fatalf("%+v, want ESME_ROK id 2", o)
	}
	checkReceipt(t, c.nextDeliver(t), "2") // the first receipt is the second submit's
}

func TestReceiptToReceiver(t *testing.T) {
	sim := start(t, smpptest.Config{ReceiptDelay: time.Millisecond})
	tx := connect(t, sim, "smppd", "smppd", smpp.Transmitter)
	rx := connect(t, sim, "smppd", "smppd", smpp.Receiver)
	waitFor(t, "two binds", func() bool { return sim.Binds() == 2 })
	o := tx.submit(t, 1)
	checkReceipt(t, rx.nextDeliver(t), o.ID)
}

func TestSendMO(t *testing.T) {
	sim := start(t, smpptest.Config{Record: true})
	rx := connect(t, sim, "smppd", "smppd", smpp.Receiver)
	if err := sim.SendMO("smppd", &smpp.Submit{SrcAddr: []byte("447700900001"), DstAddr: []byte("12345"), ShortMessage: []byte("STOP")}); err != nil {
		t.Fatal(err)
	}
	if m := rx.nextDeliver(t); string(m.ShortMessage) != "STOP" || string(m.SrcAddr) != "447700900001" {
		t.Fatalf("MO %+v", m)
	}
	waitFor(t, "the MO acknowledged", func() bool { return sim.Stats().MOAcked == 1 })
	if st := sim.Stats(); st.MOSent != 1 || st.MOPending != 0 || st.ReceiptsSent != 0 {
		t.Fatalf("stats %+v", st)
	}
	if a := sim.Acked(); len(a) != 1 || a[0].Kind != smpptest.KindMO || a[0].Attempts != 1 {
		t.Fatalf("Acked %+v", a)
	}
	for _, tt := range []struct {
		systemID string
		m        *smpp.Submit
		field    string
	}{
		{"", &smpp.Submit{DstAddr: []byte("1")}, "system_id"},
		{"nobody", &smpp.Submit{DstAddr: []byte("1")}, "system_id"},
		{"smppd", nil, "message"},
		{"smppd", &smpp.Submit{}, "destination_addr"},
		{"smppd", &smpp.Submit{DstAddr: []byte("1"), SrcAddr: []byte("123456789012345678901")}, "source_addr"},
		{"smppd", &smpp.Submit{DstAddr: []byte("1"), ShortMessage: make([]byte, 255)}, "short_message"},
	} {
		if err := sim.SendMO(tt.systemID, tt.m); err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("SendMO(%q, %+v) = %v, want an error naming %s", tt.systemID, tt.m, err, tt.field)
		}
	}
	if st := sim.Stats(); st.MOPending != 0 {
		t.Fatalf("invalid MOs queued: %+v", st)
	}
}

func TestFaultSequence(t *testing.T) {
	sim := start(t, smpptest.Config{})
	c := connect(t, sim, "smppd", "smppd", smpp.Transceiver)
	sim.SetFaults(smpptest.Faults{ThrottleEvery: 3, Status: 0x45, StatusEvery: 2})
	want := []smpp.Status{smpp.StatusOK, 0x45, smpp.StatusThrottled, 0x45, smpp.StatusOK, smpp.StatusThrottled}
	for i, st := range want {
		if o := c.submit(t, 0); o.Status != st || (st == smpp.StatusOK) != (o.ID != "") {
			t.Fatalf("submit %d: %+v, want %v", i+1, o, st)
		}
	}
	if sim.Count() != 6 || sim.Accepted() != 2 {
		t.Fatalf("count %d accepted %d, want 6 and 2", sim.Count(), sim.Accepted())
	}
	sim.SetFaults(smpptest.Faults{ThrottleFirst: 1}) // counters restart
	for i, st := range []smpp.Status{smpp.StatusThrottled, smpp.StatusOK} {
		if o := c.submit(t, 0); o.Status != st {
			t.Fatalf("after SetFaults, submit %d: %+v, want %v", i+1, o, st)
		}
	}
}

func TestAnyAccountAndIDFormat(t *testing.T) {
	sim := start(t, smpptest.Config{AnyAccount: true, FirstID: 0xA1, RespIDFormat: smpptest.IDFormat{Radix: smpptest.HexUpper, Width: 8}})
	c := connect(t, sim, "whoever", "anything", smpp.Transceiver)
	if o := c.submit(t, 0); o.Status != smpp.StatusOK || o.ID != "000000A1" {
		t.Fatalf("%+v, want id 000000A1", o)
	}
	if sim.Binds() != 1 {
		t.Fatalf("binds %d", sim.Binds())
	}
	c.Close(context.Background())
	waitFor(t, "unbind", func() bool { return sim.Binds() == 0 })
}

// rawBind dials sim and binds as a transmitter; it returns the conn and the bind status.
func rawBind(t testing.TB, sim *smpptest.SMSC, systemID, password string) (net.Conn, smpp.Status) {
	t.Helper()
	return rawBindAs(t, sim, systemID, password, pdu.Transmitter)
}

// rawBindAs is rawBind with a bind type.
func rawBindAs(t testing.TB, sim *smpptest.SMSC, systemID, password string, bt pdu.BindingType) (net.Conn, smpp.Status) {
	t.Helper()
	conn, err := net.Dial("tcp", sim.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := pdu.NewBindRequest(bt)
	r.SystemID, r.Password = systemID, password
	b := pdu.NewBuffer(nil)
	r.Marshal(b)
	if _, err := conn.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	h := readPDU(t, conn, make([]byte, 256))
	_ = conn.SetReadDeadline(time.Time{})
	return conn, h.Status
}

func readPDU(t testing.TB, conn io.Reader, buf []byte) smpp.Header {
	if _, err := io.ReadFull(conn, buf[:smpp.HeaderLen]); err != nil {
		t.Fatal(err)
	}
	h := smpp.ParseHeader(buf)
	if _, err := io.ReadFull(conn, buf[smpp.HeaderLen:h.Length]); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestBindChecks(t *testing.T) {
	sim := start(t, smpptest.Config{SystemID: "acct", Password: "pw"})
	for _, tt := range []struct {
		id, pw string
		reject bool
		want   smpp.Status
	}{
		{"acct", "pw", false, smpp.StatusOK},
		{"acct", "wrong", false, smpp.StatusBindFail},
		{"other", "pw", false, smpp.StatusBindFail},
		{"acct", "pw", true, smpp.StatusBindFail},
	} {
		sim.SetFaults(smpptest.Faults{RejectBind: tt.reject})
		if _, st := rawBind(t, sim, tt.id, tt.pw); st != tt.want {
			t.Errorf("bind %s/%s reject=%v: %v, want %v", tt.id, tt.pw, tt.reject, st, tt.want)
		}
	}
}

func TestCloseDiscardsPendingWork(t *testing.T) {
	sim, err := smpptest.Start(smpptest.Config{ReceiptDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, sim, "smppd", "smppd", smpp.Transceiver)
	c.submit(t, 1) // schedules a receipt an hour away
	sim.SetFaults(smpptest.Faults{Delay: time.Hour})
	w := make(waiter, 1)
	if err := c.Submit(smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 0, &smpp.Submit{DstAddr: []byte("1")}), w); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delayed submit to arrive", func() bool { return sim.Count() == 2 })
	closed := make(chan struct{})
	go func() { sim.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		t.Fatal("Close waited for delayed work")
	}
	select {
	case o := <-w:
		if !errors.Is(o.Err, smpp.ErrLinkLost) {
			t.Fatalf("delayed submit at Close: %+v, want ErrLinkLost", o)
		}
	case <-time.After(waitTimeout):
		t.Fatal("client did not notice the closed simulator")
	}
}

// pipeline writes n submits (from one pre-built PDU), at most window unanswered, and reads n
// responses over a raw bound conn, as an ESME honouring its window does.
func pipeline(t testing.TB, conn net.Conn, r *bufio.Reader, submit []byte, n int, batch []byte, rbuf []byte) {
	const window = 1000
	credit := make(chan int, n/100+window) // responses read, returned to the writer in lumps
	go func() {
		avail := window
		for sent := 0; sent < n; {
			for avail < len(batch)/len(submit) && avail < n-sent {
				avail += <-credit
			}
			k := min(len(batch)/len(submit), n-sent)
			if _, err := conn.Write(batch[:k*len(submit)]); err != nil {
				return
			}
			sent, avail = sent+k, avail-k
		}
	}()
	for i := 1; i <= n; i++ {
		if h := readPDU(t, r, rbuf); h.Status != smpp.StatusOK {
			t.Fatalf("submit_sm_resp %v", h.Status)
		}
		if i%100 == 0 {
			credit <- 100
		}
	}
}

func batchOf(submit []byte, k int) []byte {
	var b []byte
	for i := 0; i < k; i++ {
		b = append(b, submit...)
	}
	return b
}

// TestHotPathAllocs: without faults, recording or receipts, answering a submit allocates nothing
// on the simulator side (nor in smpp.Server's read/parse/respond path).
func TestHotPathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation count")
	}
	sim := start(t, smpptest.Config{})
	conn, st := rawBind(t, sim, "smppd", "smppd")
	if st != smpp.StatusOK {
		t.Fatal(st)
	}
	submit := smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &smpp.Submit{SrcAddr: []byte("1"), DstAddr: []byte("2"), ShortMessage: []byte("hi")})
	batch, rbuf, r := batchOf(submit, 100), make([]byte, 256), bufio.NewReader(conn)
	pipeline(t, conn, r, submit, 1000, batch, rbuf) // warm up buffers
	const perRun = 2000
	allocs := testing.AllocsPerRun(20, func() { pipeline(t, conn, r, submit, perRun, batch, rbuf) })
	// Each run starts one writer goroutine (a few allocations); the rest must be ~0 per message.
	t.Logf("%.1f allocations per run of %d submits", allocs, perRun)
	if perMsg := allocs / perRun; perMsg > 0.01 {
		t.Fatalf("%.1f allocations per run of %d submits (%.3f per submit)", allocs, perRun, perMsg)
	}
}

func BenchmarkSubmit(b *testing.B) {
	sim := start(b, smpptest.Config{})
	conn, st := rawBind(b, sim, "smppd", "smppd")
	if st != smpp.StatusOK {
		b.Fatal(st)
	}
	submit := smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &smpp.Submit{SrcAddr: []byte("1"), DstAddr: []byte("2"), ShortMessage: []byte("hi")})
	batch, rbuf, r := batchOf(submit, 100), make([]byte, 256), bufio.NewReader(conn)
	b.ReportAllocs()
	b.ResetTimer()
	pipeline(b, conn, r, submit, b.N, batch, rbuf)
}
