package smpp

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/pdu"
)

// boundHandler is a testHandler that hands every bound session to the test, and optionally runs
// onBound inside Bound.
type boundHandler struct {
	*testHandler
	bound   chan *Session
	onBound func(*Session)
}

func newBoundHandler() *boundHandler {
	return &boundHandler{testHandler: newTestHandler(false), bound: make(chan *Session, 16)}
}

func (h *boundHandler) Bound(s *Session) {
	if h.onBound != nil {
		h.onBound(s)
	}
	h.bound <- s
}

func (h *boundHandler) next(t *testing.T) *Session {
	t.Helper()
	select {
	case s := <-h.bound:
		return s
	case <-time.After(waitTimeout):
		t.Fatal("no session bound")
		return nil
	}
}

// answer is one RequestDone call.
type answer struct {
	status Status
	err    error
}

// doneProbe is a RequestDone that counts its calls and delivers them on c.
type doneProbe struct {
	calls atomic.Int32
	c     chan answer
}

func newProbe() *doneProbe { return &doneProbe{c: make(chan answer, 4)} }

func (p *doneProbe) done(st Status, err error) {
	p.calls.Add(1)
	p.c <- answer{st, err}
}

func (p *doneProbe) wait(t *testing.T) answer {
	t.Helper()
	select {
	case a := <-p.c:
		return a
	case <-time.After(waitTimeout):
		t.Fatal("RequestDone not called")
		return answer{}
	}
}

// receiverSession binds a raw connection as bt and returns it with its server-side session.
func receiverSession(t *testing.T, cfg ServerConfig, bt pdu.BindingType) (*rawConn, *Session) {
	t.Helper()
	h := newBoundHandler()
	_, addr := startServer(t, cfg, h, testAccount())
	c := dialRaw(t, addr)
	c.bind(bt)
	return c, h.next(t)
}

// sync makes sure the server's read loop has handled everything c sent before: the enquire_link
// answer comes after it.
func (c *rawConn) sync(seq uint32) {
	c.t.Helper()
	c.sendPDU(EnquireLink, seq, nil)
	c.expect(EnquireLinkResp, StatusOK, seq)
}

func TestRequestAnswer(t *testing.T) {
	for _, tt := range []struct {
		name   string
		respID CommandID
		status Status
		want   Status
	}{
		{"deliver_sm_resp ok", DeliverSMResp, StatusOK, StatusOK},
		{"deliver_sm_resp error", DeliverSMResp, StatusTempAppErr, StatusTempAppErr},
		{"generic_nack", GenericNack, StatusInvCmdID, StatusInvCmdID},
		{"generic_nack with ESME_ROK", GenericNack, StatusOK, StatusSysErr},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, sess := receiverSession(t, testServerConfig(), pdu.Receiver)
			p := newProbe()
			body := []byte("deliver body")
			if err := sess.Request(DeliverSM, body, p.done); err != nil {
				t.Fatal(err)
			}
			body[0] = 'X' // copied: the PDU on the wire is unaffected
			if sess.Outstanding() != 1 {
				t.Fatalf("Outstanding = %d, want 1", sess.Outstanding())
			}
			h, got := c.readPDU()
			if h.ID != DeliverSM || !bytes.Equal(got, []byte("deliver body")) {
				t.Fatalf("got %v %q, want deliver_sm with the body", h.ID, got)
			}
			c.send(AppendPDU(nil, tt.respID, tt.status, h.Seq, nil))
			if a := p.wait(t); a.status != tt.want || a.err != nil {
				t.Fatalf("done(%v, %v), want (%v, nil)", a.status, a.err, tt.want)
			}
			c.send(AppendPDU(nil, tt.respID, tt.status, h.Seq, nil)) // a repeated answer: ignored
			c.sync(99)
			if n := p.calls.Load(); n != 1 || sess.Outstanding() != 0 {
				t.Fatalf("done called %d times, Outstanding %d; want 1 and 0", n, sess.Outstanding())
			}
		})
	}
}

