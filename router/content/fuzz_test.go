package content

import (
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/smppd/smppd/smpp"
)

// FuzzDecode: any octets in any coding decode without panicking, into at most one character per
// octet, and normalise into valid characters; UCS2 of valid text round-trips.
func FuzzDecode(f *testing.F) {
	f.Add(byte(0), byte(0), []byte("Win \x1b\x65500 [now]"))
	f.Add(byte(0x40), byte(8), append([]byte{5, 0, 3, 1, 2, 1}, ucs2("免费🎁")...))
	f.Add(byte(0x40), byte(0), []byte{0xFF, 0x1B})
	f.Add(byte(0), byte(0xF0), []byte{0xE8, 0x32, 0x9B, 0xFD})
	f.Add(byte(0), byte(8), []byte{0xD8, 0x3C})
	n := newNormalizer(nil, true, true)
	f.Fuzz(func(t *testing.T, esm, dc byte, sm []byte) {
		if len(sm) > 254 {
			sm = sm[:254]
		}
		s := &smpp.Submit{ESMClass: esm, DataCoding: dc, ShortMessage: sm}
		for _, packed := range []bool{false, true} {
			text, c := AppendText(nil, s, packed)
			if len(text) > len(sm)*8/7+1 || !c.Text() && len(text) != 0 {
				t.Fatalf("%s: %d characters from %d octets", c, len(text), len(sm))
			}
			for _, compact := range []bool{false, true} {
				for _, r := range n.appendNorm(nil, text, compact) {
					if !utf8.ValidRune(r) {
						t.Fatalf("invalid rune %U", r)
					}
				}
			}
		}
		if utf8.Valid(sm) {
			text := []rune(string(sm))
			if got := string(AppendDecoded(nil, CodingUCS2, ucs2(string(sm)))); got != string(text) {
				t.Fatalf("UCS2 round trip: %q != %q", got, string(text))
			}
		}
	})
}

// FuzzCompile: any rule file compiles or fails with a ParseError; compiled rules judge any text.
func FuzzCompile(f *testing.F) {
	f.Add([]byte(exampleRules), "free money 网上赌场")
	f.Add([]byte("a reject re:(x|y)+z\n@status 0x58\nb monitor 贷款\n"), "xyz 贷*款")
	f.Fuzz(func(t *testing.T, rules []byte, text string) {
		cfg := DefaultConfig()
		rs, err := Compile(&cfg, Source{Name: "f", Data: rules})
		var pe *ParseError
		if err != nil {
			if !errors.As(err, &pe) && !errors.Is(err, ErrTooManyCharacters) {
				t.Fatalf("error without a file and line: %v", err)
			}
			return
		}
		fl := &Filter{cfg: cfg}
		fl.pool.New = func() any { return new(scratch) }
		fl.rules.Store(rs)
		d := fl.Check([]rune(text))
		if (d.Action == Reject || d.Action == Monitor) != (d.Rule != nil) {
			t.Fatalf("decision %s with rule %v", d.Action, d.Rule)
		}
	})
}
