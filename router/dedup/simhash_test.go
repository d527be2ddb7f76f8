package dedup

import (
	"strings"
	"testing"

	"github.com/smppd/smppd/router/content"
	"github.com/smppd/smppd/smpp"
)

// data_coding values the tests send text in.
const (
	codingGSM7   byte = 0x00
	codingIA5    byte = 0x01
	codingLatin1 byte = 0x03
	codingUCS2   byte = 0x08
)

// normalised returns the stream s (sent as UCS2) is fingerprinted from, markNumber as '#' and
// markName as '@'.
func normalised(s string) string {
	var trace []rune
	rs, _ := content.AppendText(nil, &smpp.Submit{DataCoding: codingUCS2, ShortMessage: ucs2(s)}, false)
	simhashRunes(rs, &trace)
	for i, r := range trace {
		switch r {
		case markNumber:
			trace[i] = '#'
		case markName:
			trace[i] = '@'
		}
	}
	return string(trace)
}

func TestNormalise(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Your code is 1234", "your code is #"},
		{"  Your   code\tis\n\n 98765  ", "your code is #"},
		{"Meet at 10:30, ok?", "meet at #, ok?"},
		{"Total 1,000.50 due 2024-03-05.", "total # due #."},
		{"See you at 3pm. Thanks", "see you at #. thanks"},
		{"Dear Anna, your table at Luigi is booked for Monday.", "dear @, your table at @ is booked for @."},
		{"Hello. Bob says hi! Carla too? Yes", "hello. bob says hi! carla too? yes"},
		{"Hi\nAnna here", "hi anna here"},
		{"ÄRGER über Öl", "ärger über @"},
		{"ΚΑΛΗΜΕΡΑ Νίκο", "καλημερα @"},
		{"您的验证码是123456，5分钟内有效。", "您的验证码是#，#分钟内有效。"},
		{"验证码：１２３４", "验证码：#"},
		{"尊敬的客户\u3000您好", "尊敬的客户 您好"},
		{"Order A7X92K shipped", "order @ shipped"},
		{"code 12ab34 now", "code # now"},
		{"Total: 5.", "total: #."},
	}
	for _, tt := range tests {
		if got := normalised(tt.in); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func fp(t *testing.T, text string, c byte) uint64 {
	t.Helper()
	var p []byte
	switch c {
	case codingGSM7:
		p = gsm7Bytes(t, text)
	case codingUCS2:
		p = ucs2(text)
	default:
		p = []byte(text)
	}
	f, ok := Fingerprint(&smpp.Submit{DataCoding: c, TLVs: smpp.AppendTLV(nil, smpp.TagMessagePayload, p)})
	if !ok {
		t.Fatalf("%q: no fingerprint", text)
	}
	return f
}

func TestFingerprintEncodings(t *testing.T) {
	for _, s := range []string{"Your code is 1234", "Dear Anna, your order has shipped!", "Hi"} {
		g, u, a := fp(t, s, codingGSM7), fp(t, s, codingUCS2), fp(t, s, codingIA5)
		if g != u || u != a {
			t.Errorf("%q: GSM7 %016x, UCS2 %016x, IA5 %016x: one text, one fingerprint", s, g, u, a)
		}
	}
}

// TestSimHashDistance checks that template variants are near (distance <= 3) and unrelated
// texts far (> 10), in English and Chinese, GSM 7-bit and UCS2.
func TestSimHashDistance(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		c    byte
		near bool
	}{
		{"one-time codes", "Your code is 1234", "Your code is 987654", codingGSM7, true},
		{"names and times", "Dear Anna, your appointment at City Dental is confirmed for Monday 10:30. Reply C to cancel.",
			"Dear Bob, your appointment at City Dental is confirmed for Tuesday 09:15. Reply C to cancel.", codingGSM7, true},
		{"short greeting", "Dear Anna, your appointment is confirmed.", "Dear Bob, your appointment is confirmed.", codingGSM7, true},
		{"parcel", "Hi Maximilian, your parcel 7781 from Zalando will arrive tomorrow between 10 and 12.",
			"Hi Jo, your parcel 1123 from Zalando will arrive tomorrow between 14 and 16.", codingGSM7, true},
		{"amounts", "You paid EUR 12.50 at Shell on 05/03. Balance: EUR 1,204.77", "You paid EUR 3.00 at Aral on 17/11. Balance: EUR 88.10", codingGSM7, true},
		{"English in UCS2 with an emoji", "Hi Anna 😀 your code is 1234", "Hi Tom 😀 your code is 5678", codingUCS2, true},
		{"Chinese code", "您的验证码是123456，5分钟内有效，请勿泄露。", "您的验证码是654321，10分钟内有效，请勿泄露。", codingUCS2, true},
		{"Chinese bank", "【招商银行】您尾号1234的银行卡于3月5日消费500元，如非本人操作请致电95555。",
			"【招商银行】您尾号9876的银行卡于11月15日消费12.50元，如非本人操作请致电95555。", codingUCS2, true},
		{"Chinese delivery", "【顺丰速运】您的快递SF1234567890已到达北京朝阳区驿站，取件码8-2-1234，请于18:00前取件。",
			"【顺丰速运】您的快递SF9876543210已到达北京朝阳区驿站，取件码3-1-5678，请于20:30前取件。", codingUCS2, true},
		{"unrelated English", "Your code is 1234", "Meeting moved to 3pm, bring the slides", codingGSM7, false},
		{"unrelated English, same words", "Your order has shipped and will arrive tomorrow.", "Tomorrow we will ship your new order, arriving soon.", codingGSM7, false},
		{"spam vs notice", "Dear Anna, your appointment is confirmed.", "WIN a FREE iPhone now! Click http://x.co/abc", codingGSM7, false},
		{"unrelated Chinese", "您的验证码是123456，5分钟内有效，请勿泄露。", "今晚七点在老地方见，别迟到", codingUCS2, false},
		{"Chinese code vs bank", "您的验证码是123456，5分钟内有效，请勿泄露。",
			"【招商银行】您尾号1234的银行卡于3月5日消费500元，如非本人操作请致电95555。", codingUCS2, false},
		{"Chinese vs English", "您的验证码是123456，5分钟内有效，请勿泄露。", "Your code is 123456, valid for 5 minutes, do not share it.", codingUCS2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Distance(fp(t, tt.a, tt.c), fp(t, tt.b, tt.c))
			if tt.near && d > 3 {
				t.Fatalf("distance %d, want <= 3 for template variants", d)
			}
			if !tt.near && d <= 10 {
				t.Fatalf("distance %d, want > 10 for unrelated texts", d)
			}
			t.Logf("distance %d", d)
		})
	}
}

