package content

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/smppd/smppd/smpp"
)

// Action is what a rule does to a message it matches, and what was decided for a message.
type Action uint8

// Actions, weakest first: a message matching several rules gets the strongest.
const (
	Pass    Action = iota // no rule matched
	Skip                  // not text (binary or an unsupported coding): no rule applies
	Monitor               // counted and logged, not blocked: for trying out new rules
	Reject                // answered with the rule's status, not forwarded
)

var actionNames = [...]string{"pass", "skip", "monitor", "reject"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// Rule is one rule of a rule file. Immutable; it stays valid after a reload replaced it.
type Rule struct {
	ID       string      // FILE:LINE (file base name), for logs and explain
	Category string      // metric label
	Action   Action      // Monitor or Reject
	Status   smpp.Status // Reject: the status to answer
	Pattern  string      // the keyword in matching form, or the regular expression
	Regexp   bool
}

// ParseError is a rule or variants file error, naming the file and line to fix.
type ParseError struct {
	File   string
	Line   int
	Reason string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason) }

// ErrTooManyCharacters is returned when the keywords hold more than 65,535 distinct characters.
var ErrTooManyCharacters = errors.New("content rules: keywords use more than 65535 distinct characters")

// Source is one rule file: its name, for errors and rule ids, and its content.
type Source struct {
	Name string
	Data []byte
}

// Rules is a compiled rule set with the normalisation its keywords were compiled with.
// Immutable; safe for concurrent use.
type Rules struct {
	rules   []Rule
	norm    *normalizer
	ac      *automaton // nil: no keyword rules
	kwRule  []int32    // automaton pattern -> index in rules
	regexps []ruleRegexp
	files   []string
}

type ruleRegexp struct {
	re   *regexp.Regexp
	lits [][]byte // every match contains one of them (nil: none known): no match without one
	rule int32
}

// Len is the number of rules.
func (r *Rules) Len() int { return len(r.rules) }

// Keywords is the number of keyword rules.
func (r *Rules) Keywords() int { return len(r.kwRule) }

// Regexps is the number of regular expression rules.
func (r *Rules) Regexps() int { return len(r.regexps) }

// Rule returns rule i, in file order.
func (r *Rules) Rule(i int) *Rule { return &r.rules[i] }

// Files lists the rule files, in order.
func (r *Rules) Files() []string { return slices.Clone(r.files) }

// maxKeyword bounds a keyword, in characters of its matching form.
const maxKeyword = 256

