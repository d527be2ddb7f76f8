package smpp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/pdu"
)

func TestBind(t *testing.T) {
	okBind := bindPDU(pdu.Transmitter, "esme", "secret", 0x34, 2)
	tests := []struct {
		name   string
		acct   func(*Account)
		bind   []byte
		respID CommandID
		want   Status
		after  func(t *testing.T, c *rawConn)
	}{
		{name: "transmitter", bind: bindPDU(pdu.Transmitter, "esme", "secret", 0x34, 1), respID: BindTransmitterResp},
		{name: "receiver", bind: bindPDU(pdu.Receiver, "esme", "secret", 0x34, 1), respID: BindReceiverResp},
		{name: "transceiver", bind: bindPDU(pdu.Transceiver, "esme", "secret", 0x34, 1), respID: BindTransceiverResp},
		{name: "interface_version 0x50", bind: bindPDU(pdu.Transceiver, "esme", "secret", 0x50, 1), respID: BindTransceiverResp},
		{name: "allowed net", acct: func(a *Account) { a.AllowedNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} },
			bind: bindPDU(pdu.Transmitter, "esme", "secret", 0x34, 1), respID: BindTransmitterResp},
		{name: "wrong password keeps the session", bind: bindPDU(pdu.Transmitter, "esme", "wrong", 0x34, 1),
			respID: BindTransmitterResp, want: StatusBindFail, after: func(t *testing.T, c *rawConn) {
				c.send(okBind)
				c.expect(BindTransmitterResp, StatusOK, 2)
			}},
		{name: "unknown system_id", bind: bindPDU(pdu.Receiver, "nobody", "secret", 0x34, 1),
			respID: BindReceiverResp, want: StatusBindFail, after: func(t *testing.T, c *rawConn) {
				c.send(okBind)
				c.expect(BindTransmitterResp, StatusOK, 2)
			}},
		{name: "ip not allowed closes", acct: func(a *Account) { a.AllowedNets = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} },
			bind: bindPDU(pdu.Transmitter, "esme", "secret", 0x34, 1), respID: BindTransmitterResp, want: StatusBindFail,
			after: func(t *testing.T, c *rawConn) { c.expectClosed() }},
		{name: "malformed bind body", bind: AppendPDU(nil, BindTransmitter, 0, 1, []byte("esme")),
			respID: BindTransmitterResp, want: StatusBindFail},
		{name: "already bound", bind: bindPDU(pdu.Transmitter, "esme", "secret", 0x34, 1), respID: BindTransmitterResp,
			after: func(t *testing.T, c *rawConn) {
				c.send(bindPDU(pdu.Receiver, "esme", "secret", 0x34, 2))
				c.expect(BindReceiverResp, StatusAlreadyBound, 2)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := testAccount()
			if tt.acct != nil {
				tt.acct(a)
			}
			_, addr := startServer(t, testServerConfig(), newTestHandler(false), a)
			c := dialRaw(t, addr)
			c.send(tt.bind)
			body := c.expect(tt.respID, tt.want, 1)
			if tt.want == StatusOK && string(body[:6]) != "smppd\x00" {
				t.Fatalf("bind_resp body %q, want system_id smppd", body)
			}
			if tt.after != nil {
				tt.after(t, c)
			}
		})
	}
}

func TestBindMaxBinds(t *testing.T) {
	a := testAccount()
	a.MaxBinds = 1
	_, addr := startServer(t, testServerConfig(), newTestHandler(false), a)
	c1, c2 := dialRaw(t, addr), dialRaw(t, addr)
	c1.bind(pdu.Transmitter)
	c2.send(bindPDU(pdu.Receiver, "esme", "secret", 0x34, 1))
	c2.expect(BindReceiverResp, StatusBindFail, 1)
	c1.sendPDU(Unbind, 2, nil)
	c1.expect(UnbindResp, StatusOK, 2)
	waitFor(t, "the first bind to be released", func() bool { return a.Binds() == 0 })
	c2.send(bindPDU(pdu.Receiver, "esme", "secret", 0x34, 3))
	c2.expect(BindReceiverResp, StatusOK, 3)
}