func TestRequestUnknownSeqIgnored(t *testing.T) {
	c, sess := receiverSession(t, testServerConfig(), pdu.Transceiver)
	p := newProbe()
	if err := sess.Request(DeliverSM, nil, p.done); err != nil {
		t.Fatal(err)
	}
	h, _ := c.readPDU()
	c.sendPDU(DeliverSMResp, h.Seq+1000, nil) // nothing we sent
	c.sendPDU(SubmitSMResp, h.Seq, []byte{0}) // our seq, but not the answer to a deliver_sm
	c.sendPDU(EnquireLinkResp, h.Seq, nil)    // likewise
	c.sync(50)
	if n := p.calls.Load(); n != 0 || sess.Outstanding() != 1 {
		t.Fatalf("after stray answers: done called %d times, Outstanding %d; want 0 and 1", n, sess.Outstanding())
	}
	c.sendPDU(DeliverSMResp, h.Seq, nil)
	if a := p.wait(t); a.status != StatusOK || a.err != nil {
		t.Fatalf("done(%v, %v)", a.status, a.err)
	}
}

func TestRequestWindowFull(t *testing.T) {
	cfg := testServerConfig()
	cfg.OutboundWindow = 2
	c, sess := receiverSession(t, cfg, pdu.Receiver)
	p1, p2, p3 := newProbe(), newProbe(), newProbe()
	for _, p := range []*doneProbe{p1, p2} {
		if err := sess.Request(DeliverSM, nil, p.done); err != nil {
			t.Fatal(err)
		}
	}
	if err := sess.Request(DeliverSM, nil, p3.done); !errors.Is(err, ErrWindowFull) {
		t.Fatalf("third Request = %v, want ErrWindowFull", err)
	}
	h1, _ := c.readPDU()
	h2, _ := c.readPDU()
	c.sendPDU(DeliverSMResp, h1.Seq, nil)
	p1.wait(t)
	if err := sess.Request(DeliverSM, nil, p3.done); err != nil {
		t.Fatalf("Request after an answer freed the window: %v", err)
	}
	h3, _ := c.readPDU()
	if h3.ID != DeliverSM || h3.Seq == h1.Seq || h3.Seq == h2.Seq {
		t.Fatalf("got %v seq %d, want a deliver_sm with a fresh seq (had %d, %d)", h3.ID, h3.Seq, h1.Seq, h2.Seq)
	}
	c.sendPDU(DeliverSMResp, h3.Seq, nil)
	c.sendPDU(DeliverSMResp, h2.Seq, nil)
	p3.wait(t)
	p2.wait(t)
	c.sync(60)
	if p3.calls.Load() != 1 { // the refused attempt did not call done
		t.Fatalf("done of the refused-then-sent request called %d times", p3.calls.Load())
	}
}

func TestRequestNotReceiver(t *testing.T) {
	c, sess := receiverSession(t, testServerConfig(), pdu.Transmitter)
	p := newProbe()
	if err := sess.Request(DeliverSM, nil, p.done); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Request on a transmitter = %v, want ErrSessionClosed", err)
	}
	c.sync(2) // nothing was sent: the next PDU is the enquire_link answer
	if p.calls.Load() != 0 {
		t.Fatal("done called for a request that was refused")
	}
}

func TestRequestTimeout(t *testing.T) {
	cfg := testServerConfig()
	cfg.ResponseTimeout = 300 * time.Millisecond
	cfg.EnquireLinkInterval = time.Hour // the read loop blocks for long: the request must still expire
	c, sess := receiverSession(t, cfg, pdu.Receiver)
	c.sync(2) // the read loop is idle now, blocked in a read
	p, later := newProbe(), newProbe()
	start := time.Now()
	if err := sess.Request(DeliverSM, nil, p.done); err != nil {
		t.Fatal(err)
	}
	if h, _ := c.readPDU(); h.ID != DeliverSM {
		t.Fatalf("got %v", h.ID)
	}
	a := p.wait(t)
	if elapsed := time.Since(start); !errors.Is(a.err, ErrResponseTimeout) || elapsed < cfg.ResponseTimeout {
		t.Fatalf("done(%v, %v) after %v, want ErrResponseTimeout after at least %v", a.status, a.err, elapsed, cfg.ResponseTimeout)
	}
	c.expectClosed() // an ESME that stops answering is dropped
	select {
	case <-sess.Closed():
	case <-time.After(waitTimeout):
		t.Fatal("session not ended")
	}
	if sess.closeReason() != CloseResponseTimeout {
		t.Fatalf("close reason %v, want response_timeout", sess.closeReason())
	}
	if err := sess.Request(DeliverSM, nil, later.done); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Request on a closed session = %v, want ErrSessionClosed", err)
	}
	if p.calls.Load() != 1 || later.calls.Load() != 0 {
		t.Fatalf("done calls %d and %d, want 1 and 0", p.calls.Load(), later.calls.Load())
	}
}