// Compile compiles rule files into one rule set with cfg's normalisation and default status,
// reading cfg.Variants if set. Errors name the file and line (*ParseError).
func Compile(cfg *Config, srcs ...Source) (*Rules, error) {
	var variants map[rune]rune
	if cfg.Variants != "" {
		data, err := os.ReadFile(cfg.Variants)
		if err != nil {
			return nil, fmt.Errorf("variants: %w", err)
		}
		if variants, err = parseVariants(cfg.Variants, data); err != nil {
			return nil, err
		}
	}
	rs := &Rules{norm: newNormalizer(variants, cfg.StripInvisible, cfg.StripSeparators)}
	var patterns [][]rune
	for _, src := range srcs {
		rs.files = append(rs.files, src.Name)
		p := parser{file: src.Name, base: baseName(src.Name), status: cfg.DefaultStatus, norm: rs.norm}
		sc := bufio.NewScanner(bytes.NewReader(src.Data))
		sc.Buffer(nil, 64<<10)
		for p.line = 1; sc.Scan(); p.line++ {
			rule, kw, re, lit, err := p.parseLine(sc.Text())
			if err != nil {
				return nil, err
			}
			if rule == nil {
				continue
			}
			i := int32(len(rs.rules))
			rs.rules = append(rs.rules, *rule)
			if re != nil {
				rs.regexps = append(rs.regexps, ruleRegexp{re, lit, i})
			} else {
				patterns = append(patterns, kw)
				rs.kwRule = append(rs.kwRule, i)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, &ParseError{File: src.Name, Line: p.line, Reason: err.Error()}
		}
	}
	if len(patterns) > 0 {
		var ok bool
		if rs.ac, ok = buildAutomaton(patterns); !ok {
			return nil, ErrTooManyCharacters
		}
	}
	return rs, nil
}

func baseName(path string) string {
	if i := strings.LastIndexAny(path, `/\`); i >= 0 {
		return path[i+1:]
	}
	return path
}

type parser struct {
	file, base string
	line       int
	status     smpp.Status // for reject rules without their own
	norm       *normalizer
}

func (p *parser) errorf(format string, args ...any) error {
	return &ParseError{File: p.file, Line: p.line, Reason: fmt.Sprintf(format, args...)}
}

// parseLine parses one line: nil rule for a blank line, a comment or a directive; for a keyword
// rule, its matching form; for a regular expression rule, the compiled expression and literals
// one of which every match contains.
func (p *parser) parseLine(line string) (*Rule, []rune, *regexp.Regexp, [][]byte, error) {
	if p.line == 1 {
		line = strings.TrimPrefix(line, "\uFEFF")
	}
	if !utf8.ValidString(line) {
		return nil, nil, nil, nil, p.errorf("not UTF-8")
	}
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return nil, nil, nil, nil, nil
	}
	if line[0] == '@' {
		name, arg := cutField(line)
		if name != "@status" {
			return nil, nil, nil, nil, p.errorf("unknown directive %q (the only one is @status)", name)
		}
		st, err := parseStatus(arg)
		if err != nil {
			return nil, nil, nil, nil, p.errorf("@status: %v", err)
		}
		p.status = st
		return nil, nil, nil, nil, nil
	}
	category, rest := cutField(line)
	action, pattern := cutField(rest)
	if err := checkCategory(category); err != nil {
		return nil, nil, nil, nil, p.errorf("category %q: %v", category, err)
	}
	r := &Rule{ID: p.base + ":" + strconv.Itoa(p.line), Category: category}
	switch verb, status, hasStatus := strings.Cut(action, ":"); {
	case verb == "monitor" && !hasStatus:
		r.Action = Monitor
	case verb == "reject":
		r.Action, r.Status = Reject, p.status
		if hasStatus {
			st, err := parseStatus(status)
			if err != nil {
				return nil, nil, nil, nil, p.errorf("%s: %v", action, err)
			}
			r.Status = st
		}
	case action == "":
		return nil, nil, nil, nil, p.errorf("want CATEGORY ACTION PATTERN, got only %q", category)
	default:
		return nil, nil, nil, nil, p.errorf("action %q: want reject, reject:STATUS or monitor", action)
	}
	if pattern == "" {
		return nil, nil, nil, nil, p.errorf("no pattern after %q", action)
	}
	if expr, ok := strings.CutPrefix(pattern, "re:"); ok {
		re, lit, err := p.compileRegexp(expr)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		r.Pattern, r.Regexp = expr, true
		return r, nil, re, lit, nil
	}
	kw := p.norm.matchForm(nil, []rune(pattern))
	switch {
	case len(kw) == 0:
		return nil, nil, nil, nil, p.errorf("keyword %q is empty once normalised (spaces, punctuation and symbols are not matched): use a re: rule", pattern)
	case len(kw) > maxKeyword:
		return nil, nil, nil, nil, p.errorf("keyword is %d characters once normalised, more than %d", len(kw), maxKeyword)
	case len(kw) == 1 && kw[0] < 0x80:
		return nil, nil, nil, nil, p.errorf("keyword %q is one ASCII character once normalised: it would match most messages", pattern)
	}
	r.Pattern = string(kw)
	return r, kw, nil, nil, nil
}

// compileRegexp compiles a regular expression rule. It must be written against the text as
// normalised (see doc.go): a literal character that normalisation changes or removes could never
// match, and an expression matching the empty text would match every message.
func (p *parser) compileRegexp(expr string) (*regexp.Regexp, [][]byte, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, nil, p.errorf("re: %v", err)
	}
	if re.MatchString("") {
		return nil, nil, p.errorf("re: %q matches the empty text, so every message", expr)
	}
	tree, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, nil, p.errorf("re: %v", err)
	}
	var bad rune = -1
	var walk func(*syntax.Regexp)
	walk = func(t *syntax.Regexp) {
		if t.Op == syntax.OpLiteral && t.Flags&syntax.FoldCase == 0 {
			for _, r := range t.Rune {
				e := p.norm.lookup(r)
				if bad < 0 && (rune(e&runeMask) != r || e>>classShift == classInvis ||
					e>>classShift == classSpace && r != ' ') {
					bad = r
				}
			}
		}
		for _, s := range t.Sub {
			walk(s)
		}
	}
	walk(tree)
	if bad >= 0 {
		return nil, nil, p.errorf("re: %q never occurs in normalised text (write lower case, half-width, simplified Chinese, single spaces)", string(bad))
	}
	var lits [][]byte
	for _, l := range requiredLiterals(tree) {
		lits = append(lits, []byte(l))
	}
	return re, lits, nil
}

// requiredLiterals returns literals of which every match of t contains at least one (nil: none
// known), preferring the set whose shortest literal is longest. Checking for them first spares
// running the expression on most messages.
func requiredLiterals(t *syntax.Regexp) []string {
	switch t.Op {
	case syntax.OpLiteral:
		if t.Flags&syntax.FoldCase == 0 {
			return []string{string(t.Rune)}
		}
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(t.Sub[0])
	case syntax.OpRepeat:
		if t.Min >= 1 {
			return requiredLiterals(t.Sub[0])
		}
	case syntax.OpAlternate:
		var all []string
		for _, s := range t.Sub {
			l := requiredLiterals(s)
			if l == nil {
				return nil
			}
			all = append(all, l...)
		}
		if len(all) <= maxLiterals {
			return all
		}
	case syntax.OpConcat:
		var best []string
		run := ""
		for _, s := range t.Sub {
			l := requiredLiterals(s)
			if s.Op == syntax.OpLiteral && l != nil {
				run += l[0] // adjacent literals join
				l = []string{run}
			} else {
				run = ""
			}
			if l != nil && (best == nil || shortest(l) > shortest(best)) {
				best = l
			}
		}
		return best
	}
	return nil
}

// maxLiterals bounds the alternatives checked before an expression.
const maxLiterals = 8

func shortest(l []string) int {
	n := len(l[0])
	for _, s := range l[1:] {
		n = min(n, len(s))
	}
	return n
}

// cutField returns the first space- or tab-separated field of s and the rest, trimmed.
func cutField(s string) (field, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// checkCategory keeps categories usable as metric labels: 1-40 of a-z 0-9 _ - .
func checkCategory(c string) error {
	if c == "" || len(c) > 40 {
		return errors.New("want 1 to 40 characters")
	}
	if c == "none" || c == "binary" || c == "unsupported" {
		return errors.New("reserved for messages no rule matched")
	}
	for i := 0; i < len(c); i++ {
		if b := c[i]; !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_' || b == '-' || b == '.') {
			return errors.New("use only a-z, 0-9, _, - and dots")
		}
	}
	return nil
}

var statusNames = sync.OnceValue(func() map[string]smpp.Status {
	m := map[string]smpp.Status{}
	for i := range 0x500 {
		st := smpp.Status(i)
		if s := st.String(); strings.HasPrefix(s, "ESME_") {
			m[s] = st
		}
	}
	return m
})

// parseStatus reads a command_status: a name (ESME_RSUBMITFAIL), hex (0x45) or decimal (69).
func parseStatus(s string) (smpp.Status, error) {
	if st, ok := statusNames()[strings.ToUpper(s)]; ok && st != smpp.StatusOK {
		return st, nil
	}
	v, err := strconv.ParseUint(s, 0, 32)
	switch {
	case err != nil:
		return 0, fmt.Errorf("status %q: want a name like ESME_RSUBMITFAIL, or a number like 0x45", s)
	case v == 0:
		return 0, errors.New("status 0 (ESME_ROK) would accept the message")
	}
	return smpp.Status(v), nil
}
