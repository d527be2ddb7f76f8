// Package lane is the pipeline stage that recognises verification codes (OTP) and puts them in
// router.LaneOTP, where they take the idlest bind from a share of every window kept for them
// (router.MostFree). Recognition does not trust the client's priority_flag, which any bulk sender
// can set: a message is OTP when its account is configured as an OTP account, when its text
// matches a configured template, or when its text holds a 4-8 digit code next to one of the
// keywords (code, OTP, verification, 验证码, 校验码, 动态码, …) — in GSM7 or UCS2 alike. Accounts
// configured as bulk are never OTP.
package lane

import (
	"bytes"
	"fmt"
	"regexp"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/router/content"
	"github.com/smppd/smppd/smpp"
)

// DefaultKeywords are the words that, next to a code, make a message a verification code.
var DefaultKeywords = []string{"code", "otp", "verification", "verify", "passcode", "password", "pin", "token",
	"验证码", "校验码", "动态码", "驗證碼", "确认码", "認證碼", "код"}

// Config configures the stage.
type Config struct {
	OTPAccounts  []string // system_ids whose every message is OTP
	BulkAccounts []string // system_ids never treated as OTP
	Templates    []string // regular expressions over the lower-cased text; a match is OTP
	Keywords     []string // nil: DefaultKeywords
	MinDigits    int      // shortest code (default 4)
	MaxDigits    int      // longest code (default 8)
	Metrics      *metrics.Set
}

// Stage classifies messages into lanes. Safe for concurrent use.
type Stage struct {
	otp, bulk map[string]bool
	templates []*regexp.Regexp
	keywords  [][]byte
	min, max  int
	scratch   sync.Pool // *buf
	byOTP     map[string]*metrics.Counter
	byBulk    *metrics.Counter
}

type buf struct {
	text []byte
}

// New builds the stage; errors name the template that does not compile.
func New(cfg Config) (*Stage, error) {
	if cfg.MinDigits == 0 {
		cfg.MinDigits = 4
	}
	if cfg.MaxDigits == 0 {
		cfg.MaxDigits = 8
	}
	if cfg.MinDigits < 1 || cfg.MaxDigits < cfg.MinDigits {
		return nil, fmt.Errorf("lanes: code digits %d..%d: want 1 <= min <= max", cfg.MinDigits, cfg.MaxDigits)
	}
	if cfg.Keywords == nil {
		cfg.Keywords = DefaultKeywords
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	s := &Stage{otp: set(cfg.OTPAccounts), bulk: set(cfg.BulkAccounts), min: cfg.MinDigits, max: cfg.MaxDigits,
		byOTP: map[string]*metrics.Counter{}}
	for i, t := range cfg.Templates {
		re, err := regexp.Compile(t)
		if err != nil {
			return nil, fmt.Errorf("lanes.otp_templates[%d]: %v", i, err)
		}
		s.templates = append(s.templates, re)
	}
	for _, k := range cfg.Keywords {
		s.keywords = append(s.keywords, bytes.ToLower([]byte(k)))
	}
	for _, why := range []string{"account", "template", "content"} {
		s.byOTP[why] = cfg.Metrics.GetOrCreateCounter(fmt.Sprintf(`smppd_stage_decisions_total{stage="lane",decision="otp",by=%q}`, why))
	}
	s.byBulk = cfg.Metrics.GetOrCreateCounter(`smppd_stage_decisions_total{stage="lane",decision="bulk",by="default"}`)
	s.scratch.New = func() any { return &buf{text: make([]byte, 0, 512)} }
	return s, nil
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// Name implements router.Stage.
func (s *Stage) Name() string { return "lane" }

// Process implements router.Stage: it sets m.Lane and never refuses.
func (s *Stage) Process(m *router.Message) router.Verdict {
	why := s.classify(m)
	if why == "" {
		if m.Trace != nil { // formatting boxes its arguments: only in a dry run
			m.Explain("lane", "bulk (priority_flag %d ignored)", m.Submit.PriorityFlag)
		}
		if m.Trace == nil {
			s.byBulk.Inc()
		}
		return router.Verdict{}
	}
	m.Lane = router.LaneOTP
	if m.Trace != nil { // formatting boxes its arguments: only in a dry run
		m.Explain("lane", "otp by %s", why)
	}
	if m.Trace == nil {
		s.byOTP[why].Inc()
	}
	return router.Verdict{}
}

func (s *Stage) classify(m *router.Message) string {
	id := m.Account.SystemID
	switch {
	case s.bulk[id]:
		return ""
	case s.otp[id]:
		return "account"
	}
	// A code in the undecoded payload is a code in the text and the reverse (digits are the same
	// octets in every coding read here, and decoding keeps runs of them as they are).
	code := s.rawCode(&m.Submit)
	if len(s.templates) == 0 && !code {
		return "" // no code in the text: no need to decode it
	}
	b := s.scratch.Get().(*buf)
	defer s.scratch.Put(b)
	runes, _ := content.TextOf(m, false) // decoded once per message, shared with the content stage
	b.text = b.text[:0]
	for _, r := range runes {
		if r < utf8.RuneSelf { // ASCII: most texts, and the digits
			if 'A' <= r && r <= 'Z' {
				r += 'a' - 'A'
			}
			b.text = append(b.text, byte(r))
			continue
		}
		b.text = utf8.AppendRune(b.text, unicode.ToLower(r))
	}
	for _, re := range s.templates {
		if re.Match(b.text) {
			return "template"
		}
	}
	if code && s.hasKeyword(b.text) {
		return "content"
	}
	return ""
}

// rawCode reports a code in the undecoded payload: digits are the same octets in GSM7 (unpacked),
// IA5 and Latin-1, and 0x00 0x3X in UCS2.
func (s *Stage) rawCode(sub *smpp.Submit) bool {
	p := content.UserData(sub)
	if sub.DataCoding&0xEF == 0x08 { // UCS2
		n := 0
		for i := 0; i+1 <= len(p); i += 2 {
			if i+1 < len(p) && p[i] == 0 && p[i+1] >= '0' && p[i+1] <= '9' {
				n++
				continue
			}
			if n >= s.min && n <= s.max {
				return true
			}
			n = 0
		}
		return n >= s.min && n <= s.max
	}
	return s.hasCode(p)
}

// hasCode reports a run of min..max ASCII digits not part of a longer run.
func (s *Stage) hasCode(t []byte) bool {
	n := 0
	for i := 0; i <= len(t); i++ {
		if i < len(t) && t[i] >= '0' && t[i] <= '9' {
			n++
			continue
		}
		if n >= s.min && n <= s.max {
			return true
		}
		n = 0
	}
	return false
}

func (s *Stage) hasKeyword(t []byte) bool {
	for _, k := range s.keywords {
		if bytes.Contains(t, k) {
			return true
		}
	}
	return false
}