func TestSubmitStatus(t *testing.T) {
	_, addr := startServer(t, testServerConfig(), newTestHandler(false), testAccount())
	t.Run("before bind", func(t *testing.T) {
		c := dialRaw(t, addr)
		c.send(submitPDU(5, "4477"))
		c.expect(SubmitSMResp, StatusInvBindStatus, 5)
	})
	t.Run("receiver bind", func(t *testing.T) {
		c := dialRaw(t, addr)
		c.bind(pdu.Receiver)
		c.send(submitPDU(5, "4477"))
		c.expect(SubmitSMResp, StatusInvBindStatus, 5)
	})
	t.Run("malformed body then ok", func(t *testing.T) {
		c := dialRaw(t, addr)
		c.bind(pdu.Transmitter)
		c.send(submitPDU(5, "")) // empty destination_addr
		c.expect(SubmitSMResp, StatusInvDstAddr, 5)
		c.send(AppendPDU(nil, SubmitSM, 0, 6, []byte("\x00\x01\x01123"))) // ends in source_addr
		c.expect(SubmitSMResp, StatusInvSrcAddr, 6)
		c.send(submitPDU(7, "4477"))
		if body := c.expect(SubmitSMResp, StatusOK, 7); string(body) != "m7\x00" {
			t.Fatalf("message_id %q, want m7", body)
		}
	})
}

func TestUnknownCommand(t *testing.T) {
	_, addr := startServer(t, testServerConfig(), newTestHandler(false), testAccount())
	c := dialRaw(t, addr)
	c.bind(pdu.Transceiver)
	c.sendPDU(0x00000099, 7, nil)
	c.expect(GenericNack, StatusInvCmdID, 7)
	c.sendPDU(ResponseID(0x00000099), 8, nil) // a stray response: ignored, never answered
	c.sendPDU(EnquireLink, 9, nil)
	c.expect(EnquireLinkResp, StatusOK, 9)
	c.send(submitPDU(10, "4477"))
	c.expect(SubmitSMResp, StatusOK, 10)
}

func TestBadCommandLength(t *testing.T) {
	cfg := testServerConfig()
	cfg.MaxPDUSize = 4096
	_, addr := startServer(t, cfg, newTestHandler(false), testAccount())
	for _, tt := range []struct {
		name   string
		length uint32
	}{{"8", 8}, {"15", 15}, {"max+1", 4097}, {"2^32-1", 0xFFFFFFFF}} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, addr)
			c.bind(pdu.Transmitter)
			c.send(AppendHeader(nil, Header{Length: tt.length, ID: SubmitSM, Seq: 42}))
			c.expect(GenericNack, StatusInvCmdLen, 42)
			c.expectClosed()
		})
	}
}

func TestWindow(t *testing.T) {
	a := testAccount()
	a.Window = 3
	h := newTestHandler(true)
	_, addr := startServer(t, testServerConfig(), h, a)
	c := dialRaw(t, addr)
	c.bind(pdu.Transmitter)
	var burst []byte
	for seq := uint32(1); seq <= 10; seq++ {
		burst = append(burst, submitPDU(seq, "4477")...)
	}
	c.send(burst)
	seen := map[uint32]int{}
	for i := 0; i < 7; i++ {
		hd, _ := c.readPDU()
		if hd.ID != SubmitSMResp || hd.Status != StatusThrottled || hd.Seq < 4 {
			t.Fatalf("response %d: %v %v seq %d, want ESME_RTHROTTLED for seq 4..10", i, hd.ID, hd.Status, hd.Seq)
		}
		seen[hd.Seq]++
	}
	h.waitSubmits(t, 3)
	c.sendPDU(EnquireLink, 100, nil) // its answer comes next: nothing else was sent meanwhile
	c.expect(EnquireLinkResp, StatusOK, 100)
	for seq := uint32(1); seq <= 3; seq++ {
		if !h.answer(seq, StatusOK) {
			t.Fatalf("Respond(%d) = false for an outstanding submit", seq)
		}
	}
	for i := 0; i < 3; i++ {
		hd, body := c.readPDU()
		if hd.ID != SubmitSMResp || hd.Status != StatusOK || string(body) != "m"+string(rune('0'+hd.Seq))+"\x00" {
			t.Fatalf("got %v %v seq %d body %q", hd.ID, hd.Status, hd.Seq, body)
		}
		seen[hd.Seq]++
	}
	for seq := uint32(1); seq <= 10; seq++ {
		if seen[seq] != 1 {
			t.Errorf("seq %d answered %d times", seq, seen[seq])
		}
	}
	if h.answer(2, StatusOK) {
		t.Fatal("Respond answered seq 2 twice")
	}
	c.sendPDU(EnquireLink, 101, nil)
	c.expect(EnquireLinkResp, StatusOK, 101)
}

