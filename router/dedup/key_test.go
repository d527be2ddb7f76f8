package dedup

import (
	"bytes"
	"testing"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

func TestKeyOf(t *testing.T) {
	acme, other := &smpp.Account{SystemID: "acme"}, &smpp.Account{SystemID: "other"}
	long := &smpp.Account{SystemID: string(bytes.Repeat([]byte("x"), 100))}
	en := gsm7Bytes(t, "Your code is 123456. It expires in 10 minutes.")
	zh := ucs2("您的验证码是123456，5分钟内有效，请勿泄露。")
	big := bytes.Repeat([]byte("abcdefghij"), 100) // 1000 octets: hashed apart from the rest
	big2 := append(bytes.Clone(big[:len(big)-1]), 'X')
	wap := []byte{0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0} // port addressing, no concatenation

	tests := []struct {
		name string
		a, b *router.Message
		same bool
	}{
		{"identical GSM7", msg(acme, "491701234567", 0, en), msg(acme, "491701234567", 0, en), true},
		{"identical UCS2 Chinese", msg(acme, "8613800138000", 8, zh), msg(acme, "8613800138000", 8, zh), true},
		{"other destination", msg(acme, "491701234567", 0, en), msg(acme, "491701234568", 0, en), false},
		{"other account", msg(acme, "491701234567", 0, en), msg(other, "491701234567", 0, en), false},
		{"long system_id", msg(long, "491701234567", 0, en), msg(long, "491701234567", 0, en), true},
		{"other text", msg(acme, "491701234567", 0, en), msg(acme, "491701234567", 0, gsm7Bytes(t, "Your code is 123457. It expires in 10 minutes.")), false},
		{"other Chinese text", msg(acme, "8613800138000", 8, zh), msg(acme, "8613800138000", 8, ucs2("您的验证码是654321，5分钟内有效，请勿泄露。")), false},
		{"destination digits only", msg(acme, "+49 170 1234567", 0, en), msg(acme, "491701234567", 0, en), true},
		{"normalised destination wins", msg(acme, "01701234567", 0, en, withDest(491701234567)), msg(acme, "+491701234567", 0, en, withDest(491701234567)), true},
		{"normalised destinations differ", msg(acme, "01701234567", 0, en, withDest(491701234567)), msg(acme, "01701234567", 0, en, withDest(431701234567)), false},
		{"alphanumeric destination", msg(acme, "SERVICE", 0, en), msg(acme, "SERVICE", 0, en), true},
		{"alphanumeric destinations differ", msg(acme, "SERVICE", 0, en), msg(acme, "SUPPORT", 0, en), false},
		{"same alphabet, other class bits", msg(acme, "491701234567", 0x00, en), msg(acme, "491701234567", 0xF0, en), true},
		{"other alphabet", msg(acme, "491701234567", 0x00, en), msg(acme, "491701234567", 0x08, en), false},
		{"GSM7 vs IA5", msg(acme, "491701234567", 0x00, en), msg(acme, "491701234567", 0x01, en), false},
		{"undecoded alphabets by value", msg(acme, "491701234567", 0x05, en), msg(acme, "491701234567", 0x06, en), false},
		{"short_message vs message_payload", msg(acme, "491701234567", 0, en), msg(acme, "491701234567", 0, en, asPayload), true},
		{"long payload", msg(acme, "491701234567", 4, big, asPayload), msg(acme, "491701234567", 4, big, asPayload), true},
		{"long payloads differ in the last octet", msg(acme, "491701234567", 4, big, asPayload), msg(acme, "491701234567", 4, big2, asPayload), false},
		{"parts 1 and 2, same text", msg(acme, "491701234567", 0, en, udhPart(7, 2, 1)), msg(acme, "491701234567", 0, en, udhPart(7, 2, 2)), false},
		{"part 1 of 2 vs of 3", msg(acme, "491701234567", 0, en, udhPart(7, 2, 1)), msg(acme, "491701234567", 0, en, udhPart(7, 3, 1)), false},
		{"part 1 under a new reference", msg(acme, "491701234567", 0, en, udhPart(7, 2, 1)), msg(acme, "491701234567", 0, en, udhPart(8, 2, 1)), true},
		{"8-bit vs 16-bit reference", msg(acme, "491701234567", 0, en, udhPart(7, 2, 1)), msg(acme, "491701234567", 0, en, udh16Part(0x1234, 2, 1)), true},
		{"UDH vs SAR", msg(acme, "491701234567", 0, en, udhPart(7, 2, 1)), msg(acme, "491701234567", 0, en, sarPart(7, 2, 1)), true},
		{"SAR parts differ", msg(acme, "491701234567", 0, en, sarPart(7, 2, 1)), msg(acme, "491701234567", 0, en, sarPart(7, 2, 2)), false},
		{"part vs single message", msg(acme, "491701234567", 0, en, udhPart(7, 2, 1)), msg(acme, "491701234567", 0, en), false},
		{"other header elements count", msg(acme, "491701234567", 4, append(bytes.Clone(wap), 1, 2, 3), func(m *router.Message) { m.Submit.ESMClass = 0x40 }),
			msg(acme, "491701234567", 4, []byte{1, 2, 3}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := KeyOf(tt.a), KeyOf(tt.b)
			if (ka == kb) != tt.same {
				t.Fatalf("keys %x and %x: same=%v, want %v", ka, kb, ka == kb, tt.same)
			}
		})
	}
}

func TestKeyConcatRef(t *testing.T) {
	acme := &smpp.Account{SystemID: "acme"}
	p := gsm7Bytes(t, "part of a long message")
	a := msg(acme, "491701234567", 0, p, udhPart(7, 2, 1))
	b := msg(acme, "491701234567", 0, p, udhPart(8, 2, 1))
	if keyOf(a, false) != keyOf(b, false) {
		t.Fatal("without KeyConcatRef the reference must not count")
	}
	if keyOf(a, true) == keyOf(b, true) {
		t.Fatal("with KeyConcatRef the reference must count")
	}
	if keyOf(a, true) != keyOf(msg(acme, "491701234567", 0, p, udhPart(7, 2, 1)), true) {
		t.Fatal("with KeyConcatRef equal parts must still be equal")
	}
}

func TestKeyOfAllocs(t *testing.T) {
	acme := &smpp.Account{SystemID: "acme"}
	for _, m := range []*router.Message{
		msg(acme, "491701234567", 0, gsm7Bytes(t, benchGSM7)),
		msg(acme, "491701234567", 8, ucs2(benchUCS2), udhPart(1, 2, 1)),
		msg(acme, "491701234567", 4, bytes.Repeat([]byte{1}, 2000), asPayload),
	} {
		if n := testing.AllocsPerRun(100, func() { KeyOf(m) }); n != 0 {
			t.Errorf("KeyOf: %v allocs, want 0", n)
		}
	}
}
