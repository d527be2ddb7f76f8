package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

var ourID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// stripSeq returns pdu with its sequence number zeroed, for comparisons.
func stripSeq(pdu []byte) []byte {
	p := append([]byte(nil), pdu...)
	copy(p[12:16], []byte{0, 0, 0, 0})
	return p
}

// TestForwardByteIdentical: every kind of message (GSM7, UCS2 Chinese and emoji, UDH 8/16-bit,
// SAR TLVs, message_payload, extra TLVs) is accepted with an smppd id and reaches the SMSC with
// every byte as sent but the sequence number.
func TestForwardByteIdentical(t *testing.T) {
	sim := startSim(t, smpptest.Config{Record: true})
	n := startNode(t, sim, nil)
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)

	ucs2 := []byte{0x9a, 0x8c, 0x8b, 0xc1, 0x78, 0x01, 0xd8, 0x3d, 0xde, 0x00} // 验证码 + 😀
	var pdus [][]byte
	add := func(s smpp.Submit) { pdus = append(pdus, smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 7, &s)) }
	base := smpp.Submit{SrcTON: 5, SrcAddr: []byte("Bank"), DstTON: 1, DstNPI: 1, DstAddr: []byte("4915112345678"),
		RegisteredDelivery: 1, ServiceType: []byte("CMT"), ValidityPeriod: []byte("000001000000000R")}
	s := base
	s.ShortMessage = []byte(strings.Repeat("x", 160))
	add(s)
	s = base
	s.DataCoding, s.ShortMessage = 0x08, ucs2
	add(s)
	for i := byte(1); i <= 2; i++ { // UDH IE 0x00, 8-bit ref; 153 septets unpacked + 6 = 159 octets
		s = base
		s.ESMClass, s.ShortMessage = 0x40, append([]byte{5, 0, 3, 0x42, 2, i}, bytes.Repeat([]byte{'a' + i}, 153)...)
		add(s)
	}
	for i := byte(1); i <= 2; i++ { // UDH IE 0x08, 16-bit ref
		s = base
		s.ESMClass, s.DataCoding = 0x40, 0x08
		s.ShortMessage = append([]byte{6, 8, 4, 0x12, 0x34, 2, i}, ucs2...)
		add(s)
	}
	for i := byte(1); i <= 2; i++ { // SAR TLVs, no UDH
		s = base
		s.ShortMessage = []byte(fmt.Sprintf("sar part %d", i))
		s.TLVs = smpp.AppendTLV(smpp.AppendTLV(smpp.AppendTLV(nil, smpp.TagSarMsgRefNum, []byte{0xAB, 0xCD}),
			smpp.TagSarTotalSegments, []byte{2}), smpp.TagSarSegmentSeqnum, []byte{i})
		add(s)
	}
	s = base
	s.TLVs = smpp.AppendTLV(smpp.AppendTLV(nil, 0x0204, []byte{0, 9}), smpp.TagMessagePayload, bytes.Repeat([]byte("p"), 600))
	add(s)

	ids := map[string]bool{}
	for i, p := range pdus {
		r := e.submit(p)
		if r.Err != nil || r.Status != smpp.StatusOK || !ourID.MatchString(r.ID) || ids[r.ID] {
			t.Fatalf("pdu %d: status %v id %q err %v (want ESME_ROK, a fresh 16-hex-digit id)", i, r.Status, r.ID, r.Err)
		}
		ids[r.ID] = true
	}
	got := sim.Received()
	if len(got) != len(pdus) {
		t.Fatalf("SMSC received %d PDUs, want %d", len(got), len(pdus))
	}
	for i := range pdus {
		if !bytes.Equal(stripSeq(got[i]), stripSeq(pdus[i])) {
			t.Errorf("pdu %d altered on the way:\n sent %x\n got  %x", i, stripSeq(pdus[i]), stripSeq(got[i]))
		}
	}
	// Each id maps to a distinct upstream id.
	upIDs := map[string]bool{}
	for id := range ids {
		code, body := httpGet(t, n, "/api/v1/messages/"+id)
		var m struct {
			Upstream   string `json:"upstream"`
			UpstreamID string `json:"upstream_message_id"`
			NodeID     int    `json:"node_id"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &m) != nil || m.Upstream != "sim" || m.UpstreamID == "" || m.NodeID != 1 {
			t.Fatalf("GET /api/v1/messages/%s = %d %s", id, code, body)
		}
		upIDs[m.UpstreamID] = true
	}
	if len(upIDs) != len(ids) {
		t.Fatalf("%d smppd ids map to %d upstream ids", len(ids), len(upIDs))
	}
}

// TestThrottleRetried: upstream ESME_RTHROTTLED / ESME_RMSGQFUL are retried, not passed on.
func TestThrottleRetried(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) { c.Upstreams[0].Binds = 2 })
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	waitFor(t, "both upstream binds", 5*time.Second, func() bool { return sim.Binds() == 2 })

	sim.SetFaults(smpptest.Faults{ThrottleFirst: 3})
	if r := e.submit(gsm("4915112345678", "hi")); r.Status != smpp.StatusOK || r.Err != nil {
		t.Fatalf("got %v %v, want ESME_ROK after retries", r.Status, r.Err)
	}
	if c := sim.Count(); c != 4 {
		t.Fatalf("SMSC saw %d submits, want 4 (3 throttled + 1 accepted)", c)
	}
	sim.SetFaults(smpptest.Faults{Status: smpp.StatusMsgQFull, StatusEvery: 2})
	for i := 0; i < 4; i++ {
		if r := e.submit(gsm("4915112345678", fmt.Sprint("hi ", i))); r.Status != smpp.StatusOK {
			t.Fatalf("msgqfull retry: got %v", r.Status)
		}
	}
	_, metrics := httpGet(t, n, "/metrics")
	for _, want := range []string{`smppd_upstream_retries_total{upstream="sim",status="ESME_RTHROTTLED"} 3`,
		`smppd_submits_total{system_id="demo",upstream="sim",status="ESME_ROK"} 5`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(metrics, `smppd_upstream_retries_total{upstream="sim",status="ESME_RMSGQFUL"}`) {
		t.Error("/metrics lacks the ESME_RMSGQFUL retries")
	}
}

// TestThrottleExhausted: if no bind takes the message within max_wait, the client gets
// ESME_RTHROTTLED; nothing is buffered beyond that.
func TestThrottleExhausted(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) { c.Router.MaxWait = config.Duration(300 * time.Millisecond) })
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	sim.SetFaults(smpptest.Faults{ThrottleEvery: 1})
	start := time.Now()
	if r := e.submit(gsm("4915112345678", "hi")); r.Status != smpp.StatusThrottled {
		t.Fatalf("got %v, want ESME_RTHROTTLED", r.Status)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Fatalf("answered after %s, before max_wait: not retried", time.Since(start))
	}
	if sim.Count() < 2 {
		t.Fatalf("SMSC saw %d submits: no retry happened", sim.Count())
	}
	if sim.Accepted() != 0 {
		t.Fatal("the SMSC accepted something it should not have")
	}
}

// TestUpstreamErrorPassedThrough: a definitive upstream rejection reaches the client as is.
func TestUpstreamErrorPassedThrough(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, nil)
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	sim.SetFaults(smpptest.Faults{Status: 0x45, StatusEvery: 1})
	if r := e.submit(gsm("4915112345678", "hi")); r.Status != 0x45 {
		t.Fatalf("got %v, want ESME_RSUBMITFAIL (0x45)", r.Status)
	}
	if sim.Count() != 1 {
		t.Fatalf("SMSC saw %d submits, want 1 (a rejection is not retried)", sim.Count())
	}
}

// TestInDoubtNeverResent: the upstream link dies before answering; the client gets the in-doubt
// status, the event is counted, and the message is not sent again after reconnecting.
func TestInDoubtNeverResent(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) { c.Upstreams[0].Binds = 1 })
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	waitFor(t, "upstream bind", 5*time.Second, func() bool { return sim.Binds() == 1 })
	sim.SetFaults(smpptest.Faults{DropAfter: 1})
	if r := e.submit(gsm("4915112345678", "hi")); r.Status != smpp.StatusSysErr {
		t.Fatalf("got %v, want ESME_RSYSERR (in doubt)", r.Status)
	}
	sim.SetFaults(smpptest.Faults{})
	waitFor(t, "upstream rebind", 5*time.Second, func() bool { return sim.Binds() == 1 && n.Ready() })
	if r := e.submit(gsm("4915112345678", "after")); r.Status != smpp.StatusOK {
		t.Fatalf("after reconnect: got %v", r.Status)
	}
	if c := sim.Count(); c != 2 {
		t.Fatalf("SMSC saw %d submits, want 2: the in-doubt one must not be resent", c)
	}
	if _, m := httpGet(t, n, "/metrics"); !strings.Contains(m, `smppd_in_doubt_total{upstream="sim"} 1`) {
		t.Error("in-doubt event not counted in /metrics")
	}
}

// TestResponseTimeoutInDoubt: an SMSC that never answers yields the configured in-doubt status.
func TestResponseTimeoutInDoubt(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) {
		c.Upstreams[0].ResponseTimeout = config.Duration(200 * time.Millisecond)
		c.Router.InDoubtStatus = 0x45
	})
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	sim.SetFaults(smpptest.Faults{NoAnswer: true})
	if r := e.submit(gsm("4915112345678", "hi")); r.Status != 0x45 {
		t.Fatalf("got %v, want the configured in_doubt_status 0x45", r.Status)
	}
	if sim.Count() != 1 {
		t.Fatalf("SMSC saw %d submits, want 1", sim.Count())
	}
}

// TestNoUpstreamBound: with the SMSC refusing binds, /readyz is 503 and submits get
// ESME_RTHROTTLED after max_wait.
func TestNoUpstreamBound(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	sim.SetFaults(smpptest.Faults{RejectBind: true})
	n := startNode(t, sim, func(c *config.Config) { c.Router.MaxWait = config.Duration(200 * time.Millisecond) })
	if code, body := httpGet(t, n, "/readyz"); code != 503 || !strings.Contains(body, "upstream") {
		t.Fatalf("/readyz = %d %q, want 503 naming the upstream", code, body)
	}
	if code, _ := httpGet(t, n, "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d, want 200 (alive, just not ready)", code)
	}
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	if r := e.submit(gsm("4915112345678", "hi")); r.Status != smpp.StatusThrottled {
		t.Fatalf("got %v, want ESME_RTHROTTLED", r.Status)
	}
	sim.SetFaults(smpptest.Faults{})
	waitFor(t, "readiness once the SMSC accepts binds", 5*time.Second, n.Ready)
	if code, _ := httpGet(t, n, "/readyz"); code != 200 {
		t.Fatalf("/readyz = %d after binds came up", code)
	}
}

// TestFailover: one bind dies; traffic goes on over the other while it reconnects by itself.
func TestFailover(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) { c.Upstreams[0].Binds = 2 })
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	waitFor(t, "both binds", 5*time.Second, func() bool { return sim.Binds() == 2 })
	sim.SetFaults(smpptest.Faults{DropAfter: 1})
	if r := e.submit(gsm("4915112345678", "dies")); r.Status != smpp.StatusSysErr {
		t.Fatalf("got %v, want in doubt", r.Status)
	}
	sim.SetFaults(smpptest.Faults{})
	var chans []resultCh
	for i := 0; i < 50; i++ {
		chans = append(chans, e.send(gsm("4915112345678", fmt.Sprint("m", i))))
	}
	for i, c := range chans {
		if r := c.Next(t, 15*time.Second); r.Status != smpp.StatusOK {
			t.Fatalf("message %d during failover: %v %v", i, r.Status, r.Err)
		}
	}
	waitFor(t, "the dead bind to reconnect", 5*time.Second, func() bool { return sim.Binds() == 2 })
}

// TestConcatSameBindInOrder: all segments of each concatenated message leave on one upstream
// bind, in order, while single messages spread over the binds.
func TestConcatSameBindInOrder(t *testing.T) {
	t.Run("content off", func(t *testing.T) { testConcatSameBind(t, false) })
	// With the content stage every segment is held until its message is complete, then all are
	// released at once: still one bind per message, every segment answered, none lost.
	t.Run("content on", func(t *testing.T) { testConcatSameBind(t, true) })
}

func testConcatSameBind(t *testing.T, content bool) {
	sim := startSim(t, smpptest.Config{Record: true})
	rules := filepath.Join(t.TempDir(), "spam.rules")
	if err := os.WriteFile(rules, []byte("spam reject free money\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Upstream windows of 8: the policy stays on a bind only within a quarter of its window of the
	// idlest, so 16 submits in flight must spread.
	n := startNode(t, sim, func(c *config.Config) {
		c.Upstreams[0].Binds, c.Upstreams[0].Window = 4, 8
		if content {
			c.Content.RuleFiles, c.Content.Hold = []string{rules}, config.Duration(10*time.Second)
		}
	})
	waitFor(t, "4 binds", 5*time.Second, func() bool { return sim.Binds() == 4 })
	var wg sync.WaitGroup
	const msgs, parts = 20, 4
	for c := 0; c < 2; c++ { // two clients interleave their multipart messages
		e := dialESME(t, n.SMPPAddr(), "demo", "demo", 8)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var chans []resultCh
			for m := 0; m < msgs; m++ {
				for p := 1; p <= parts; p++ {
					s := smpp.Submit{DstTON: 1, DstNPI: 1, DstAddr: []byte(fmt.Sprintf("49151%04d", m)), ESMClass: 0x40,
						ShortMessage: append([]byte{5, 0, 3, byte(c*msgs + m), parts, byte(p)}, byte('a'+c))}
					chans = append(chans, e.send(smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s)))
				}
			}
			for _, ch := range chans {
				if r := ch.Next(t, 15*time.Second); r.Status != smpp.StatusOK {
					t.Errorf("segment: %v", r.Status)
				}
			}
		}()
	}
	wg.Wait()
	type seen struct {
		session uint64
		next    byte
	}
	bySession := map[uint64]bool{}
	msgsSeen := map[byte]*seen{}
	for _, rec := range sim.ReceivedFrom() {
		var s smpp.Submit
		if err := smpp.ParseSubmit(rec.PDU[smpp.HeaderLen:], &s); err != nil {
			t.Fatal(err)
		}
		ref, seq := s.ShortMessage[3], s.ShortMessage[5]
		bySession[rec.Session] = true
		m := msgsSeen[ref]
		if m == nil {
			m = &seen{session: rec.Session, next: 1}
			msgsSeen[ref] = m
		}
		if rec.Session != m.session {
			t.Errorf("message ref %d: segment %d on SMSC session %d, earlier ones on %d", ref, seq, rec.Session, m.session)
		}
		if seq != m.next {
			t.Errorf("message ref %d: segment %d arrived, want %d", ref, seq, m.next)
		}
		m.next = seq + 1
	}
	if len(msgsSeen) != 2*msgs {
		t.Fatalf("SMSC saw %d messages, want %d", len(msgsSeen), 2*msgs)
	}
	if len(bySession) < 2 {
		t.Errorf("all traffic went over %d bind(s) of 4: no balancing", len(bySession))
	}
}

// TestShutdownAnswersEverything: SIGTERM-style shutdown waits for in-flight upstream answers and
// answers every client request exactly once.
func TestShutdownAnswersEverything(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, nil)
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 50)
	sim.SetFaults(smpptest.Faults{Delay: 300 * time.Millisecond})
	var chans []resultCh
	for i := 0; i < 40; i++ {
		chans = append(chans, e.send(gsm("4915112345678", fmt.Sprint("m", i))))
	}
	waitFor(t, "40 submits at the SMSC", 5*time.Second, func() bool { return sim.Count() == 40 })
	done := make(chan error, 1)
	go func() { done <- n.Shutdown(context.Background()) }()
	waitFor(t, "not ready while draining", 5*time.Second, func() bool { return !n.Ready() })
	for i, c := range chans {
		if r := c.Next(t, 15*time.Second); r.Status != smpp.StatusOK || r.Err != nil {
			t.Fatalf("in-flight message %d at shutdown: %v %v, want its real upstream answer", i, r.Status, r.Err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	waitFor(t, "the client to be unbound", 5*time.Second, func() bool { return !e.c.Bound() })
	if sim.Accepted() != 40 {
		t.Fatalf("SMSC accepted %d, want 40", sim.Accepted())
	}
}

// TestWrongRouteConfigRejected: a node refuses to start on a config whose account names no
// upstream, with the field named.
func TestConfigErrorsNameTheField(t *testing.T) {
	cfg := config.Default()
	cfg.Accounts[0].Upstream = "nope"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "accounts[0].upstream") {
		t.Fatalf("Validate = %v, want an error naming accounts[0].upstream", err)
	}
}

// TestUpstreamThroughputLimit: a bind never sends faster than its throughput allows; a message
// that cannot go within max_wait (here shorter than the gap between tokens) gets ESME_RTHROTTLED
// rather than piling up.
func TestUpstreamThroughputLimit(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	const rate = 20
	n := startNode(t, sim, func(c *config.Config) {
		c.Upstreams[0].Binds, c.Upstreams[0].Throughput = 1, rate
		c.Router.MaxWait = config.Duration(20 * time.Millisecond) // tokens come every 50 ms
	})
	waitFor(t, "upstream bind", 5*time.Second, n.Ready)
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 100)
	start := time.Now()
	var chans []resultCh
	for i := 0; i < 60; i++ {
		chans = append(chans, e.send(gsm("4915112345678", fmt.Sprint("m", i))))
	}
	ok, throttled := 0, 0
	for _, c := range chans {
		switch r := c.Next(t, 15*time.Second); r.Status {
		case smpp.StatusOK:
			ok++
		case smpp.StatusThrottled:
			throttled++
		default:
			t.Fatalf("unexpected %v", r.Status)
		}
	}
	elapsed := time.Since(start).Seconds()
	// A burst of rate/10 tokens, then rate per second: the SMSC can have seen no more than that.
	if limit := 2 + rate*elapsed + 1; float64(sim.Count()) > limit {
		t.Fatalf("SMSC got %d submits in %.2fs, more than the %d/s limit allows (%.0f)", sim.Count(), elapsed, rate, limit)
	}
	if ok == 0 || throttled == 0 || ok+throttled != 60 || uint64(ok) != sim.Accepted() {
		t.Fatalf("ok %d throttled %d (SMSC accepted %d): want some of each, all answered", ok, throttled, sim.Accepted())
	}
}

// TestLongMessageAdmittedWhole: a bind's throughput counts segments, and all parts of a long
// message are admitted together: with a limit that would hold the second part back longer than
// max_wait, the message still leaves whole instead of arriving broken.
func TestLongMessageAdmittedWhole(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) {
		c.Upstreams[0].Binds, c.Upstreams[0].Throughput = 1, 10 // a token every 100 ms
		c.Router.MaxWait = config.Duration(20 * time.Millisecond)
	})
	waitFor(t, "upstream bind", 5*time.Second, n.Ready)
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	var chans []resultCh
	for p := byte(1); p <= 3; p++ {
		s := smpp.Submit{DstTON: 1, DstNPI: 1, DstAddr: []byte("4915112345678"), ESMClass: 0x40,
			ShortMessage: append([]byte{5, 0, 3, 0x77, 3, p}, "part"...)}
		chans = append(chans, e.send(smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s)))
	}
	for i, c := range chans {
		if r := c.Next(t, 5*time.Second); r.Status != smpp.StatusOK {
			t.Fatalf("part %d: %v; a long message must not be cut by the segment limit", i+1, r.Status)
		}
	}
	// The parts used up the budget: an ordinary message right after must wait for tokens
	// beyond max_wait and is refused, not sent over the limit.
	if r := e.submit(gsm("4915112345678", "next")); r.Status != smpp.StatusThrottled {
		t.Fatalf("message after the long one: %v, want ESME_RTHROTTLED (budget spent)", r.Status)
	}
}
