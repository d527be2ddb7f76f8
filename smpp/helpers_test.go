package smpp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/pdu"
)

const waitTimeout = 5 * time.Second // generous bound for anything a test waits on

var discard = slog.New(slog.DiscardHandler)

// testLogger logs at debug level when SMPP_TEST_LOG is set, else discards.
func testLogger() *slog.Logger {
	if os.Getenv("SMPP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return discard
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testHandler answers submits OK with id "m<seq>" at once, or holds them when hold is set.
type testHandler struct {
	hold bool
	got  chan uint32 // every submit's seq, in order

	mu   sync.Mutex
	held []heldSubmit
}

type heldSubmit struct {
	s   *Session
	seq uint32
}

func newTestHandler(hold bool) *testHandler {
	return &testHandler{hold: hold, got: make(chan uint32, 10000)}
}

func (h *testHandler) Submit(s *Session, r *Request) {
	h.got <- r.Seq
	if h.hold {
		h.mu.Lock()
		h.held = append(h.held, heldSubmit{s, r.Seq})
		h.mu.Unlock()
		return
	}
	s.Respond(r.Seq, StatusOK, []byte("m"+strconv.FormatUint(uint64(r.Seq), 10)))
}
func (h *testHandler) Bound(*Session)   {}
func (h *testHandler) Unbound(*Session) {}

// waitSubmits waits until n more submits have reached the handler.
func (h *testHandler) waitSubmits(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-h.got:
		case <-time.After(waitTimeout):
			t.Fatalf("handler got %d submits, want %d", i, n)
		}
	}
}

// answer responds to the held submit seq with status; it reports Respond's result.
func (h *testHandler) answer(seq uint32, st Status) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range h.held {
		if x.seq == seq {
			return x.s.Respond(seq, st, []byte("m"+strconv.FormatUint(uint64(seq), 10)))
		}
	}
	return false
}

func testAccount() *Account {
	return &Account{SystemID: "esme", Password: PlainPassword("secret"), MaxBinds: 10, Window: 100}
}

func testServerConfig() ServerConfig {
	c := DefaultServerConfig()
	c.Logger = testLogger()
	return c
}

// startServer serves on 127.0.0.1:0 until the test ends. Tests close their connections first
// (cleanups run last-in first-out), so the final Shutdown is quick.
func startServer(t *testing.T, cfg ServerConfig, h Handler, accts ...*Account) (*Server, string) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv := NewServer(cfg, h)
	srv.SetAccounts(accts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String()
}

// rawConn is a hand-driven ESME connection: PDUs are written and read byte for byte.
type rawConn struct {
	t *testing.T
	net.Conn
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t, c}
}

func (c *rawConn) send(b []byte) {
	c.t.Helper()
	if _, err := c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rawConn) sendPDU(id CommandID, seq uint32, body []byte) {
	c.t.Helper()
	c.send(AppendPDU(nil, id, StatusOK, seq, body))
}

// readPDU reads one whole PDU within waitTimeout.
func (c *rawConn) readPDU() (Header, []byte) {
	c.t.Helper()
	h, body, err := c.tryRead(waitTimeout)
	if err != nil {
		c.t.Fatalf("read PDU: %v", err)
	}
	return h, body
}

func (c *rawConn) tryRead(timeout time.Duration) (Header, []byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	var hb [HeaderLen]byte
	if _, err := io.ReadFull(c, hb[:]); err != nil {
		return Header{}, nil, err
	}
	h := ParseHeader(hb[:])
	if h.Length < HeaderLen || h.Length > 1<<20 {
		return h, nil, errors.New("bad command_length from server")
	}
	body := make([]byte, h.Length-HeaderLen)
	_, err := io.ReadFull(c, body)
	return h, body, err
}

// expect reads one PDU and checks its command id, status and sequence number.
func (c *rawConn) expect(id CommandID, st Status, seq uint32) []byte {
	c.t.Helper()
	h, body := c.readPDU()
	if h.ID != id || h.Status != st || h.Seq != seq {
		c.t.Fatalf("got %v %v seq %d, want %v %v seq %d", h.ID, h.Status, h.Seq, id, st, seq)
	}
	return body
}

// expectClosed asserts the server closes the connection (EOF or reset) within waitTimeout,
// without sending anything first.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	h, _, err := c.tryRead(waitTimeout)
	var ne net.Error
	switch {
	case err == nil:
		c.t.Fatalf("got %v seq %d, want the connection closed", h.ID, h.Seq)
	case errors.As(err, &ne) && ne.Timeout():
		c.t.Fatalf("connection still open after %v", waitTimeout)
	}
}

func bindPDU(bt pdu.BindingType, systemID, password string, version byte, seq int32) []byte {
	r := pdu.NewBindRequest(bt)
	r.SystemID, r.Password, r.InterfaceVersion = systemID, password, version
	r.SetSequenceNumber(seq)
	b := pdu.NewBuffer(nil)
	r.Marshal(b)
	return b.Bytes()
}

// bind binds as a transmitter ("esme"/"secret") and expects success.
func (c *rawConn) bind(bt pdu.BindingType) {
	c.t.Helper()
	c.send(bindPDU(bt, "esme", "secret", 0x34, 1))
	h, _ := c.readPDU()
	if h.Status != StatusOK || !IsResponse(h.ID) || h.Seq != 1 {
		c.t.Fatalf("bind: got %v %v seq %d", h.ID, h.Status, h.Seq)
	}
}

func submitPDU(seq uint32, dst string) []byte {
	return AppendSubmitPDU(nil, SubmitSM, seq, &Submit{SrcAddr: []byte("12345"), DstTON: 1, DstNPI: 1,
		DstAddr: []byte(dst), ShortMessage: []byte("hello")})
}