// TestRequestTimeoutKeepsEnquireLink: the read loop's wake-ups for request deadlines must not
// postpone the idle enquire_link, nor be mistaken for idleness.
func TestRequestTimeoutKeepsEnquireLink(t *testing.T) {
	cfg := testServerConfig()
	cfg.ResponseTimeout = 50 * time.Millisecond // wakes an idle receiver every 50ms
	cfg.EnquireLinkInterval = 400 * time.Millisecond
	c, _ := receiverSession(t, cfg, pdu.Receiver)
	start := time.Now()
	h, _ := c.readPDU()
	if h.ID != EnquireLink {
		t.Fatalf("idle receiver got %v, want enquire_link", h.ID)
	}
	if elapsed := time.Since(start); elapsed < cfg.EnquireLinkInterval-50*time.Millisecond {
		t.Fatalf("enquire_link after %v, before the %v interval", elapsed, cfg.EnquireLinkInterval)
	}
	c.sendPDU(EnquireLinkResp, h.Seq, nil)
	if h2, _ := c.readPDU(); h2.ID != EnquireLink || h2.Seq == h.Seq {
		t.Fatalf("got %v seq %d, want the next enquire_link", h2.ID, h2.Seq)
	}
	c.expectClosed() // the second one unanswered
}

func TestRequestSessionClose(t *testing.T) {
	c, sess := receiverSession(t, testServerConfig(), pdu.Transceiver)
	probes := make([]*doneProbe, 5)
	for i := range probes {
		probes[i] = newProbe()
		if err := sess.Request(DeliverSM, nil, probes[i].done); err != nil {
			t.Fatal(err)
		}
	}
	h, _ := c.readPDU()
	c.sendPDU(DeliverSMResp, h.Seq, nil) // the first is answered, then the ESME goes away
	// Half-close: a full close with the other deliver_sms unread would send a RST, which may
	// discard the answer before the server reads it.
	if err := c.Conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sess.Closed():
	case <-time.After(waitTimeout):
		t.Fatal("session not ended")
	}
	// Every done call happens before Closed is closed.
	for i, p := range probes {
		if p.calls.Load() != 1 {
			t.Fatalf("request %d: done called %d times", i, p.calls.Load())
		}
		a := <-p.c
		if i == 0 && (a.status != StatusOK || a.err != nil) || i > 0 && !errors.Is(a.err, ErrSessionClosed) {
			t.Fatalf("request %d: done(%v, %v)", i, a.status, a.err)
		}
	}
	if sess.Outstanding() != 0 {
		t.Fatalf("Outstanding %d after close", sess.Outstanding())
	}
}

// TestRequestAnswerRacesClose: an answer arriving as the session closes is reported once, either
// as the answer or as ErrSessionClosed, never both.
func TestRequestAnswerRacesClose(t *testing.T) {
	h := newBoundHandler()
	_, addr := startServer(t, testServerConfig(), h, testAccount())
	for i := 0; i < 20; i++ {
		c := dialRaw(t, addr)
		c.bind(pdu.Receiver)
		sess := h.next(t)
		p := newProbe()
		if err := sess.Request(DeliverSM, nil, p.done); err != nil {
			t.Fatal(err)
		}
		hd, _ := c.readPDU()
		answered := make(chan struct{})
		go func() { // the ESME answers while the server closes the session
			defer close(answered)
			_, _ = c.Write(AppendPDU(nil, DeliverSMResp, StatusOK, hd.Seq, nil))
		}()
		sess.close(CloseShutdown)
		<-answered
		select {
		case <-sess.Closed():
		case <-time.After(waitTimeout):
			t.Fatal("session not ended")
		}
		if n := p.calls.Load(); n != 1 {
			t.Fatalf("round %d: done called %d times", i, n)
		}
		if a := <-p.c; a.err != nil && !errors.Is(a.err, ErrSessionClosed) || a.err == nil && a.status != StatusOK {
			t.Fatalf("round %d: done(%v, %v)", i, a.status, a.err)
		}
	}
}

