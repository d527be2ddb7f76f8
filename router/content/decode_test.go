package content

import (
	"testing"

	"github.com/smppd/smppd/smpp"
)

func TestCodingOf(t *testing.T) {
	for _, tc := range []struct {
		dc     byte
		packed bool
		want   Coding
	}{
		{0x00, false, CodingGSM7},
		{0x00, true, CodingGSM7Packed},
		{0x01, false, CodingIA5},
		{0x01, true, CodingIA5},
		{0x02, false, CodingBinary},
		{0x03, false, CodingLatin1},
		{0x04, false, CodingBinary},
		{0x06, false, CodingUnsupported}, // Cyrillic ISO 8859-5
		{0x08, false, CodingUCS2},
		{0x0E, false, CodingUnsupported}, // KS C 5601
		{0x10, false, CodingGSM7},        // GSM DCS: class 0, 7-bit
		{0x11, true, CodingGSM7Packed},
		{0x14, false, CodingBinary}, // 8-bit with class
		{0x18, false, CodingUCS2},   // UCS2 with class
		{0x1C, false, CodingUnsupported},
		{0x30, false, CodingUnsupported}, // compressed
		{0x48, false, CodingUCS2},        // automatic deletion group, UCS2
		{0x90, false, CodingUnsupported}, // reserved
		{0xC0, false, CodingGSM7},
		{0xE0, false, CodingUCS2},
		{0xF0, false, CodingGSM7}, // flash, 7-bit
		{0xF4, false, CodingBinary},
		{0xF7, false, CodingBinary},
	} {
		if got := CodingOf(tc.dc, tc.packed); got != tc.want {
			t.Errorf("CodingOf(0x%02X, %v) = %s, want %s", tc.dc, tc.packed, got, tc.want)
		}
	}
}

