package dedup

import (
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

func newStage(t *testing.T, c *clock, mod func(*Config)) (*Stage, *metrics.Set) {
	t.Helper()
	cfg := testConfig(c)
	cfg.Metrics = metrics.NewSet()
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewStage(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, cfg.Metrics
}

func counter(set *metrics.Set, decision string) uint64 {
	return set.GetOrCreateCounter(`smppd_stage_decisions_total{stage="dedup",decision="` + decision + `"}`).Get()
}

// TestStageReturnOriginal walks messages through the stage under the default policy, one step
// per row, on one stage and clock.
func TestStageReturnOriginal(t *testing.T) {
	c := newClock()
	s, set := newStage(t, c, nil)
	acme := &smpp.Account{SystemID: "acme"}
	en := gsm7Bytes(t, "Your parcel will arrive tomorrow between 10:00 and 12:00.")
	zh := ucs2("【顺丰速运】您的快递已到达驿站，取件码8-2-1234，请于18:00前取件。")
	orig := func() *router.Message { return msg(acme, "491701234567", 0, en) }
	chinese := func() *router.Message { return msg(acme, "8613800138000", 8, zh) }
	part := func(seq byte) *router.Message { return msg(acme, "491701234567", 0, en, udhPart(9, 3, seq)) }

	var keyEN, keyZH Key
	w := &waiter{}
	steps := []struct {
		name    string
		advance time.Duration
		m       *router.Message
		w       Waiter
		done    func() // after the decision
		want    Decision
	}{
		{name: "first: unique", m: orig(), done: func() { keyEN = KeyOf(orig()) },
			want: Decision{Action: Continue, Rule: RuleUnique}},
		{name: "again in flight, cannot wait", m: orig(),
			want: Decision{Action: Refuse, Status: smpp.StatusThrottled, Rule: RuleDuplicateInFlight}},
		{name: "again in flight, waits", m: orig(), w: w, done: func() { s.Done(keyEN, smpp.StatusOK, 0xabc) },
			want: Decision{Action: Wait, Rule: RuleDuplicateInFlight}},
		{name: "again after acceptance", advance: time.Minute, m: orig(),
			want: Decision{Action: Reply, MessageID: 0xabc, Rule: RuleDuplicate}},
		{name: "same text, other destination", m: msg(acme, "491701234568", 0, en),
			want: Decision{Action: Continue, Rule: RuleUnique}},
		{name: "same text, other account", m: msg(&smpp.Account{SystemID: "other"}, "491701234567", 0, en),
			want: Decision{Action: Continue, Rule: RuleUnique}},
		{name: "part 1 of a long message with that text", m: part(1), want: Decision{Action: Continue, Rule: RuleUnique}},
		{name: "part 2 of it, same text", m: part(2), want: Decision{Action: Continue, Rule: RuleUnique}},
		{name: "part 3 of it, same text", m: part(3), want: Decision{Action: Continue, Rule: RuleUnique}},
		{name: "part 2 again", m: part(2), want: Decision{Action: Refuse, Status: smpp.StatusThrottled, Rule: RuleDuplicateInFlight}},
		{name: "Chinese UCS2: unique", m: chinese(), done: func() { keyZH = KeyOf(chinese()); s.Done(keyZH, smpp.StatusInvDstAddr, 0) },
			want: Decision{Action: Continue, Rule: RuleUnique}},
		{name: "Chinese resubmitted after its failure", m: chinese(), done: func() { s.Done(keyZH, smpp.StatusOK, 0xdef) },
			want: Decision{Action: Continue, Rule: RuleUnique}},
		{name: "Chinese again", m: chinese(), want: Decision{Action: Reply, MessageID: 0xdef, Rule: RuleDuplicate}},
		{name: "English still a duplicate near the window's end", advance: 10*time.Minute - time.Minute - time.Millisecond, m: orig(),
			want: Decision{Action: Reply, MessageID: 0xabc, Rule: RuleDuplicate}},
		{name: "English after the window", advance: time.Millisecond, m: orig(), want: Decision{Action: Continue, Rule: RuleUnique}},
	}
	for _, st := range steps {
		c.Advance(st.advance)
		d := s.Decide(st.m, st.w)
		st.want.Key = s.Key(st.m)
		if d != st.want {
			t.Fatalf("%s: got %+v, want %+v", st.name, d, st.want)
		}
		if st.done != nil {
			st.done()
		}
	}
	if len(w.calls) != 1 || w.calls[0] != 0xabc || !w.accepted[0] {
		t.Fatalf("waiter: %v %v, want told 0xabc accepted once", w.calls, w.accepted)
	}
	for decision, want := range map[string]uint64{"unique": 9, "duplicate": 6, "near_duplicate_flood": 0} {
		if got := counter(set, decision); got != want {
			t.Errorf("decision %s counted %d, want %d", decision, got, want)
		}
	}
}

func TestStageRejectPolicy(t *testing.T) {
	c := newClock()
	s, _ := newStage(t, c, func(cfg *Config) { cfg.Policy = Reject; cfg.RejectStatus = 0x45 })
	acme := &smpp.Account{SystemID: "acme"}
	m := msg(acme, "491701234567", 0, gsm7Bytes(t, "Your code is 1234"))
	if d := s.Decide(m, nil); d.Action != Continue {
		t.Fatalf("first: %+v", d)
	}
	w := &waiter{}
	if d := s.Decide(m, w); d.Action != Refuse || d.Status != 0x45 || d.Rule != RuleDuplicate {
		t.Fatalf("in flight: %+v, want refused 0x45 without waiting", d)
	}
	s.Done(s.Key(m), smpp.StatusOK, 1)
	if d := s.Decide(m, nil); d.Action != Refuse || d.Status != 0x45 || d.Rule != RuleDuplicate {
		t.Fatalf("accepted: %+v, want refused 0x45", d)
	}
	if len(w.calls) != 0 || s.Index().Waiting() != 0 {
		t.Fatal("under Reject nobody waits")
	}
}

// TestStageProcess checks the router.Stage adapter: an original continues with its key on the
// message, a duplicate of an accepted original is answered with the original's id, and Finish
// reports the outcome. (A duplicate of an original in flight is held: that needs a live router,
// see node's end-to-end tests.)
func TestStageProcess(t *testing.T) {
	c := newClock()
	s, _ := newStage(t, c, nil)
	var _ router.Stage = s
	var _ router.Finisher = s
	if s.Name() != "dedup" {
		t.Fatalf("Name %q", s.Name())
	}
	acme := &smpp.Account{SystemID: "acme"}
	m := msg(acme, "491701234567", 0, gsm7Bytes(t, "Your code is 1234"))
	if v := s.Process(m); v != (router.Verdict{}) || !m.HasDupKey || m.DupKey != s.Key(m) {
		t.Fatalf("unique: %+v key %v %v, want the zero Verdict and the key on the message", v, m.HasDupKey, m.DupKey)
	}
	s.Finish(m, smpp.StatusOK, 77)
	dup := msg(acme, "491701234567", 0, gsm7Bytes(t, "Your code is 1234"))
	if v := s.Process(dup); !v.Reply || v.MessageID != 77 || v.Rule != RuleDuplicate || dup.HasDupKey {
		t.Fatalf("accepted: %+v, want a reply with the original's id 77", v)
	}
	failed := msg(acme, "491709999999", 0, gsm7Bytes(t, "x"))
	s.Process(failed)
	s.Finish(failed, 0x45, 0)
	if v := s.Process(msg(acme, "491709999999", 0, gsm7Bytes(t, "x"))); v != (router.Verdict{}) {
		t.Fatalf("after a failed original: %+v, want the resubmit to go", v)
	}
}

// TestStageDryRun checks that a dry run (m.Trace set) explains the decision a live submit would
// get and changes nothing: no key recorded, no waiter, no count.
func TestStageDryRun(t *testing.T) {
	c := newClock()
	s, set := newStage(t, c, func(cfg *Config) { cfg.NearDup.Enabled = true; cfg.NearDup.Max = 2 })
	acme := &smpp.Account{SystemID: "acme"}
	text := func(code string) []byte { return gsm7Bytes(t, "Your code is "+code) }
	dry := func(m *router.Message, w Waiter, want Action, explained string) {
		t.Helper()
		m.Trace = &router.Trace{}
		if d := s.Decide(m, w); d.Action != want {
			t.Fatalf("dry run: %+v, want %s", d, want)
		}
		if len(m.Trace.Steps) != 1 || m.Trace.Steps[0].Stage != "dedup" || !strings.Contains(m.Trace.Steps[0].Decision, explained) {
			t.Fatalf("dry run explained %+v, want %q", m.Trace.Steps, explained)
		}
		m.Trace = nil
	}
	live := func(m *router.Message, want Action) Decision {
		t.Helper()
		d := s.Decide(m, nil)
		if d.Action != want {
			t.Fatalf("live: %+v, want %s", d, want)
		}
		return d
	}

	m := msg(acme, "491701234567", 0, text("1111"))
	dry(m, nil, Continue, "unique (key ")
	d := live(m, Continue) // the dry run recorded nothing
	dry(m, &waiter{}, Refuse, "duplicate_in_flight of in_flight original (message_id 0000000000000000")
	dry(m, &waiter{}, Refuse, "a live submit would wait")
	if s.Index().Waiting() != 0 {
		t.Fatal("a dry run registered a waiter")
	}
	s.Done(d.Key, smpp.StatusOK, 0x1234)
	dry(m, nil, Reply, "duplicate of accepted original (message_id 0000000000001234")

	// Near-duplicates: dry runs do not use up the limit of 2.
	dry(msg(acme, "491701234567", 0, text("2222")), nil, Continue, "unique")
	dry(msg(acme, "491701234567", 0, text("2222")), nil, Continue, "unique")
	live(msg(acme, "491701234567", 0, text("2222")), Continue)
	dry(msg(acme, "491701234567", 0, text("3333")), nil, Refuse, "near_duplicate_flood: fingerprint")
	live(msg(acme, "491701234567", 0, text("3333")), Refuse)

	for decision, want := range map[string]uint64{"unique": 2, "duplicate": 0, "near_duplicate_flood": 1} {
		if got := counter(set, decision); got != want {
			t.Errorf("decision %s counted %d, want %d (dry runs count nothing)", decision, got, want)
		}
	}
}

func TestStageNearFlood(t *testing.T) {
	for _, perDest := range []bool{false, true} {
		c := newClock()
		s, set := newStage(t, c, func(cfg *Config) {
			cfg.NearDup.Enabled = true
			cfg.NearDup.Max = 3
			cfg.NearDup.PerDestination = perDest
		})
		acme := &smpp.Account{SystemID: "acme"}
		code := func(dst, n string) *router.Message {
			return msg(acme, dst, 0, gsm7Bytes(t, "Your code is "+n+". Do not share it."))
		}
		for i, n := range []string{"1111", "2222", "3333"} {
			m := code("491701234567", n)
			if d := s.Decide(m, nil); d.Action != Continue {
				t.Fatalf("perDest=%v: message %d: %+v", perDest, i+1, d)
			}
			s.Done(s.Key(m), smpp.StatusOK, uint64(i))
		}
		m := code("491701234567", "4444")
		d := s.Decide(m, nil)
		if d.Action != Refuse || d.Status != smpp.StatusThrottled || d.Rule != RuleNearDuplicateFlood {
			t.Fatalf("perDest=%v: 4th: %+v, want refused near_duplicate_flood", perDest, d)
		}
		if _, dup := s.Index().Begin(d.Key); dup {
			t.Fatalf("perDest=%v: a refused message's key must be forgotten", perDest)
		}
		s.Index().Failed(d.Key)
		other := s.Decide(code("491709999999", "5555"), nil)
		if perDest && other.Action != Continue {
			t.Fatalf("per destination: another destination must have its own count: %+v", other)
		}
		if !perDest && other.Action != Refuse {
			t.Fatalf("per account: another destination counts too: %+v", other)
		}
		// Binary messages are not fingerprinted: never a flood.
		if d := s.Decide(msg(acme, "491701234567", 4, []byte{1, 2, 3}), nil); d.Action != Continue {
			t.Fatalf("binary: %+v", d)
		}
		wantFloods := uint64(1)
		if !perDest {
			wantFloods = 2
		}
		if got := counter(set, "near_duplicate_flood"); got != wantFloods {
			t.Fatalf("perDest=%v: floods counted %d, want %d", perDest, got, wantFloods)
		}
	}
}

// TestStageAllocs checks the common path (a unique message, near-duplicate limiter on) allocates
// nothing: each round decides a new original and reports it failed, so the key is reused.
func TestStageAllocs(t *testing.T) {
	c := newClock()
	s, _ := newStage(t, c, func(cfg *Config) { cfg.NearDup.Enabled = true; cfg.NearDup.Max = 1 << 30 })
	for _, m := range []*router.Message{
		msg(&smpp.Account{SystemID: "acme"}, "491701234567", 0, gsm7Bytes(t, benchGSM7)),
		msg(&smpp.Account{SystemID: "acme"}, "8613800138000", 8, ucs2(benchUCS2)),
	} {
		allocs := testing.AllocsPerRun(200, func() {
			d := s.Decide(m, nil)
			if d.Action != Continue {
				t.Fatalf("%+v", d)
			}
			s.Done(d.Key, smpp.StatusSysErr, 0)
		})
		if allocs != 0 {
			t.Errorf("%v allocs per message, want 0", allocs)
		}
	}
}