func TestFingerprint(t *testing.T) {
	text := gsm7Bytes(t, "Your code is 1234")
	plain := msg(nil, "1", 0, text)
	want, ok := Fingerprint(&plain.Submit)
	if !ok {
		t.Fatal("no fingerprint")
	}
	for name, s := range map[string]*smpp.Submit{
		"with a concatenation header": &msg(nil, "1", 0, text, udhPart(1, 2, 1)).Submit,
		"in message_payload":          &msg(nil, "1", 0, text, asPayload).Submit,
		"flash (class 0)":             &msg(nil, "1", 0xF0, text).Submit,
	} {
		if got, ok := Fingerprint(s); !ok || got != want {
			t.Errorf("%s: %016x %v, want %016x", name, got, ok, want)
		}
	}
	for name, s := range map[string]*smpp.Submit{
		"binary":          &msg(nil, "1", 0x04, text).Submit,
		"8-bit class 1":   &msg(nil, "1", 0xF5, text).Submit,
		"empty":           &msg(nil, "1", 0, nil).Submit,
		"only a header":   &msg(nil, "1", 0, nil, udhPart(1, 2, 1)).Submit,
		"undecoded (JIS)": &msg(nil, "1", 0x05, text).Submit,
	} {
		if got, ok := Fingerprint(s); ok {
			t.Errorf("%s: fingerprint %016x, want none", name, got)
		}
	}
	// Texts too short for a 3-gram still get distinct fingerprints.
	a, b := fp(t, "Hi", codingGSM7), fp(t, "Yo", codingGSM7)
	if a == b {
		t.Error(`"Hi" and "Yo" have one fingerprint`)
	}
	// A long text (several chunks, more than 255 3-grams) fingerprints like itself.
	long := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 40)
	if fp(t, long, codingGSM7) != fp(t, long, codingUCS2) {
		t.Error("long text: GSM7 and UCS2 fingerprints differ")
	}
	if d := Distance(fp(t, long, codingGSM7), fp(t, long+"And then some.", codingGSM7)); d > 3 {
		t.Errorf("long text with a short tail: distance %d", d)
	}
}

func TestFingerprintAllocs(t *testing.T) {
	for _, m := range []*smpp.Submit{
		&msg(nil, "1", 0, gsm7Bytes(t, benchGSM7)).Submit,
		&msg(nil, "1", 8, ucs2(benchUCS2)).Submit,
		&msg(nil, "1", 8, ucs2(strings.Repeat(benchUCS2, 10)), asPayload).Submit,
	} {
		if n := testing.AllocsPerRun(100, func() { Fingerprint(m) }); n != 0 {
			t.Errorf("Fingerprint: %v allocs, want 0", n)
		}
	}
}