func TestThroughputLimit(t *testing.T) {
	a := testAccount()
	a.Limiter = NewLimiter(5) // burst of one
	_, addr := startServer(t, testServerConfig(), newTestHandler(false), a)
	c := dialRaw(t, addr)
	c.bind(pdu.Transmitter)
	var burst []byte
	for seq := uint32(1); seq <= 10; seq++ {
		burst = append(burst, submitPDU(seq, "4477")...)
	}
	start := time.Now()
	c.send(burst)
	ok, throttled := 0, 0
	for i := 0; i < 10; i++ {
		hd, _ := c.readPDU()
		switch hd.Status {
		case StatusOK:
			ok++
		case StatusThrottled:
			throttled++
		default:
			t.Fatalf("seq %d: status %v", hd.Seq, hd.Status)
		}
	}
	// One token to start with, then 5 per second of elapsed time.
	if limit := 1 + int(5*time.Since(start).Seconds()); ok < 1 || ok > limit || throttled != 10-ok {
		t.Fatalf("ok %d throttled %d, want 1..%d ok and the rest throttled", ok, throttled, limit)
	}
}

func TestTimeouts(t *testing.T) {
	cfg := testServerConfig()
	cfg.BindTimeout = 200 * time.Millisecond
	cfg.ReadTimeout = 200 * time.Millisecond
	_, addr := startServer(t, cfg, newTestHandler(false), testAccount())
	t.Run("bind timeout", func(t *testing.T) {
		c := dialRaw(t, addr)
		c.expectClosed()
	})
	t.Run("stall in header", func(t *testing.T) {
		c := dialRaw(t, addr)
		c.bind(pdu.Transmitter)
		c.send(submitPDU(2, "4477")[:10])
		c.expectClosed()
	})
	t.Run("stall in large frame", func(t *testing.T) {
		// Larger than the read buffer: read by the one-off path, which must report a stall too
		// (not an idle link, which would get an enquire_link and a desynchronised stream).
		c := dialRaw(t, addr)
		c.bind(pdu.Transmitter)
		c.send(AppendHeader(nil, Header{Length: readBufSize + 100, ID: SubmitSM, Seq: 2}))
		c.send(make([]byte, 50))
		c.expectClosed()
	})
	t.Run("trickled frame", func(t *testing.T) {
		// Each byte arrives well within ReadTimeout, but the frame as a whole does not: the
		// deadline is per frame, so a slow-loris peer cannot hold it open.
		c := dialRaw(t, addr)
		c.bind(pdu.Transmitter)
		p := submitPDU(2, "4477")
		go func() {
			for i := range p {
				if _, err := c.Write(p[i : i+1]); err != nil {
					return
				}
				time.Sleep(40 * time.Millisecond) // pacing the peer, not synchronisation
			}
		}()
		c.expectClosed()
	})
	t.Run("slow but complete frame", func(t *testing.T) {
		c := dialRaw(t, addr)
		c.bind(pdu.Transmitter)
		p := submitPDU(2, "4477")
		c.send(p[:10])
		c.send(p[10:])
		c.expect(SubmitSMResp, StatusOK, 2)
	})
}

func TestEnquireLink(t *testing.T) {
	cfg := testServerConfig()
	cfg.EnquireLinkInterval = 100 * time.Millisecond
	cfg.ResponseTimeout = 300 * time.Millisecond
	_, addr := startServer(t, cfg, newTestHandler(false), testAccount())
	c := dialRaw(t, addr)
	c.bind(pdu.Transceiver)
	h, _ := c.readPDU()
	if h.ID != EnquireLink {
		t.Fatalf("idle session got %v, want enquire_link", h.ID)
	}
	c.sendPDU(EnquireLinkResp, h.Seq, nil)
	h2, _ := c.readPDU()
	if h2.ID != EnquireLink || h2.Seq == h.Seq {
		t.Fatalf("got %v seq %d, want a second enquire_link (first was seq %d)", h2.ID, h2.Seq, h.Seq)
	}
	c.expectClosed() // unanswered
}

func TestUnbind(t *testing.T) {
	srv, addr := startServer(t, testServerConfig(), newTestHandler(false), testAccount())
	c := dialRaw(t, addr)
	c.sendPDU(Unbind, 1, nil)
	c.expect(UnbindResp, StatusInvBindStatus, 1) // not bound yet
	c.bind(pdu.Transceiver)
	c.sendPDU(Unbind, 2, nil)
	c.expect(UnbindResp, StatusOK, 2)
	c.expectClosed()
	waitFor(t, "the session to end", func() bool { return srv.SessionCount() == 0 })
}