// TestRequestFromBound: a request made in Bound reaches the ESME after the bind_resp.
func TestRequestFromBound(t *testing.T) {
	h := newBoundHandler()
	p := newProbe()
	h.onBound = func(s *Session) {
		if err := s.Request(DeliverSM, []byte("early"), p.done); err != nil {
			t.Errorf("Request in Bound: %v", err)
		}
	}
	_, addr := startServer(t, testServerConfig(), h, testAccount())
	c := dialRaw(t, addr)
	c.bind(pdu.Receiver) // fails unless bind_resp comes first
	hd, body := c.readPDU()
	if hd.ID != DeliverSM || string(body) != "early" {
		t.Fatalf("got %v %q, want the deliver_sm made in Bound", hd.ID, body)
	}
	c.sendPDU(DeliverSMResp, hd.Seq, nil)
	if a := p.wait(t); a.err != nil || a.status != StatusOK {
		t.Fatalf("done(%v, %v)", a.status, a.err)
	}
}

// TestRequestConcurrent: many goroutines Request on one session (waiting for room on a full
// window) while the ESME answers and submits flow the other way.
func TestRequestConcurrent(t *testing.T) {
	cfg := testServerConfig()
	cfg.OutboundWindow = 4
	h := newBoundHandler()
	_, addr := startServer(t, cfg, h, testAccount())
	c := dialRaw(t, addr)
	c.bind(pdu.Transceiver)
	sess := h.next(t)

	const workers, each = 8, 50
	var wg sync.WaitGroup
	var answered, sent, full atomic.Int32
	// freed gets a token per answer; a worker refused for a full window waits for one. When the
	// window is full, answers are on their way, so a waiter always gets a token.
	freed := make(chan struct{}, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				var calls atomic.Int32
				err := sess.Request(DeliverSM, []byte{byte(i)}, func(st Status, err error) {
					if n := calls.Add(1); n != 1 || st != StatusOK || err != nil {
						t.Errorf("done(%v, %v), call %d", st, err, n)
					}
					answered.Add(1)
					freed <- struct{}{}
				})
				switch {
				case err == nil:
					sent.Add(1)
					i++
				case errors.Is(err, ErrWindowFull):
					full.Add(1)
					<-freed
				default:
					t.Errorf("Request: %v", err)
					return
				}
				if n := sess.Outstanding(); n > cfg.OutboundWindow {
					t.Errorf("Outstanding %d over the window %d", n, cfg.OutboundWindow)
				}
			}
		}()
	}
	// The ESME: answers every deliver_sm, each answer followed by a submit of its own.
	seen := map[uint32]bool{}
	submits := 0
	for n := 0; n < workers*each; {
		hd, _ := c.readPDU()
		switch hd.ID {
		case DeliverSM:
			if seen[hd.Seq] {
				t.Fatalf("seq %d used twice", hd.Seq)
			}
			seen[hd.Seq] = true
			n++
			c.send(append(AppendPDU(nil, DeliverSMResp, StatusOK, hd.Seq, nil), submitPDU(uint32(n), "4477")...))
		case SubmitSMResp:
			submits++
		default:
			t.Fatalf("unexpected %v", hd.ID)
		}
	}
	wg.Wait()
	c.sendPDU(EnquireLink, 1<<30, nil)
	for {
		hd, _ := c.readPDU()
		if hd.ID == EnquireLinkResp {
			break
		}
		if hd.ID != SubmitSMResp || hd.Status != StatusOK {
			t.Fatalf("unexpected %v %v", hd.ID, hd.Status)
		}
		submits++
	}
	if answered.Load() != sent.Load() || sent.Load() != workers*each || sess.Outstanding() != 0 || submits != workers*each {
		t.Fatalf("sent %d answered %d outstanding %d submits answered %d, want %d, %d, 0, %d",
			sent.Load(), answered.Load(), sess.Outstanding(), submits, workers*each, workers*each, workers*each)
	}
	t.Logf("%d Requests refused for a full window and retried", full.Load())
}
