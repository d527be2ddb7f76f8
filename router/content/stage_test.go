package content

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

const stageRules = `# rules used by the stage tests
spam       reject            free money
spam       reject            claim your prize
loan       reject:0x58       贷款
gambling   reject            網上賭場
gift       reject            免费领取
phishing   reject            re:verify your (account|card)
euro       reject            re:€[0-9]+
bracket    reject            re:\[stop\]
emoji      monitor           re:🎁
trial      monitor           crypto
trial2     monitor           bitcoin
`

func TestStageDecisions(t *testing.T) {
	s, set := newStage(t, stageRules)
	for _, tc := range []struct {
		name     string
		sub      *smpp.Submit
		status   smpp.Status // 0: passes
		category string      // of the deciding rule ("" for pass and skip)
		action   Action
	}{
		{"english pass", textSubmit(t, "Your code is 1234. Do not share it."), 0, "", Pass},
		{"english reject", textSubmit(t, "Get FREE MONEY now"), 0x45, "spam", Reject},
		{"case variants", textSubmit(t, "fReE mOnEy inside"), 0x45, "spam", Reject},
		{"multi-word phrase", textSubmit(t, "Hurry, Claim Your Prize today"), 0x45, "spam", Reject},
		{"spaced-out letters", textSubmit(t, "f r e e   m o n e y for you"), 0x45, "spam", Reject},
		{"dotted letters", textSubmit(t, "F.R.E.E-M.O.N.E.Y"), 0x45, "spam", Reject},
		{"zero-width inside", parse(t, &smpp.Submit{DataCoding: 8, ShortMessage: ucs2("fre\u200be mo\u200cney")}), 0x45, "spam", Reject},
		{"full-width latin", textSubmit(t, "ＦＲＥＥ ｍｏｎｅｙ"), 0x45, "spam", Reject},
		{"simplified chinese", textSubmit(t, "您好，低息贷款，当天放款"), 0x58, "loan", Reject},
		{"traditional matches simplified rule", textSubmit(t, "低息貸款，當天放款"), 0x58, "loan", Reject},
		{"traditional rule matches simplified text", textSubmit(t, "欢迎来到网上赌场"), 0x45, "gambling", Reject},
		{"chinese with separators", textSubmit(t, "低息贷 * 款"), 0x58, "loan", Reject},
		{"chinese pass", textSubmit(t, "您的验证码是 1234，五分钟内有效。"), 0, "", Pass},
		{"gsm7 extension: euro", textSubmit(t, "You won €500, call us"), 0x45, "euro", Reject},
		{"gsm7 extension: brackets", textSubmit(t, "Reply [STOP] to end"), 0x45, "bracket", Reject},
		{"gsm7 without the extension passes", textSubmit(t, "Reply STOP to end, 500 EUR"), 0, "", Pass},
		{"regexp", textSubmit(t, "Please VERIFY  your\naccount at"), 0x45, "phishing", Reject},
		{"ucs2 emoji pairs with keyword between", textSubmit(t, "🎁免🎁费🎁领🎁取🎁"), 0x45, "gift", Reject},
		{"ucs2 emoji only: monitor", textSubmit(t, "生日快乐🎁🎉"), 0, "emoji", Monitor},
		{"monitor only does not block", textSubmit(t, "buy crypto today"), 0, "trial", Monitor},
		{"reject beats monitor", textSubmit(t, "crypto: free money"), 0x45, "spam", Reject},
		{"message_payload long text", parse(t, &smpp.Submit{DataCoding: 8,
			TLVs: smpp.AppendTLV(nil, smpp.TagMessagePayload, ucs2(strings.Repeat("正常内容。", 60)+"网上賭場"))}), 0x45, "gambling", Reject},
		{"latin-1", parse(t, &smpp.Submit{DataCoding: 3, ShortMessage: []byte("Caf\xe9: FREE money")}), 0x45, "spam", Reject},
		{"binary is skipped", parse(t, &smpp.Submit{DataCoding: 4, ShortMessage: []byte("free money")}), 0, "", Skip},
		{"unsupported coding is skipped", parse(t, &smpp.Submit{DataCoding: 6, ShortMessage: []byte("free money")}), 0, "", Skip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := message(tc.sub)
			v := s.Process(m)
			if v.Status != tc.status {
				t.Fatalf("status %v, want %v", v.Status, tc.status)
			}
			if tc.action == Reject && v.Rule != tc.category {
				t.Fatalf("verdict rule %q, want %q", v.Rule, tc.category)
			}
			d := s.Filter().CheckSubmit(&m.Submit)
			if d.Action != tc.action || (d.Rule == nil) != (tc.category == "") || d.Rule != nil && d.Rule.Category != tc.category {
				t.Fatalf("decision %s %+v, want %s %q", d.Action, d.Rule, tc.action, tc.category)
			}
		})
	}
	for _, c := range []struct {
		decision, category string
		want               uint64
	}{
		{"pass", "none", 3}, {"reject", "spam", 9}, {"reject", "loan", 3}, {"reject", "gambling", 2},
		{"reject", "euro", 1}, {"reject", "bracket", 1}, {"reject", "phishing", 1}, {"reject", "gift", 1},
		{"monitor", "emoji", 1}, {"monitor", "trial", 1}, {"skip", "binary", 1}, {"skip", "unsupported", 1},
	} {
		if got := decisions(set, c.decision, c.category); got != c.want {
			t.Errorf("decisions{%s,%s} = %d, want %d", c.decision, c.category, got, c.want)
		}
	}
}

