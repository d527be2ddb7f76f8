package smpp

import (
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/linxGnu/gosmpp/data"
)

func TestEncodeSplit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		text      string
		dc        byte
		parts     int
		partBytes int // max octets of any part
	}{
		{"short gsm", "hello", 0x00, 1, 160},
		{"160 gsm fits one", strings.Repeat("a", 160), 0x00, 1, 160},
		{"161 gsm needs two", strings.Repeat("a", 161), 0x00, 2, 153},
		{"gsm escape not cut", strings.Repeat("a", 152) + "€" + strings.Repeat("b", 20), 0x00, 2, 153},
		{"chinese ucs2", "您的验证码是 123456", 0x08, 1, 140},
		{"71 ucs2 chars", strings.Repeat("验", 71), 0x08, 2, 134},
		{"emoji not cut", strings.Repeat("验", 66) + "😀" + strings.Repeat("x", 10), 0x08, 2, 134},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts, dc := EncodeText(tc.text)
			if dc != tc.dc || len(parts) != tc.parts {
				t.Fatalf("encode: dc 0x%02x, %d parts; want 0x%02x, %d", dc, len(parts), tc.dc, tc.parts)
			}
			var all []byte
			for _, p := range parts {
				if len(p) > tc.partBytes {
					t.Fatalf("part of %d octets, limit %d", len(p), tc.partBytes)
				}
				if dc == 0x00 && len(p) > 0 && p[len(p)-1] == 0x1B {
					t.Fatal("GSM escape split from its character")
				}
				if dc == 0x08 {
					if len(p)%2 != 0 {
						t.Fatal("UCS2 part with half a code unit")
					}
					if u := rune(p[len(p)-2])<<8 | rune(p[len(p)-1]); utf16.IsSurrogate(u) && u < 0xDC00 {
						t.Fatal("UCS2 part ends inside a surrogate pair")
					}
				}
				all = append(all, p...)
			}
			if dc == 0x08 {
				var units []uint16
				for i := 0; i < len(all); i += 2 {
					units = append(units, uint16(all[i])<<8|uint16(all[i+1]))
				}
				if got := string(utf16.Decode(units)); got != tc.text {
					t.Fatalf("reassembled %q, want %q", got, tc.text)
				}
			} else if got, err := data.GSM7BIT.Decode(all); err != nil || got != tc.text {
				t.Fatalf("reassembled %q (%v), want %q", got, err, tc.text)
			}
		})
	}
}