func TestBadSessionIsolation(t *testing.T) {
	_, addr := startServer(t, testServerConfig(), newTestHandler(false), testAccount())
	good := dialRaw(t, addr)
	good.bind(pdu.Transmitter)
	const n = 500
	wrote := make(chan error, 1)
	go func() {
		var err error
		for seq := uint32(1); seq <= n && err == nil; seq++ {
			_, err = good.Write(submitPDU(seq, "4477"))
		}
		wrote <- err
	}()
	for _, garbage := range [][]byte{
		AppendHeader(nil, Header{Length: 0x7FFFFFFF, ID: SubmitSM, Seq: 1}),
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
	} {
		bad := dialRaw(t, addr)
		bad.bind(pdu.Transmitter)
		bad.send(garbage)
		h, _ := bad.readPDU()
		if h.ID != GenericNack || h.Status != StatusInvCmdLen {
			t.Fatalf("garbage got %v %v", h.ID, h.Status)
		}
		bad.expectClosed()
	}
	seen := map[uint32]bool{}
	for i := 0; i < n; i++ {
		h, _ := good.readPDU()
		if h.ID != SubmitSMResp || h.Status != StatusOK || seen[h.Seq] {
			t.Fatalf("good session: %v %v seq %d (dup %v)", h.ID, h.Status, h.Seq, seen[h.Seq])
		}
		seen[h.Seq] = true
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

func TestShutdown(t *testing.T) {
	h := newTestHandler(true)
	srv, addr := startServer(t, testServerConfig(), h, testAccount())
	c := dialRaw(t, addr)
	c.bind(pdu.Transmitter)
	for seq := uint32(1); seq <= 3; seq++ {
		c.send(submitPDU(seq, "4477"))
	}
	h.waitSubmits(t, 3)

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	waitFor(t, "draining", srv.draining.Load)
	c.send(submitPDU(4, "4477"))
	c.expect(SubmitSMResp, StatusThrottled, 4)
	if !h.answer(1, StatusOK) { // the handler answers before the deadline
		t.Fatal("Respond(1) = false during drain")
	}
	want := map[uint32]Status{1: StatusOK, 2: StatusSysErr, 3: StatusSysErr}
	for len(want) > 0 {
		hd, _ := c.readPDU()
		st, ok := want[hd.Seq]
		if hd.ID != SubmitSMResp || !ok || hd.Status != st {
			t.Fatalf("got %v %v seq %d; still expecting %v", hd.ID, hd.Status, hd.Seq, want)
		}
		delete(want, hd.Seq)
	}
	if h.answer(2, StatusOK) {
		t.Fatal("a submit answered at the deadline was answered again")
	}
	hd, _ := c.readPDU()
	if hd.ID != Unbind {
		t.Fatalf("got %v, want unbind", hd.ID)
	}
	c.sendPDU(UnbindResp, hd.Seq, nil)
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want the context's deadline error", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Shutdown did not return")
	}
	c.expectClosed()
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("listener still accepting after Shutdown")
	}
}

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smppd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// chanWaiter delivers submit outcomes on a channel.
type chanWaiter chan outcome

type outcome struct {
	status Status
	id     string
	err    error
}

func (w chanWaiter) SubmitDone(_ *Batch, st Status, id []byte, err error) {
	w <- outcome{st, string(id), err}
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	srv := NewServer(testServerConfig(), newTestHandler(false))
	srv.SetAccounts([]*Account{testAccount()})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		wg.Wait()
	}()

	cc := DefaultClientConfig()
	cc.Addr, cc.SystemID, cc.Password, cc.Window, cc.Logger = ln.Addr().String(), "esme", "secret", 10, testLogger()
	cc.TLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	cl := NewClient(cc)
	cl.Start()
	defer cl.Close(context.Background())
	waitFor(t, "TLS bind", cl.Bound)
	w := make(chanWaiter, 1)
	if err := cl.Submit(submitPDU(0, "4477"), w); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-w:
		if o.err != nil || o.status != StatusOK || o.id == "" {
			t.Fatalf("submit over TLS: %+v", o)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no submit_sm_resp over TLS")
	}

	old, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1",
		MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		old.Close()
		t.Fatal("a TLS 1.1 handshake succeeded against MinVersion TLS 1.2")
	}
}