func TestStageMonitorCountsEachCategory(t *testing.T) {
	s, set := newStage(t, stageRules)
	m := message(textSubmit(t, "crypto and bitcoin and crypto again"))
	if v := s.Process(m); v.Status != 0 {
		t.Fatalf("monitor rules blocked: %+v", v)
	}
	d := s.Filter().CheckSubmit(&m.Submit)
	if got := d.Monitors(); len(got) != 2 || got[0].Category != "trial" || got[1].Category != "trial2" {
		t.Fatalf("monitors %+v", got)
	}
	if decisions(set, "monitor", "trial") != 1 || decisions(set, "monitor", "trial2") != 1 || decisions(set, "pass", "none") != 0 {
		t.Fatal("monitor counters wrong")
	}
}

func TestStageDefaultAndFileStatus(t *testing.T) {
	s, _ := newStage(t, "a reject alpha\n@status 0x0B\nb reject beta\nc reject:ESME_RSYSERR gamma\n", func(c *Config) { c.DefaultStatus = 0x61 })
	for text, want := range map[string]smpp.Status{"alpha": 0x61, "beta": 0x0B, "gamma": smpp.StatusSysErr} {
		if v := s.Process(message(textSubmit(t, text))); v.Status != want {
			t.Errorf("%s: status %v, want %v", text, v.Status, want)
		}
	}
}

func TestStageDryRunExplainsAndCountsNothing(t *testing.T) {
	s, set := newStage(t, stageRules)
	for _, tc := range []struct{ text, want string }{
		{"free money", "reject: rule rules.txt:2, category spam, answered ESME_RSUBMITFAIL"},
		{"buy crypto", "monitor: rule rules.txt:11, category trial (counted, not blocked)"},
		{"hello", "pass: no rule matched (gsm7, 7 keywords, 4 regexps)"},
	} {
		m := message(textSubmit(t, tc.text))
		m.Account, m.Trace = nil, &router.Trace{} // as in Router.Explain: no session
		s.Process(m)
		if len(m.Trace.Steps) != 1 || m.Trace.Steps[0].Stage != "content" || m.Trace.Steps[0].Decision != tc.want {
			t.Errorf("%s: steps %+v, want %q", tc.text, m.Trace.Steps, tc.want)
		}
	}
	m := message(parse(t, &smpp.Submit{DataCoding: 4, ShortMessage: []byte{1, 2}}))
	m.Trace = &router.Trace{}
	s.Process(m)
	if m.Trace.Steps[0].Decision != "skip: data_coding 0x04 is binary, not text" {
		t.Errorf("binary: %+v", m.Trace.Steps)
	}
	for _, c := range [][2]string{{"pass", "none"}, {"reject", "spam"}, {"monitor", "trial"}, {"skip", "binary"}} {
		if n := decisions(set, c[0], c[1]); n != 0 {
			t.Errorf("dry run counted %s/%s: %d", c[0], c[1], n)
		}
	}
}

