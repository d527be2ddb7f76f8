package smpp_test

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"

	fsmpp "github.com/fiorix/go-smpp/smpp"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutext"
	"github.com/linxGnu/gosmpp"
	"github.com/linxGnu/gosmpp/data"
	gpdu "github.com/linxGnu/gosmpp/pdu"

	"github.com/smppd/smppd/smpp"
)

// recorder answers every submit ESME_ROK with id "ix<n>" and keeps what it saw.
type recorder struct {
	mu   sync.Mutex
	subs []seen
}

type seen struct {
	id, dst    string
	dataCoding byte
	text       []byte // payload, UDH included
	concat     smpp.Concat
	isConcat   bool
}

func (r *recorder) Submit(s *smpp.Session, req *smpp.Request) {
	r.mu.Lock()
	id := "ix" + strconv.Itoa(len(r.subs)+1)
	c, ok := req.Submit.Concat()
	r.subs = append(r.subs, seen{id: id, dst: string(req.Submit.DstAddr), dataCoding: req.Submit.DataCoding,
		text: append([]byte(nil), req.Submit.Payload()...), concat: c, isConcat: ok})
	r.mu.Unlock()
	s.Respond(req.Seq, smpp.StatusOK, []byte(id))
}
func (r *recorder) Bound(*smpp.Session)   {}
func (r *recorder) Unbound(*smpp.Session) {}

func (r *recorder) byID(t *testing.T, id string) seen {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.subs {
		if s.id == id {
			return s
		}
	}
	t.Fatalf("no submit answered with id %q", id)
	return seen{}
}

func startInteropServer(t *testing.T) (*recorder, string) {
	t.Helper()
	rec := &recorder{}
	cfg := smpp.DefaultServerConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv := smpp.NewServer(cfg, rec)
	srv.SetAccounts([]*smpp.Account{{SystemID: "esme", Password: smpp.PlainPassword("secret"), MaxBinds: 4, Window: 10}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
	})
	return rec, ln.Addr().String()
}

func ucs2(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return b
}

// TestInteropFiorix: github.com/fiorix/go-smpp's Transceiver as the ESME.
func TestInteropFiorix(t *testing.T) {
	rec, addr := startInteropServer(t)
	tx := &fsmpp.Transceiver{Addr: addr, User: "esme", Passwd: "secret", RespTimeout: waitTimeout}
	select {
	case st := <-tx.Bind():
		if st.Status() != fsmpp.Connected {
			t.Fatalf("fiorix bind: %v %v", st.Status(), st.Error())
		}
	case <-time.After(waitTimeout):
		t.Fatal("fiorix bind: no status")
	}
	defer tx.Close()

	sm, err := tx.Submit(&fsmpp.ShortMessage{Src: "Brand", Dst: "447700900001", Text: pdutext.GSM7("Hello from fiorix")})
	if err != nil {
		t.Fatalf("GSM7 submit: %v", err)
	}
	if s := rec.byID(t, sm.RespID()); s.dataCoding != 0 || string(s.text) != "Hello from fiorix" || s.dst != "447700900001" {
		t.Fatalf("GSM7 submit seen as %+v", s)
	}

	const cyr = "Привет, мир ☺"
	sm, err = tx.Submit(&fsmpp.ShortMessage{Src: "Brand", Dst: "447700900002", Text: pdutext.UCS2(cyr)})
	if err != nil {
		t.Fatalf("UCS2 submit: %v", err)
	}
	if s := rec.byID(t, sm.RespID()); s.dataCoding != 8 || string(s.text) != string(ucs2(cyr)) {
		t.Fatalf("UCS2 submit seen as dc %d text %x", s.dataCoding, s.text)
	}

	long := strings.Repeat("The quick brown fox jumps over the lazy dog ", 9) // 396 characters: 3 parts of <= 152
	parts, err := tx.SubmitLongMsg(&fsmpp.ShortMessage{Src: "Brand", Dst: "447700900003", Text: pdutext.GSM7(long)})
	if err != nil {
		t.Fatalf("long submit: %v", err)
	}
	if len(parts) != 3 {
		t.Fatalf("long message in %d parts, want 3", len(parts))
	}
	var joined []byte
	var ref uint16
	for i := range parts {
		s := rec.byID(t, parts[i].RespID())
		if !s.isConcat || s.concat.Total != 3 || int(s.concat.Seq) != i+1 || i > 0 && s.concat.Ref != ref {
			t.Fatalf("part %d: concat %+v (ok %v)", i+1, s.concat, s.isConcat)
		}
		ref = s.concat.Ref
		joined = append(joined, s.text[1+int(s.text[0]):]...) // strip the UDH
	}
	if string(joined) != long {
		t.Fatalf("reassembled long message differs:\n got %q\nwant %q", joined, long)
	}
}

// TestInteropGosmpp: github.com/linxGnu/gosmpp's Session as the ESME.
func TestInteropGosmpp(t *testing.T) {
	rec, addr := startInteropServer(t)
	resps := make(chan *gpdu.SubmitSMResp, 2)
	sess, err := gosmpp.NewSession(
		gosmpp.TXConnector(gosmpp.NonTLSDialer, gosmpp.Auth{SMSC: addr, SystemID: "esme", Password: "secret"}),
		gosmpp.Settings{ReadTimeout: 10 * time.Second, WriteTimeout: waitTimeout,
			OnPDU: func(p gpdu.PDU, _ bool) {
				if r, ok := p.(*gpdu.SubmitSMResp); ok {
					resps <- r
				}
			}}, 0)
	if err != nil {
		t.Fatalf("gosmpp bind: %v", err)
	}
	defer sess.Close()

	sent := map[int32]string{} // seq -> text
	for _, m := range []struct {
		text string
		enc  data.Encoding
	}{{"hello from gosmpp", data.GSM7BIT}, {"Grüße, 世界", data.UCS2}} {
		p := gpdu.NewSubmitSM().(*gpdu.SubmitSM)
		p.SourceAddr = gpdu.NewAddressWithTonNpi(5, 0)
		_ = p.SourceAddr.SetAddress("Brand")
		p.DestAddr = gpdu.NewAddressWithTonNpi(1, 1)
		_ = p.DestAddr.SetAddress("447700900009")
		if err := p.Message.SetMessageWithEncoding(m.text, m.enc); err != nil {
			t.Fatal(err)
		}
		sent[p.GetSequenceNumber()] = m.text
		if err := sess.Transmitter().Submit(p); err != nil {
			t.Fatalf("gosmpp submit: %v", err)
		}
	}
	for range 2 {
		select {
		case r := <-resps:
			text, ok := sent[r.GetSequenceNumber()]
			if !ok || r.CommandStatus != data.ESME_ROK || !strings.HasPrefix(r.MessageID, "ix") {
				t.Fatalf("submit_sm_resp seq %d status %v id %q", r.GetSequenceNumber(), r.CommandStatus, r.MessageID)
			}
			delete(sent, r.GetSequenceNumber())
			s := rec.byID(t, r.MessageID)
			want := []byte(text)
			if s.dataCoding == 8 {
				want = ucs2(text)
			}
			if string(s.text) != string(want) || s.dst != "447700900009" {
				t.Fatalf("%q seen as dc %d text %x dst %s", text, s.dataCoding, s.text, s.dst)
			}
		case <-time.After(waitTimeout):
			t.Fatal("gosmpp: submit_sm_resp missing")
		}
	}
}
