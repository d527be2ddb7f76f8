package governor

import (
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/store"
)

// t0 is a bucket boundary (hours), so tests can reason about buckets.
var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func testConfig() Config {
	return Config{Window: 24 * time.Hour, Bucket: time.Hour, WarnPPM: 1.5, LimitPPM: 2, Action: ActionRefuse,
		ChannelAction: ActionAlarm, Status: 0x45, ReportInterval: time.Hour, EvalInterval: time.Hour,
		Reporter: "n1@1", Logger: slog.New(slog.DiscardHandler)}
}

// fsm is a real replicated state in a temp dir, fed through Apply as Raft would.
type fsm struct {
	t     *testing.T
	f     *store.FSM
	index uint64
}

func newFSM(t *testing.T, ix store.Indexer) *fsm {
	f, err := store.OpenFSM(store.FSMConfig{Dir: t.TempDir(), Indexer: ix, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &fsm{t: t, f: f}
}

func (s *fsm) apply(c store.Command) {
	s.t.Helper()
	s.index++
	res := s.f.Apply(&raft.Log{Index: s.index, Term: 1, Type: raft.LogCommand, Data: c.Marshal()})
	if ar, _ := res.(store.ApplyResult); ar.Err != nil {
		s.t.Fatal(ar.Err)
	}
}

// sent replicates reporter's absolute count for (account, channel) in the bucket at.
func (s *fsm) sent(reporter string, at time.Time, account, channel string, n uint64) {
	s.t.Helper()
	s.apply(store.Command{Type: store.CmdSentCounts, Time: at.UnixMilli(), NodeID: reporter,
		Counts: []store.SentCount{{Bucket: at.UnixMilli() - at.UnixMilli()%time.Hour.Milliseconds(), Account: account, Channel: channel, Sent: n}}})
}

// complaint replicates a complaint about number from account's messages through channel.
func (s *fsm) complaint(number uint64, at time.Time, account, channel string) {
	s.t.Helper()
	s.apply(store.Command{Type: store.CmdComplaint, Time: at.UnixMilli(), Entries: []store.Entry{{
		Key: store.Key{Number: number, Kind: store.KindComplaint, Scope: store.Scope{Account: account}}, Upstream: channel, Created: at.UnixMilli()}}})
}

// newGov returns a governor (not started: the test calls Evaluate) over a real FSM.
func newGov(t *testing.T, mutate func(*Config)) (*Governor, *fsm) {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	var s *fsm
	cfg.Counts = func(from int64, fn func(store.SentCount, string) bool) error { return s.f.SentCounts(from, fn) }
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s = newFSM(t, g)
	return g, s
}

var pools = map[string]*router.Pool{"op-a": router.NewPool("op-a", nil, 0), "op-b": router.NewPool("op-b", nil, 0)}

// verdict runs the stage on a message of account to channel in lane.
func verdict(g *Governor, account, channel string, lane router.Lane) smpp.Status {
	m := &router.Message{Account: &smpp.Account{SystemID: account}, Pool: pools[channel], Lane: lane}
	return g.Process(m).Status
}

func row(t *testing.T, g *Governor, level, account, channel string) Row {
	t.Helper()
	for _, r := range g.Report().Rows {
		if r.Level == level && r.Account == account && r.Channel == channel {
			return r
		}
	}
	t.Fatalf("no %s row for %q/%q in %+v", level, account, channel, g.Report().Rows)
	return Row{}
}

// TestRatesAcrossReporters: the rate of an (account, channel) pair counts every node's sent
// messages and the complaints naming both; at 2 ppm its bulk traffic is refused, OTP passes,
// and other accounts and channels are untouched.
func TestRatesAcrossReporters(t *testing.T) {
	g, s := newGov(t, nil)
	s.sent("n2@1", t0.Add(-2*time.Hour), "shop", "op-a", 300_000)
	s.sent("n3@1", t0.Add(-30*time.Minute), "shop", "op-a", 200_000)
	s.sent("n3@1", t0.Add(-30*time.Minute), "bank", "op-a", 500_000)
	s.complaint(4915100000001, t0.Add(-time.Hour), "shop", "op-a")
	g.Evaluate(t0)
	r := row(t, g, LevelPair, "shop", "op-a")
	if r.Sent != 500_000 || r.Complaints != 1 || r.PPM != 2 || r.State != StateLimit || !r.Refusing {
		t.Fatalf("shop/op-a: %+v, want 500000 sent, 1 complaint, 2 ppm, limit, refusing", r)
	}
	if ch := row(t, g, LevelChannel, "", "op-a"); ch.Sent != 1_000_000 || ch.PPM != 1 || ch.State != StateOK {
		t.Fatalf("channel op-a: %+v, want 1000000 sent at 1 ppm, ok", ch)
	}
	if st := verdict(g, "shop", "op-a", router.LaneBulk); st != 0x45 {
		t.Fatalf("shop bulk to op-a: %v, want 0x45", st)
	}
	if st := verdict(g, "shop", "op-a", router.LaneOTP); st != 0 {
		t.Fatalf("shop OTP to op-a: %v, want passed", st)
	}
	if st := verdict(g, "bank", "op-a", router.LaneBulk); st != 0 {
		t.Fatalf("bank to op-a: %v, want passed", st)
	}
	// The account level (all of shop's traffic, 500k) is at the limit too: shop is refused on
	// every channel.
	if st := verdict(g, "shop", "op-b", router.LaneBulk); st != 0x45 {
		t.Fatalf("shop to op-b: %v, want refused (account at the limit)", st)
	}
	// More volume brings the rate under warn: the stop lifts at the next evaluation.
	s.sent("n2@1", t0.Add(-2*time.Hour), "shop", "op-a", 600_000)
	g.Evaluate(t0)
	if r := row(t, g, LevelPair, "shop", "op-a"); r.Sent != 800_000 || r.PPM != 1.25 || r.State != StateOK || r.Refusing {
		t.Fatalf("after more volume: %+v, want 800000 sent (a report replaces the reporter's count), 1.25 ppm, ok", r)
	}
	if st := verdict(g, "shop", "op-a", router.LaneBulk); st != 0 {
		t.Fatalf("shop bulk after the rate fell: %v, want passed", st)
	}
}

// TestWarnAndWindow: warn between warn_ppm and limit_ppm; complaints and counts that left the
// window no longer count.
func TestWarnAndWindow(t *testing.T) {
	g, s := newGov(t, nil)
	s.sent("n2@1", t0.Add(-time.Hour), "shop", "op-a", 600_000)
	s.complaint(4915100000001, t0.Add(-time.Hour), "shop", "op-a")
	g.Evaluate(t0)
	if r := row(t, g, LevelPair, "shop", "op-a"); r.State != StateWarn || r.Refusing || math.Abs(r.PPM-1.6667) > 0.001 {
		t.Fatalf("1 in 600k: %+v, want warn at 1.67 ppm, not refusing", r)
	}
	if st := verdict(g, "shop", "op-a", router.LaneBulk); st != 0 {
		t.Fatalf("warn refuses: %v", st)
	}
	// 25 hours on: the counts and the complaint are outside the 24 h window.
	g.Evaluate(t0.Add(24 * time.Hour))
	if rows := g.Report().Rows; len(rows) != 0 {
		t.Fatalf("after the window: %+v, want no rows", rows)
	}
	// A complaint older than the window does not count, one inside it does.
	s.complaint(4915100000002, t0.Add(-25*time.Hour), "shop", "op-a")
	g.Evaluate(t0)
	if r := row(t, g, LevelPair, "shop", "op-a"); r.Complaints != 1 {
		t.Fatalf("complaints: %+v, want 1 (the other is older than the window)", r)
	}
}

// TestMinSentAndNothingSent: min_sent bounds the denominator from below; a complaint with
// nothing sent is 1,000,000 ppm (one per message), never a division by zero.
func TestMinSentAndNothingSent(t *testing.T) {
	g, s := newGov(t, func(c *Config) { c.MinSent = 1_000_000 })
	s.sent("n2@1", t0, "shop", "op-a", 1000)
	s.complaint(4915100000001, t0, "shop", "op-a")
	g.Evaluate(t0.Add(time.Minute))
	if r := row(t, g, LevelPair, "shop", "op-a"); r.PPM != 1 || r.State != StateOK {
		t.Fatalf("with min_sent 1M: %+v, want 1 ppm, ok", r)
	}
	g2, s2 := newGov(t, nil)
	s2.complaint(4915100000001, t0, "shop", "op-a")
	g2.Evaluate(t0.Add(time.Minute))
	if r := row(t, g2, LevelPair, "shop", "op-a"); r.PPM != 1e6 || !r.Refusing {
		t.Fatalf("nothing sent: %+v, want 1e6 ppm, refusing", r)
	}
}

// TestChannelLevel: complaints that name no account count for the channel only; the channel
// action decides whether every account's bulk to it is refused.
func TestChannelLevel(t *testing.T) {
	for _, action := range []string{ActionAlarm, ActionRefuse} {
		t.Run(action, func(t *testing.T) {
			g, s := newGov(t, func(c *Config) { c.ChannelAction = action })
			s.sent("n2@1", t0, "shop", "op-a", 400_000)
			s.complaint(4915100000001, t0, "", "op-a")
			g.Evaluate(t0.Add(time.Minute))
			if r := row(t, g, LevelChannel, "", "op-a"); r.PPM != 2.5 || r.State != StateLimit || r.Refusing != (action == ActionRefuse) {
				t.Fatalf("channel: %+v", r)
			}
			if r := row(t, g, LevelPair, "shop", "op-a"); r.Complaints != 0 {
				t.Fatalf("pair got the account-less complaint: %+v", r)
			}
			want := smpp.Status(0)
			if action == ActionRefuse {
				want = 0x45
			}
			if st := verdict(g, "bank", "op-a", router.LaneBulk); st != want {
				t.Fatalf("bank to op-a: %v, want %v", st, want)
			}
			if st := verdict(g, "bank", "op-a", router.LaneOTP); st != 0 {
				t.Fatalf("OTP refused: %v", st)
			}
		})
	}
}

// TestAlarmAction: with action alarm nothing is refused at the limit.
func TestAlarmAction(t *testing.T) {
	g, s := newGov(t, func(c *Config) { c.Action = ActionAlarm })
	s.complaint(4915100000001, t0, "shop", "op-a")
	g.Evaluate(t0.Add(time.Minute))
	if r := row(t, g, LevelPair, "shop", "op-a"); r.State != StateLimit || r.Refusing {
		t.Fatalf("%+v, want limit, not refusing", r)
	}
	if st := verdict(g, "shop", "op-a", router.LaneBulk); st != 0 {
		t.Fatalf("alarm refused: %v", st)
	}
}

// TestComplaintRemovedAndRestore: removing a complaint lifts the stop; a snapshot restore
// (Reset) replaces the complaint set.
func TestComplaintRemovedAndRestore(t *testing.T) {
	g, s := newGov(t, nil)
	s.complaint(4915100000001, t0, "shop", "op-a")
	g.Evaluate(t0.Add(time.Minute))
	if st := verdict(g, "shop", "op-a", router.LaneBulk); st != 0x45 {
		t.Fatalf("before removal: %v", st)
	}
	s.apply(store.Command{Type: store.CmdBlockRemove, Time: t0.UnixMilli(), Keys: []store.Key{{Number: 4915100000001, Kind: store.KindComplaint, Scope: store.Scope{Account: "shop"}}}})
	g.Evaluate(t0.Add(time.Minute))
	if st := verdict(g, "shop", "op-a", router.LaneBulk); st != 0 {
		t.Fatalf("after removal: %v", st)
	}
	// A governor opened on the existing state (OpenFSM hands it over with Reset) sees it.
	s.complaint(4915100000002, t0, "shop", "op-a")
	cfg := testConfig()
	g2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g2.Reset(func(yield func(store.Entry) bool) {
		es, _ := s.f.Lookup(4915100000002)
		for _, e := range es {
			if !yield(e) {
				return
			}
		}
	})
	g2.Evaluate(t0.Add(time.Minute))
	if r := row(t, g2, LevelPair, "shop", "op-a"); r.Complaints != 1 {
		t.Fatalf("after Reset: %+v", r)
	}
}

// TestReport: this node's counts are proposed as absolute values per bucket; a failed proposal
// is retried with the counts of then; the node's own replicated counts are not added twice.
func TestReport(t *testing.T) {
	var proposed []store.Command
	fail := true
	var s *fsm
	g, s := newGov(t, func(c *Config) {
		c.Propose = func(cmd *store.Command) error {
			if fail {
				return errors.New("no leader")
			}
			proposed = append(proposed, *cmd)
			s.apply(*cmd)
			return nil
		}
	})
	shop := pair{"shop", "op-a"}
	for range 10 {
		g.add(shop)
	}
	g.fold(t0.Add(10 * time.Minute))
	g.report(t0.Add(10 * time.Minute))
	if len(proposed) != 0 || len(g.dirty) != 1 {
		t.Fatalf("failed report: %d proposed, %d dirty buckets", len(proposed), len(g.dirty))
	}
	fail = false
	for range 5 {
		g.add(shop)
	}
	g.fold(t0.Add(20 * time.Minute))
	g.report(t0.Add(20 * time.Minute))
	if len(proposed) != 1 {
		t.Fatalf("%d proposed, want 1", len(proposed))
	}
	c := proposed[0]
	if c.Type != store.CmdSentCounts || c.NodeID != "n1@1" || len(c.Counts) != 1 || c.Counts[0].Sent != 15 ||
		c.Counts[0].Bucket != t0.UnixMilli() || c.Cutoff != t0.Add(-25*time.Hour).UnixMilli() {
		t.Fatalf("report: %+v, want 15 sent in bucket %d, cutoff 25h before (the window and one bucket kept)", c, t0.UnixMilli())
	}
	// Nothing new: no report.
	g.report(t0.Add(30 * time.Minute))
	if len(proposed) != 1 {
		t.Fatalf("report without news: %d proposed", len(proposed))
	}
	// The replicated copy of this node's own counts is not added to its local ones.
	g.Evaluate(t0.Add(30 * time.Minute))
	if r := row(t, g, LevelPair, "shop", "op-a"); r.Sent != 15 {
		t.Fatalf("sent %d, want 15 (own counts once)", r.Sent)
	}
}

// TestProcessAllocs: the stage costs no allocation per message, refused or passed.
func TestProcessAllocs(t *testing.T) {
	g, s := newGov(t, nil)
	s.complaint(4915100000001, t0, "shop", "op-a")
	g.Evaluate(t0.Add(time.Minute))
	m := &router.Message{Account: &smpp.Account{SystemID: "bank"}, Pool: pools["op-a"]}
	if n := testing.AllocsPerRun(1000, func() { g.Process(m) }); n != 0 {
		t.Fatalf("%v allocs per message", n)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Window = 90 * time.Minute }, "window:"},
		{func(c *Config) { c.Bucket = 0 }, "bucket:"},
		{func(c *Config) { c.WarnPPM = 3 }, "warn_ppm:"},
		{func(c *Config) { c.LimitPPM = math.NaN() }, "limit_ppm:"},
		{func(c *Config) { c.Action = "drop" }, "action:"},
		{func(c *Config) { c.ChannelAction = "" }, "channel_action:"},
		{func(c *Config) { c.Status = 0 }, "status:"},
		{func(c *Config) { c.Reporter = "" }, "Reporter"},
	} {
		c := testConfig()
		tc.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.want, err)
		}
	}
}

// BenchmarkProcess: the stage's cost per message, with a table of stopped pairs.
func BenchmarkProcess(b *testing.B) {
	cfg := testConfig()
	cfg.Metrics = metrics.NewSet()
	g, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	g.Update([]store.Entry{{Key: store.Key{Number: 1, Kind: store.KindComplaint, Scope: store.Scope{Account: "shop"}}, Upstream: "op-a", Created: t0.UnixMilli()}}, nil)
	g.Evaluate(t0.Add(time.Minute))
	m := &router.Message{Account: &smpp.Account{SystemID: "bank"}, Pool: pools["op-a"]}
	b.ReportAllocs()
	for b.Loop() {
		g.Process(m)
	}
}
