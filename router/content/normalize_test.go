package content

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalize(t *testing.T) {
	n := newNormalizer(nil, true, true)
	for _, tc := range []struct {
		name, in, collapsed, compact string
	}{
		{"lower case latin", "FREE Money", "free money", "freemoney"},
		{"lower case cyrillic and greek", "ПРИВЕТ ΚΑΛΗΜΕΡΑ ΣΟΦΟΣ", "привет καλημερα σοφοσ", "приветκαλημερασοφοσ"},
		{"final sigma folds", "σοφός", "σοφόσ", "σοφόσ"},
		{"full-width to half-width", "ＦＲＥＥ　ｍｏｎｅｙ！１２３", "free money!123", "freemoney123"},
		{"whitespace runs collapse and ends trim", " \t free\n\n  money \r\n", "free money", "freemoney"},
		{"no-break and ideographic spaces", "free\u00a0money\u3000now", "free money now", "freemoneynow"},
		{"zero-width characters", "fr\u200bee\u200c m\u200do\u2060n\ufeffe\u00ady", "free money", "freemoney"},
		{"spaced-out letters", "f r e e  m o n e y", "f r e e m o n e y", "freemoney"},
		{"separators between letters", "f.r.e.e-m_o*n|e/y", "f.r.e.e-m_o*n|e/y", "freemoney"},
		{"traditional to simplified", "免費貸款，請點擊連結", "免费贷款,请点击连结", "免费贷款请点击连结"},
		{"chinese with separators", "贷 * 款 · 办 理", "贷 * 款 · 办 理", "贷款办理"},
		{"emoji are symbols", "🎁free🎁money🎉", "🎁free🎁money🎉", "freemoney"},
		{"variation selector is invisible", "❤\ufe0f love", "❤ love", "love"},
		{"mathematical and circled letters", "𝐅𝐑𝐄𝐄 ⓜⓞⓝⓔⓨ", "free money", "freemoney"},
		{"compatibility ideograph, then simplified", "\uF900", "岂", "岂"}, // U+F900 -> 豈 U+8C48 -> 岂
		{"digits stay", "call 555-0100", "call 555-0100", "call5550100"},
		{"gsm decode error symbol", "a\uFFFDb", "a\uFFFDb", "ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(n.appendNorm(nil, []rune(tc.in), false)); got != tc.collapsed {
				t.Errorf("collapsed: got %q, want %q", got, tc.collapsed)
			}
			if got := string(n.appendNorm(nil, []rune(tc.in), true)); got != tc.compact {
				t.Errorf("compact: got %q, want %q", got, tc.compact)
			}
		})
	}
}

func TestNormalizeOptions(t *testing.T) {
	keep := newNormalizer(nil, false, false)
	if got := string(keep.matchForm(nil, []rune("F\u200bR E E"))); got != "f\u200br e e" {
		t.Fatalf("keeping invisibles and separators: %q", got)
	}
	strip := newNormalizer(nil, true, false)
	if got := string(strip.matchForm(nil, []rune("F\u200bR  E E"))); got != "fr e e" {
		t.Fatalf("stripping invisibles only: %q", got)
	}
}

// TestNormalizeIdempotent: normalising the normal form changes nothing, so rules compiled from
// normalised text match it.
func TestNormalizeIdempotent(t *testing.T) {
	n := newNormalizer(nil, true, true)
	rng := rand.New(rand.NewPCG(1, 2))
	pool := []rune("aZ Ａ　ｚ１\t\n.,!€[]免費贷款ΣσςПп🎁\u200b\ufe0fİ𝐅ⓜ\uF900")
	for range 2000 {
		in := make([]rune, rng.IntN(30))
		for i := range in {
			in[i] = pool[rng.IntN(len(pool))]
		}
		for _, compact := range []bool{false, true} {
			once := n.appendNorm(nil, in, compact)
			twice := n.appendNorm(nil, once, compact)
			if !slices.Equal(once, twice) {
				t.Fatalf("compact=%v: %q -> %q -> %q", compact, string(in), string(once), string(twice))
			}
		}
	}
}

func TestBuiltinVariants(t *testing.T) {
	m := builtinT2S()
	if len(m) < 1000 {
		t.Fatalf("%d built-in pairs, want at least 1000", len(m))
	}
	for trad, simp := range map[rune]rune{'費': '费', '貸': '贷', '發': '发', '髮': '发', '獎': '奖', '點': '点', '擊': '击', '銀': '银', '證': '证', '碼': '码', '賺': '赚', '錢': '钱'} {
		if m[trad] != simp {
			t.Errorf("%c -> %c, want %c", trad, m[trad], simp)
		}
	}
	for from, to := range m {
		if from == to || m[to] != 0 && m[to] != to {
			t.Errorf("pair %c -> %c is not a final mapping (%c -> %c)", from, to, to, m[to])
		}
	}
}

func TestParseVariants(t *testing.T) {
	m, err := parseVariants("t2s.txt", []byte("\uFEFF# comment\n妳\t你\n\n乾\t干 乾\r\n"))
	if err != nil || m['妳'] != '你' || m['乾'] != '干' || len(m) != 2 {
		t.Fatalf("got %v, %v", m, err)
	}
	for _, bad := range []string{"妳你\n", "妳\t\n", "ab\tc\n", "妳\t你们\n"} {
		_, err := parseVariants("t2s.txt", []byte("# ok\n"+bad))
		var pe *ParseError
		if !errors.As(err, &pe) || pe.File != "t2s.txt" || pe.Line != 2 || !strings.HasPrefix(err.Error(), "t2s.txt:2: ") {
			t.Errorf("%q: got %v", bad, err)
		}
	}
	// A variants file extends the built-in table.
	n := newNormalizer(m, true, true)
	if got := string(n.matchForm(nil, []rune("妳好，免費"))); got != "你好免费" {
		t.Fatalf("with variants: %q", got)
	}
	if got := string(newNormalizer(nil, true, true).matchForm(nil, []rune("妳好"))); got != "妳好" {
		t.Fatalf("without variants: %q", got)
	}
}

func TestLookupAboveTable(t *testing.T) {
	n := newNormalizer(nil, true, true)
	for _, tc := range []struct {
		r     rune
		want  rune
		class uint32
	}{
		{0x20000, 0x20000, classLetter}, // CJK extension B
		{0xE0041, 0xE0041, classInvis},  // tag character
		{0xE0100, 0xE0100, classInvis},  // variation selector supplement
		{-1, utf8.RuneError, classSep},
		{0x110000, utf8.RuneError, classSep},
	} {
		e := n.lookup(tc.r)
		if rune(e&runeMask) != tc.want || e>>classShift != tc.class {
			t.Errorf("%U: got %U class %d", tc.r, rune(e&runeMask), e>>classShift)
		}
	}
}