func TestDecodeGSM7(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"ascii letters", []byte("Hello World 123"), "Hello World 123"},
		{"default alphabet specials", []byte{0x00, 0x01, 0x02, 0x03, 0x10, 0x11, 0x18, 0x1E, 0x24, 0x40, 0x5B, 0x5F, 0x60, 0x7F},
			"@£$¥Δ_Σß¤¡Ä§¿à"},
		{"extension table", []byte{0x1B, 0x65, 0x1B, 0x3C, 0x1B, 0x3E, 0x1B, 0x28, 0x1B, 0x29, 0x1B, 0x3D, 0x1B, 0x40, 0x1B, 0x14, 0x1B, 0x2F},
			"€[]{}~|^\\"},
		{"unknown extension shows the base character", []byte{0x1B, 0x41}, "A"},
		{"escape at the end is dropped", []byte{'a', 0x1B}, "a"},
		{"octets above 0x7F are not GSM", []byte{'a', 0xE9, 'b'}, "a\uFFFDb"},
		{"newline and carriage return", []byte{'a', 0x0A, 'b', 0x0D}, "a\nb\r"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(AppendDecoded(nil, CodingGSM7, tc.in)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDecodeGSM7RoundTrip decodes what smpp.EncodeText (gosmpp's GSM codec) encodes.
func TestDecodeGSM7RoundTrip(t *testing.T) {
	for _, text := range []string{
		"Win €500 now! Reply [YES] or {NO} ~ | ^ \\",
		"Grüße aus Köln: 5€ für Ärzte, ñandu, Øresund, Åland, ÆØÅ æøå, ¿qué? ¡sé!",
		"ΔΦΓΛΩΠΨΣΘΞ @£$¥ èéùìòÇ",
	} {
		got := string(AppendDecoded(nil, CodingGSM7, gsm(t, text)))
		if got != text {
			t.Errorf("round trip: got %q, want %q", got, text)
		}
	}
}

// pack packs septets (GSM 03.38 §6.1.2.1), after fill zero bits.
func pack(septets []byte, fill int) []byte {
	var out []byte
	var acc uint32
	n := fill
	for _, s := range septets {
		acc |= uint32(s&0x7F) << n
		n += 7
		for n >= 8 {
			out = append(out, byte(acc))
			acc >>= 8
			n -= 8
		}
	}
	if n > 0 {
		out = append(out, byte(acc))
	}
	return out
}

func TestDecodeGSM7Packed(t *testing.T) {
	// The classic example from GSM 03.38: "hellohello" packs to E8329BFD4697D9EC37.
	vec := []byte{0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37}
	if got := string(AppendDecoded(nil, CodingGSM7Packed, vec)); got != "hellohello" {
		t.Fatalf("hellohello: got %q", got)
	}
	if got := pack([]byte("hellohello"), 0); string(got) != string(vec) {
		t.Fatalf("test packer: got % X", got)
	}
	// Escapes across octet boundaries.
	sept := []byte{'P', 'a', 'y', ' ', 0x1B, 0x65, '5', ' ', 0x1B, 0x3C, 'o', 'k', 0x1B, 0x3E}
	if got := string(AppendDecoded(nil, CodingGSM7Packed, pack(sept, 0))); got != "Pay €5 [ok]" {
		t.Fatalf("escapes: got %q", got)
	}
	// After a 6-octet UDH (48 bits) the text starts at septet 7, after one fill bit.
	udh := []byte{5, 0, 3, 0x2A, 2, 1}
	payload := append(append([]byte{}, udh...), pack([]byte("free money"), 1)...)
	s := parse(t, &smpp.Submit{ESMClass: 0x40, DataCoding: 0, ShortMessage: payload})
	text, c := AppendText(nil, s, true)
	if c != CodingGSM7Packed || string(text) != "free money" {
		t.Fatalf("packed after UDH: %s %q", c, string(text))
	}
	// Unpacked reading of the same message is something else entirely: packing is never guessed.
	if text, _ := AppendText(nil, s, false); string(text) == "free money" {
		t.Fatal("unpacked reading decoded packed text")
	}
}

func TestDecodeUCS2(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"chinese", ucs2("免费领取大奖"), "免费领取大奖"},
		{"traditional", ucs2("恭喜您中獎了"), "恭喜您中獎了"},
		{"emoji surrogate pairs", ucs2("🎁 gift 🎉"), "🎁 gift 🎉"},
		{"odd trailing octet dropped", append(ucs2("ab"), 0x00), "ab"},
		{"lone high surrogate", []byte{0xD8, 0x3C, 0x00, 'a'}, "\uFFFDa"},
		{"lone low surrogate", []byte{0xDF, 0x81, 0x00, 'a'}, "\uFFFDa"},
		{"high surrogate at the end", []byte{0x00, 'a', 0xD8, 0x3C}, "a\uFFFD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(AppendDecoded(nil, CodingUCS2, tc.in)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecodeLatin1AndIA5(t *testing.T) {
	if got := string(AppendDecoded(nil, CodingLatin1, []byte{'C', 'a', 'f', 0xE9, ' ', 0xA3, '5'})); got != "Café £5" {
		t.Fatalf("latin1: %q", got)
	}
	if got := string(AppendDecoded(nil, CodingIA5, []byte{'@', '$', '_', 0xE9})); got != "@$_\uFFFD" {
		t.Fatalf("ia5: %q", got)
	}
	if got := AppendDecoded(nil, CodingBinary, []byte("free money")); len(got) != 0 {
		t.Fatalf("binary decoded as %q", string(got))
	}
}

func TestUserData(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    smpp.Submit
		want string
	}{
		{"short_message", smpp.Submit{ShortMessage: []byte("hello")}, "hello"},
		{"udh skipped", smpp.Submit{ESMClass: 0x40, ShortMessage: []byte("\x05\x00\x03\x01\x02\x01hello")}, "hello"},
		{"udh flag off: udh kept", smpp.Submit{ShortMessage: []byte("\x05\x00\x03\x01\x02\x01hello")}, "\x05\x00\x03\x01\x02\x01hello"},
		{"udh longer than message", smpp.Submit{ESMClass: 0x40, ShortMessage: []byte("\x09\x00\x03")}, ""},
		{"message_payload", smpp.Submit{TLVs: smpp.AppendTLV(nil, smpp.TagMessagePayload, []byte("long text"))}, "long text"},
		{"message_payload with udh", smpp.Submit{ESMClass: 0x40, TLVs: smpp.AppendTLV(nil, smpp.TagMessagePayload, []byte("\x05\x00\x03\x01\x02\x01long"))}, "long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := parse(t, &tc.s)
			if got := string(UserData(s)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	g := parse(t, &smpp.Submit{ShortMessage: gsm(t, "Win €500 now! Reply [YES]")})
	u := parse(t, &smpp.Submit{DataCoding: 8, ShortMessage: ucs2("🎁免费领取大奖")})
	buf := make([]rune, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		buf, _ = AppendText(buf[:0], g, false)
		buf, _ = AppendText(buf[:0], u, false)
	}); n != 0 {
		t.Fatalf("%v allocations per decode", n)
	}
}