func TestStageSegments(t *testing.T) {
	seg := segSubmit(t, 0, 7, 2, 1, gsm(t, "Get free money"))
	s, _ := newStage(t, stageRules)
	if v := s.Process(message(seg)); v.Status != 0x45 {
		t.Fatalf("segment judged on its own: %+v", v)
	}
	s, set := newStage(t, stageRules, func(c *Config) { c.JudgeSegments = false })
	if v := s.Process(message(seg)); v.Status != 0 {
		t.Fatalf("segment judged although JudgeSegments is off: %+v", v)
	}
	m := message(seg)
	m.Trace = &router.Trace{}
	s.Process(m)
	if m.Trace.Steps[0].Decision != "segment 1 of 2: judged on the reassembled message" || decisions(set, "reject", "spam") != 0 {
		t.Fatalf("%+v", m.Trace.Steps)
	}
}

// TestSplitPhraseCaughtOnReassembly: a phrase split between two segments passes each segment on
// its own, and is caught once the Reassembler hands over both and JudgeParts reads them whole.
func TestSplitPhraseCaughtOnReassembly(t *testing.T) {
	s, set := newStage(t, stageRules)
	for _, tc := range []struct {
		name       string
		p1, p2     *smpp.Submit
		wantStatus smpp.Status
		category   string
	}{
		{"gsm7", segSubmit(t, 0, 9, 2, 1, gsm(t, "Congratulations! Get free mo")), segSubmit(t, 0, 9, 2, 2, gsm(t, "ney at our shop")), 0x45, "spam"},
		{"ucs2 chinese", segSubmit(t, 8, 10, 2, 1, ucs2("恭喜，免费领")), segSubmit(t, 8, 10, 2, 2, ucs2("取大奖")), 0x45, "gift"},
		// The emoji's surrogate pair is cut between the segments: only joining the octets reads it.
		{"ucs2 surrogate pair split", segSubmit(t, 8, 11, 2, 1, ucs2("生日快乐🎁")[:10]), segSubmit(t, 8, 11, 2, 2, ucs2("生日快乐🎁")[10:]), 0, "emoji"},
		{"gsm7 escape split", segSubmit(t, 0, 12, 2, 1, gsm(t, "Win €")[:5]), segSubmit(t, 0, 12, 2, 2, gsm(t, "Win €")[5:]), 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range []*smpp.Submit{tc.p1, tc.p2} {
				if d := s.Filter().CheckSubmit(p); d.Action == Reject || tc.category == "emoji" && d.Action == Monitor {
					t.Fatalf("a segment alone matched %+v", d.Rule)
				}
			}
			r, err := NewReassembler(DefaultReassemblerConfig[*smpp.Submit]())
			if err != nil {
				t.Fatal(err)
			}
			var parts []*smpp.Submit
			for _, p := range []*smpp.Submit{tc.p2, tc.p1} { // out of order
				c, ok := p.Concat()
				if !ok {
					t.Fatal("no concat info")
				}
				out, err := r.Add(KeyOf("acct", p, c), c, p, len(p.ShortMessage), 0)
				if err != nil {
					t.Fatal(err)
				}
				parts = out.Complete
			}
			if len(parts) != 2 || parts[0] != tc.p1 {
				t.Fatalf("reassembled %d parts", len(parts))
			}
			d := s.JudgeParts(parts...)
			if v := d.Verdict(); v.Status != tc.wantStatus || tc.category != "" && d.Rule.Category != tc.category {
				t.Fatalf("verdict %+v, decision %s %+v", v, d.Action, d.Rule)
			}
		})
	}
	if tc := decisions(set, "reject", "spam") + decisions(set, "reject", "gift"); tc != 2 {
		t.Fatalf("%d rejects counted, want 2", tc)
	}
	// The escape split: the euro sign is read whole, so the regexp €[0-9]+ would see "€" (no
	// digits follow here); check the text itself.
	p1, p2 := segSubmit(t, 0, 12, 2, 1, gsm(t, "Win €5")[:5]), segSubmit(t, 0, 12, 2, 2, gsm(t, "Win €5")[5:])
	if d := s.Filter().CheckParts([]*smpp.Submit{p1, p2}); d.Action != Reject || d.Rule.Category != "euro" {
		t.Fatalf("escape split across segments: %s %+v", d.Action, d.Rule)
	}
}

