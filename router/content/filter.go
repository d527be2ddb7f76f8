package content

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

// Config configures content filtering.
type Config struct {
	// Rules are the rule files, compiled in order into one rule set.
	Rules []string
	// Variants is an optional character variants file ("FROM<TAB>TO" a line: OpenCC's
	// TSCharacters.txt format) extending and overriding the built-in traditional -> simplified table.
	Variants string
	// DefaultStatus answers a reject rule that names no status and follows no @status line.
	DefaultStatus smpp.Status
	// StripInvisible drops invisible characters (zero-width space and joiners, soft hyphen, ...)
	// before matching.
	StripInvisible bool
	// StripSeparators lets keywords match across whitespace, punctuation and symbols ("f r e e",
	// "f.r.e.e", "贷*款") by removing them from the text and from keywords.
	StripSeparators bool
	// PackedGSM7 says the clients pack GSM 7-bit septets; never guessed (see CodingOf).
	PackedGSM7 bool
	// JudgeSegments makes Process judge each segment of a concatenated message on its own text
	// too. Turn it off once the router judges reassembled messages with JudgeParts, so that a
	// message is counted once.
	JudgeSegments bool
	// Concat, when enabled, judges concatenated messages on their whole text instead (see
	// ConcatConfig); JudgeSegments is then ignored.
	Concat ConcatConfig
	Logger *slog.Logger
	// Metrics receives the stage's metrics (nil: a private set).
	Metrics *metrics.Set
}

// DefaultConfig returns the defaults: reject with ESME_RSUBMITFAIL (0x45), strip invisible
// characters and separators, judge segments on their own, GSM 7-bit unpacked.
func DefaultConfig() Config {
	return Config{DefaultStatus: smpp.Status(0x45), StripInvisible: true, StripSeparators: true, JudgeSegments: true}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if c.DefaultStatus == smpp.StatusOK {
		return errors.New("content: default_status must not be 0 (ESME_ROK): a reject would accept the message")
	}
	return nil
}

// maxMonitors bounds the monitor rules of distinct categories one Decision records.
const maxMonitors = 4

// Decision is the outcome of judging one message.
type Decision struct {
	Action Action
	// Rule decided: for Reject the rule that rejected, for Monitor the first monitor rule that
	// matched; nil otherwise.
	Rule *Rule
	// Coding is how the message was read (CodingNone when the text was given as characters).
	Coding   Coding
	monitors [maxMonitors]*Rule
	nmon     uint8
}

// Monitors returns the monitor rules that matched, one per category, at most 4. A rejected
// message lists those found before the rejecting rule.
func (d *Decision) Monitors() []*Rule { return d.monitors[:d.nmon] }

// Verdict is the router's verdict: Reject answers with the rule's status, giving its category as
// the rule; every other decision lets the message continue.
func (d *Decision) Verdict() router.Verdict {
	if d.Action == Reject {
		return router.Verdict{Status: d.Rule.Status, Rule: d.Rule.Category}
	}
	return router.Verdict{}
}

// add records a matching rule; false once the message is rejected (nothing else matters).
func (d *Decision) add(r *Rule) bool {
	if r.Action == Reject {
		d.Action, d.Rule = Reject, r
		return false
	}
	for _, m := range d.monitors[:d.nmon] {
		if m.Category == r.Category {
			return true
		}
	}
	if d.nmon < maxMonitors {
		d.monitors[d.nmon] = r
		d.nmon++
	}
	if d.Action == Pass {
		d.Action, d.Rule = Monitor, r
	}
	return true
}

// hits collects the automaton's matches into a Decision.
type hits struct {
	rs *Rules
	d  Decision
}

func (h *hits) match(p int32) bool { return h.d.add(&h.rs.rules[h.rs.kwRule[p]]) }

// scratch is one call's working memory, pooled so that judging allocates nothing.
type scratch struct {
	text, norm, coll []rune
	data, utf8       []byte
	h                hits
}

// maxScratch is the largest buffer (in elements) put back in the pool; a bigger one, left by a
// long message_payload, is dropped so it does not stay pinned.
const maxScratch = 8 << 10

// Filter judges messages against a rule set that Load replaces atomically: a call in progress
// finishes with the rules it started with. Safe for concurrent use.
type Filter struct {
	cfg   Config
	log   *slog.Logger
	rules atomic.Pointer[Rules]
	pool  sync.Pool
	load  sync.Mutex // serialises Load so that the last to finish is the last called
}

// NewFilter returns a filter with cfg.Rules loaded (none: every message passes).
func NewFilter(cfg Config) (*Filter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &Filter{cfg: cfg, log: cfg.Logger.With("component", "content")}
	f.pool.New = func() any { return new(scratch) }
	if err := f.Load(cfg.Rules...); err != nil {
		return nil, err
	}
	return f, nil
}