func TestCheckPartsMixedCodings(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Rules = []string{writeRules(t, t.TempDir(), "r", "x reject free money\n")}
	f, err := NewFilter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gsmPart := segSubmit(t, 0, 1, 3, 1, gsm(t, "free "))
	ucsPart := segSubmit(t, 8, 1, 3, 2, ucs2("mo"))
	binPart := segSubmit(t, 4, 1, 3, 3, []byte("ney"))
	if d := f.CheckParts([]*smpp.Submit{gsmPart, ucsPart, segSubmit(t, 0, 1, 3, 3, gsm(t, "ney"))}); d.Action != Reject || d.Coding != CodingGSM7 {
		t.Fatalf("mixed GSM and UCS2 parts: %s %s", d.Action, d.Coding)
	}
	if d := f.CheckParts([]*smpp.Submit{gsmPart, ucsPart, binPart}); d.Action != Pass {
		t.Fatalf("binary part read as text: %s", d.Action)
	}
	if d := f.CheckParts([]*smpp.Submit{binPart, binPart}); d.Action != Skip || d.Coding != CodingBinary {
		t.Fatalf("binary parts: %s %s", d.Action, d.Coding)
	}
}

func TestReloadBadFileKeepsOldRules(t *testing.T) {
	dir := t.TempDir()
	good := writeRules(t, dir, "good.rules", "spam reject free money\n")
	s, _ := newStage(t, "", func(c *Config) { c.Rules = []string{good} })
	before := s.Filter().Rules()
	bad := writeRules(t, dir, "bad.rules", "# ok\nspam reject other words\nspam blok free money\n")
	err := s.Filter().Load(good, bad)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != bad || pe.Line != 3 || !strings.Contains(err.Error(), "bad.rules:3: action \"blok\"") {
		t.Fatalf("got %v", err)
	}
	if s.Filter().Rules() != before {
		t.Fatal("rules replaced despite the error")
	}
	if v := s.Process(message(textSubmit(t, "free money"))); v.Status != 0x45 {
		t.Fatal("old rules lost")
	}
	if err := s.Filter().Load(good, dir+"/missing.rules"); err == nil || !errors.Is(err, os.ErrNotExist) || s.Filter().Rules() != before {
		t.Fatalf("missing file: %v", err)
	}
	// Fixed: the new rules apply.
	writeRules(t, dir, "good.rules", "spam reject other words\n")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if v := s.Process(message(textSubmit(t, "free money"))); v.Status != 0 {
		t.Fatal("old rule still applies after reload")
	}
	if v := s.Process(message(textSubmit(t, "other words"))); v.Status != 0x45 {
		t.Fatal("new rule does not apply after reload")
	}
}

// TestReloadUnderConcurrentProcess swaps between two rule sets while sessions judge; every
// decision must come from one complete set. Run with -race.
func TestReloadUnderConcurrentProcess(t *testing.T) {
	dir := t.TempDir()
	a := writeRules(t, dir, "a.rules", "cat-a reject alpha\n")
	b := writeRules(t, dir, "b.rules", "cat-b reject beta\ncat-b monitor gamma\n")
	s, set := newStage(t, "", func(c *Config) { c.Rules = []string{a} })
	const workers, rounds = 4, 2000
	both := textSubmit(t, "alpha beta gamma")
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := range workers {
		wg.Go(func() {
			m := message(both)
			for range rounds {
				if v := s.Process(m); v.Status != 0x45 || v.Rule != "cat-a" && v.Rule != "cat-b" {
					errs <- fmt.Sprintf("worker %d: verdict %+v", w, v)
					return
				}
			}
		})
	}
	for i := range 50 {
		paths := []string{a}
		if i%2 == 0 {
			paths = []string{b}
		}
		if err := s.Filter().Load(paths...); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := decisions(set, "reject", "cat-a") + decisions(set, "reject", "cat-b"); got != workers*rounds {
		t.Fatalf("%d rejects counted, want %d", got, workers*rounds)
	}
	if err := s.Filter().Load(b); err != nil || s.Process(message(textSubmit(t, "alpha"))).Status != 0 {
		t.Fatal("last load not in use")
	}
}

func TestStageAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	s, _ := newStage(t, stageRules)
	for _, text := range []string{
		"Your code is 1234. Do not share it, free of charge.",
		"Reply [STOP]",
		"Get free money now",
		"buy crypto",
		"您好，低息贷款🎁",
	} {
		m := message(textSubmit(t, text))
		s.Process(m)
		if n := testing.AllocsPerRun(200, func() { s.Process(m) }); n != 0 {
			t.Errorf("%q: %v allocations per message", text, n)
		}
	}
}