// Load compiles the rule files at paths (and the variants file, if configured) and, only if
// all of them are valid, makes them the rules every following call uses. On error the rules in
// use stay; the error names the file and, for a rule error, the line and the reason.
func (f *Filter) Load(paths ...string) error {
	f.load.Lock()
	defer f.load.Unlock()
	srcs := make([]Source, len(paths))
	for i, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("content rules: %w", err)
		}
		srcs[i] = Source{Name: p, Data: data}
	}
	rs, err := Compile(&f.cfg, srcs...)
	if err != nil {
		return fmt.Errorf("content rules: %w", err)
	}
	f.rules.Store(rs)
	if len(paths) > 0 {
		f.log.Info("content rules loaded", "files", paths, "keywords", rs.Keywords(), "regexps", rs.Regexps())
	}
	return nil
}

// Rules returns the rules in use.
func (f *Filter) Rules() *Rules { return f.rules.Load() }

func (f *Filter) get() *scratch { return f.pool.Get().(*scratch) }

func (f *Filter) put(sc *scratch) {
	sc.h = hits{}
	if max(cap(sc.text), cap(sc.norm), cap(sc.coll), cap(sc.data), cap(sc.utf8)) <= maxScratch {
		f.pool.Put(sc)
	}
}

// Check judges decoded text.
func (f *Filter) Check(text []rune) Decision {
	sc := f.get()
	defer f.put(sc)
	f.judge(sc, text)
	return sc.h.d
}

// CheckSubmit judges the text of one submit_sm (short_message or message_payload).
func (f *Filter) CheckSubmit(s *smpp.Submit) Decision {
	sc := f.get()
	defer f.put(sc)
	var c Coding
	sc.text, c = AppendText(sc.text[:0], s, f.cfg.PackedGSM7)
	if !c.Text() {
		return Decision{Action: Skip, Coding: c}
	}
	f.judge(sc, sc.text)
	sc.h.d.Coding = c
	return sc.h.d
}

// CheckParts judges the text of a concatenated message's segments, given in order. The user
// data of consecutive segments with the same data_coding is joined before decoding, so that a
// character split between two segments (a UTF-16 surrogate pair, a GSM escape) is read whole.
// Segments that are not text are left out; if none is text the decision is Skip.
func (f *Filter) CheckParts(parts []*smpp.Submit) Decision {
	sc := f.get()
	defer f.put(sc)
	sc.text = sc.text[:0]
	first := CodingNone
	for i := 0; i < len(parts); {
		c := CodingOf(parts[i].DataCoding, f.cfg.PackedGSM7)
		j := i + 1
		for j < len(parts) && parts[j].DataCoding == parts[i].DataCoding {
			j++
		}
		if first == CodingNone || !first.Text() && c.Text() {
			first = c
		}
		switch {
		case !c.Text():
		case c == CodingGSM7Packed: // septet alignment differs per segment
			for _, p := range parts[i:j] {
				sc.text, _ = AppendText(sc.text, p, true)
			}
		default:
			sc.data = sc.data[:0]
			for _, p := range parts[i:j] {
				sc.data = append(sc.data, UserData(p)...)
			}
			sc.text = AppendDecoded(sc.text, c, sc.data)
		}
		i = j
	}
	if !first.Text() {
		return Decision{Action: Skip, Coding: first}
	}
	f.judge(sc, sc.text)
	sc.h.d.Coding = first
	return sc.h.d
}

// judge normalises text and runs the rules: keywords in one automaton pass, then, unless a
// keyword rejected the message, the regular expressions in file order.
func (f *Filter) judge(sc *scratch, text []rune) {
	rs := f.rules.Load()
	sc.h = hits{rs: rs}
	n := rs.norm
	sc.norm = n.matchForm(sc.norm[:0], text)
	if rs.ac != nil {
		rs.ac.scan(sc.norm, sc.h.match)
	}
	if sc.h.d.Action == Reject || len(rs.regexps) == 0 {
		return
	}
	coll := sc.norm
	if n.stripSep {
		sc.coll = n.appendNorm(sc.coll[:0], text, false)
		coll = sc.coll
	}
	sc.utf8 = sc.utf8[:0]
	for _, r := range coll {
		sc.utf8 = utf8.AppendRune(sc.utf8, r)
	}
	for _, x := range rs.regexps {
		if x.lits != nil && !containsAny(sc.utf8, x.lits) {
			continue
		}
		if x.re.Match(sc.utf8) && !sc.h.d.add(&rs.rules[x.rule]) {
			return
		}
	}
}

func containsAny(b []byte, lits [][]byte) bool {
	for _, l := range lits {
		if bytes.Contains(b, l) {
			return true
		}
	}
	return false
}
