package smpp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"unicode/utf16"
)

// dlr builds a deliver_sm body with the given esm_class, data_coding, short_message and TLVs.
func dlr(esm, dc byte, sm string, tlvs ...[]byte) []byte {
	s := Submit{
		ServiceType: []byte("CMT"), SrcTON: 1, SrcNPI: 1, SrcAddr: []byte("4915112345678"),
		DstTON: 5, DstNPI: 0, DstAddr: []byte("Brand"), ESMClass: esm, ProtocolID: 0x7f, PriorityFlag: 1,
		RegisteredDelivery: 0, DataCoding: dc, ShortMessage: []byte(sm), TLVs: bytes.Join(tlvs, nil),
	}
	return AppendSubmitPDU(nil, DeliverSM, 1, &s)[HeaderLen:]
}

func tlv(tag uint16, v string) []byte { return AppendTLV(nil, tag, []byte(v)) }

// ucs2 encodes s as big-endian UTF-16.
func ucs2(s string) string {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.BigEndian.AppendUint16(b, u)
	}
	return string(b)
}

func mustParse(t testing.TB, body []byte) *Submit {
	t.Helper()
	var s Submit
	if err := ParseSubmit(body, &s); err != nil {
		t.Fatalf("ParseSubmit: %v", err)
	}
	return &s
}

const (
	stdText  = "id:1234567890 sub:001 dlvrd:001 submit date:2301011200 done date:2301011201 stat:DELIVRD err:000 text:Hello world"
	dlrESM   = 0x04 // SMSC delivery receipt
	vendorTL = 0x1401
)

func TestParseReceipt(t *testing.T) {
	id64 := strings.Repeat("7f", 32)
	tests := []struct {
		name      string
		body      []byte
		isReceipt bool
		id        string // Receipt.ID; "" with wantErr
		textID    string // "" means nil
		tlvID     string
		stat, err string
		state     int // -1: HasState false
		wantErr   error
	}{
		{"standard appendix B", dlr(dlrESM, 0, stdText), true, "1234567890", "1234567890", "", "DELIVRD", "000", -1, nil},
		{"upper-case field names", dlr(dlrESM, 0, "ID:ABCDEF12 SUB:001 DLVRD:001 SUBMIT DATE:2301011200 DONE DATE:2301011201 STAT:UNDELIV ERR:001 TEXT:Hi"),
			true, "ABCDEF12", "ABCDEF12", "", "UNDELIV", "001", -1, nil},
		{"mixed-case Stat and Err", dlr(dlrESM, 0, "Id:77 Sub:001 Dlvrd:000 Submit date:2301011200 Done date:2301011201 Stat:EXPIRED Err:027 Text:x"),
			true, "77", "77", "", "EXPIRED", "027", -1, nil},
		{"status and error spelled out", dlr(dlrESM, 0, "id:77 status:REJECTD error:0x0B"), true, "77", "77", "", "REJECTD", "0x0B", -1, nil},
		{"no text field", dlr(dlrESM, 0, "id:42 sub:001 dlvrd:001 submit date:2301011200 done date:2301011201 stat:DELIVRD err:000"),
			true, "42", "42", "", "DELIVRD", "000", -1, nil},
		{"extra fields", dlr(dlrESM, 0, "id:42 sub:001 dlvrd:001 submit date:2301011200 done date:2301011201 stat:DELIVRD err:000 mccmnc:26201 price:0.012 text:x"),
			true, "42", "42", "", "DELIVRD", "000", -1, nil},
		{"fields reordered", dlr(dlrESM, 0, "stat:ACCEPTD err:0 id:9"), true, "9", "9", "", "ACCEPTD", "0", -1, nil},
		{"leading zeros kept", dlr(dlrESM, 0, "id:0000012345 stat:DELIVRD err:000"), true, "0000012345", "0000012345", "", "DELIVRD", "000", -1, nil},
		{"hex id upper case", dlr(dlrESM, 0, "id:0A1B2C3D4E5F stat:DELIVRD"), true, "0A1B2C3D4E5F", "0A1B2C3D4E5F", "", "DELIVRD", "", -1, nil},
		{"hex id lower case", dlr(dlrESM, 0, "id:0a1b2c3d4e5f stat:DELIVRD"), true, "0a1b2c3d4e5f", "0a1b2c3d4e5f", "", "DELIVRD", "", -1, nil},
		{"64-character id", dlr(dlrESM, 0, "id:"+id64+" stat:DELIVRD"), true, id64, id64, "", "DELIVRD", "", -1, nil},
		{"extra spaces, value after the colon's space", dlr(dlrESM, 0, "  id:  77   sub:001  stat: ENROUTE   err:0  "), true, "77", "77", "", "ENROUTE", "0", -1, nil},
		{"empty id value is none", dlr(dlrESM, 0, "id: sub:001 stat:DELIVRD"), true, "", "", "", "DELIVRD", "", -1, ErrNoReceiptID},
		{"CRLF separated", dlr(dlrESM, 0, "id:5\r\nstat:DELIVRD\r\nerr:0\r\n"), true, "5", "5", "", "DELIVRD", "0", -1, nil},
		{"trailing NUL", dlr(dlrESM, 0, "id:7 stat:DELIVRD err:0\x00"), true, "7", "7", "", "DELIVRD", "0", -1, nil},
		{"id: inside text: is not the id", dlr(dlrESM, 0, "sub:001 dlvrd:001 stat:DELIVRD err:000 text:your id:12345"), true, "", "", "", "DELIVRD", "000", -1, ErrNoReceiptID},
		{"fields inside text: do not override", dlr(dlrESM, 0, "id:1 stat:DELIVRD err:0 Text:id:2 stat:UNDELIV err:9"), true, "1", "1", "", "DELIVRD", "0", -1, nil},
		{"name must start a word", dlr(dlrESM, 0, "msgid:5 xstat:DELIVRD id:6"), true, "6", "6", "", "", "", -1, nil},
		{"TLV only, empty short_message", dlr(dlrESM, 0, "", tlv(TagReceiptedMsgID, "abc123\x00"), tlv(TagMessageState, "\x02")),
			true, "abc123", "", "abc123", "", "", 2, nil},
		{"TLV without NUL", dlr(dlrESM, 0, "", tlv(TagReceiptedMsgID, "abc123")), true, "abc123", "", "abc123", "", "", -1, nil},
		{"TLV wins over text", dlr(dlrESM, 0, "id:255 stat:DELIVRD", tlv(TagReceiptedMsgID, "FF\x00"), tlv(TagMessageState, "\x02")),
			true, "FF", "255", "FF", "DELIVRD", "", 2, nil},
		{"empty TLV falls back to text", dlr(dlrESM, 0, "id:255 stat:DELIVRD", tlv(TagReceiptedMsgID, "\x00")), true, "255", "255", "", "DELIVRD", "", -1, nil},
		{"TLV only, esm_class 0", dlr(0, 0, "", tlv(TagReceiptedMsgID, "9\x00")), true, "9", "", "9", "", "", -1, nil},
		{"message_state of two octets ignored", dlr(dlrESM, 0, "", tlv(TagReceiptedMsgID, "9\x00"), tlv(TagMessageState, "\x00\x02")), true, "9", "", "9", "", "", -1, nil},
		{"message_payload receipt", dlr(dlrESM, 0, "", tlv(TagMessagePayload, "id:99 sub:001 dlvrd:001 stat:EXPIRED err:000 text:"), tlv(TagMessageState, "\x03")),
			true, "99", "99", "", "EXPIRED", "000", 3, nil},
		{"intermediate notification", dlr(0x20, 0, "id:5 sub:001 dlvrd:000 stat:ENROUTE err:000"), true, "5", "5", "", "ENROUTE", "000", -1, nil},
		{"SME delivery ack", dlr(0x08, 0, "id:5 stat:DELIVRD"), true, "5", "5", "", "DELIVRD", "", -1, nil},
		{"SME manual ack", dlr(0x10, 0, "id:5 stat:DELIVRD"), true, "5", "5", "", "DELIVRD", "", -1, nil},
		{"receipt with UDHI", dlr(0x44, 0, "id:5 stat:DELIVRD"), true, "5", "5", "", "DELIVRD", "", -1, nil},
		{"IA5", dlr(dlrESM, 1, stdText), true, "1234567890", "1234567890", "", "DELIVRD", "000", -1, nil},
		{"Latin-1", dlr(dlrESM, 3, stdText), true, "1234567890", "1234567890", "", "DELIVRD", "000", -1, nil},
		{"GSM class 1 coding", dlr(dlrESM, 0xF1, stdText), true, "1234567890", "1234567890", "", "DELIVRD", "000", -1, nil},
		{"UCS2 text is not read", dlr(dlrESM, 8, ucs2(stdText), tlv(TagReceiptedMsgID, "1234567890\x00")),
			true, "1234567890", "", "1234567890", "", "", -1, nil},
		{"UCS2 without TLV has no id", dlr(dlrESM, 8, ucs2(stdText)), true, "", "", "", "", "", -1, ErrNoReceiptID},
		{"JIS text is not read", dlr(dlrESM, 5, stdText), true, "", "", "", "", "", -1, ErrNoReceiptID},
		{"normal MO", dlr(0, 0, "STOP id:1"), false, "1", "1", "", "", "", -1, nil},
		{"normal MO without id", dlr(0, 0, "hello world"), false, "", "", "", "", "", -1, ErrNoReceiptID},
		{"conversation abort is no receipt", dlr(0x18, 0, "bye"), false, "", "", "", "", "", -1, ErrNoReceiptID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.body)
			if got := IsReceipt(s); got != tt.isReceipt {
				t.Errorf("IsReceipt = %v, want %v", got, tt.isReceipt)
			}
			r, err := ParseReceipt(s)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseReceipt error %v, want %v", err, tt.wantErr)
			}
			for _, f := range []struct {
				name      string
				got       []byte
				want      string
				nilIfNone bool
			}{
				{"ID", r.ID, tt.id, true}, {"TextID", r.TextID, tt.textID, true}, {"TLVID", r.TLVID, tt.tlvID, true},
				{"Stat", r.Stat, tt.stat, true}, {"Err", r.Err, tt.err, true},
			} {
				if string(f.got) != f.want || (f.want == "") != (f.got == nil) {
					t.Errorf("%s = %q (nil %v), want %q", f.name, f.got, f.got == nil, f.want)
				}
				if cap(f.got) != len(f.got) {
					t.Errorf("%s has spare capacity %d: appending would overwrite the PDU", f.name, cap(f.got)-len(f.got))
				}
			}
			if st := int(r.State); r.HasState != (tt.state >= 0) || r.HasState && st != tt.state {
				t.Errorf("State %d HasState %v, want %d", r.State, r.HasState, tt.state)
			}
		})
	}
}

// tlvEntry is one optional parameter.
type tlvEntry struct {
	tag uint16
	val []byte
}

func tlvList(b []byte) []tlvEntry {
	var l []tlvEntry
	for len(b) >= 4 {
		n := int(binary.BigEndian.Uint16(b[2:]))
		l = append(l, tlvEntry{binary.BigEndian.Uint16(b), b[4 : 4+n]})
		b = b[4+n:]
	}
	return l
}

// mandatory encodes s's mandatory fields other than sm_length and short_message.
func mandatory(s *Submit) []byte {
	c := *s
	c.ShortMessage, c.TLVs = nil, nil
	return AppendSubmitPDU(nil, DeliverSM, 1, &c)
}

// checkRewrite checks that out, the body AppendRewrittenReceipt made from s with newID, parses,
// carries newID in the receipted_message_id TLV and in the text's id: field where s's text has
// one, and equals s in every other octet.
func checkRewrite(t *testing.T, s *Submit, out, newID []byte) {
	t.Helper()
	var n Submit
	if err := ParseSubmit(out, &n); err != nil {
		t.Fatalf("rewritten body does not parse: %v\n%q", err, out)
	}
	if !bytes.Equal(mandatory(&n), mandatory(s)) {
		t.Errorf("mandatory fields changed:\n got %q\nwant %q", mandatory(&n), mandatory(s))
	}
	r0, _ := ParseReceipt(s)
	r, err := ParseReceipt(&n)
	if err != nil {
		t.Fatalf("rewritten receipt: %v", err)
	}
	if !bytes.Equal(r.ID, newID) || !bytes.Equal(r.TLVID, newID) {
		t.Errorf("ID %q TLVID %q, want %q", r.ID, r.TLVID, newID)
	}
	w := textWidth(s.DataCoding)
	text := s.Payload()
	var idSpan span
	if w != 0 {
		idSpan = scanReceipt(receiptText{text, w}).id
	}
	wantTextID := r0.TextID
	if w == 1 && idSpan.ok {
		wantTextID = newID
	}
	if !bytes.Equal(r.TextID, wantTextID) {
		t.Errorf("TextID %q, want %q", r.TextID, wantTextID)
	}
	if !bytes.Equal(r.Stat, r0.Stat) || !bytes.Equal(r.Err, r0.Err) || r.State != r0.State || r.HasState != r0.HasState {
		t.Errorf("stat %q err %q state %d/%v, want %q %q %d/%v", r.Stat, r.Err, r.State, r.HasState, r0.Stat, r0.Err, r0.State, r0.HasState)
	}
	wantText := text
	if idSpan.ok {
		wantText = idSpan.appendWith(nil, text, newID, w)
	}
	if got := n.Payload(); !bytes.Equal(got, wantText) {
		t.Errorf("text\n got %q\nwant %q", got, wantText)
	}
	if (len(n.ShortMessage) > 0) != (len(s.ShortMessage) > 0) {
		t.Errorf("text moved: short_message %d octets, was %d", len(n.ShortMessage), len(s.ShortMessage))
	}
	old, got := tlvList(s.TLVs), tlvList(n.TLVs)
	if _, ok := FindTLV(s.TLVs, TagReceiptedMsgID); !ok {
		old = append(old, tlvEntry{TagReceiptedMsgID, nil}) // appended last
	}
	if len(got) != len(old) {
		t.Fatalf("%d TLVs, want %d", len(got), len(old))
	}
	wantID := append(append([]byte(nil), newID...), 0)
	payloadSeen := len(s.ShortMessage) > 0
	for i, e := range got {
		want := old[i].val
		switch {
		case old[i].tag == TagReceiptedMsgID:
			want = wantID
		case old[i].tag == TagMessagePayload && !payloadSeen:
			want, payloadSeen = wantText, true
		}
		if e.tag != old[i].tag || !bytes.Equal(e.val, want) {
			t.Errorf("TLV %d: %#04x %q, want %#04x %q", i, e.tag, e.val, old[i].tag, want)
		}
	}
}

func TestAppendRewrittenReceipt(t *testing.T) {
	const newID = "00c0ffee12345678"
	long := "id:1 " + strings.Repeat("x", 249) // 254 octets
	tests := []struct {
		name     string
		body     []byte
		newID    string
		wantText string // the rewritten text, decoded from UCS2 when data_coding is 8
		wantErr  error
	}{
		{"standard, longer id", dlr(dlrESM, 0, stdText), newID,
			"id:00c0ffee12345678 sub:001 dlvrd:001 submit date:2301011200 done date:2301011201 stat:DELIVRD err:000 text:Hello world", nil},
		{"standard, shorter id", dlr(dlrESM, 0, stdText), "7",
			"id:7 sub:001 dlvrd:001 submit date:2301011200 done date:2301011201 stat:DELIVRD err:000 text:Hello world", nil},
		{"name case kept", dlr(dlrESM, 0, "ID:ABCDEF12 STAT:UNDELIV ERR:001 TEXT:Hi"), newID, "ID:" + newID + " STAT:UNDELIV ERR:001 TEXT:Hi", nil},
		{"value after a space", dlr(dlrESM, 0, "id:  77   stat:DELIVRD"), newID, "id:  " + newID + "   stat:DELIVRD", nil},
		{"empty id value filled", dlr(dlrESM, 0, "id: sub:001 stat:DELIVRD", tlv(TagReceiptedMsgID, "77\x00")), newID, "id:" + newID + " sub:001 stat:DELIVRD", nil},
		{"id: inside text: untouched", dlr(dlrESM, 0, "id:1 stat:DELIVRD text:your id:1 is"), "abc", "id:abc stat:DELIVRD text:your id:1 is", nil},
		{"text without id, TLV replaced", dlr(dlrESM, 0, "stat:DELIVRD err:0", tlv(TagMessageState, "\x02"), tlv(TagReceiptedMsgID, "77\x00"), tlv(vendorTL, "v")),
			newID, "stat:DELIVRD err:0", nil},
		{"TLV only, empty text", dlr(dlrESM, 0, "", tlv(TagReceiptedMsgID, "77\x00"), tlv(TagMessageState, "\x02")), newID, "", nil},
		{"TLV added last when absent", dlr(dlrESM, 0, stdText, tlv(TagMessageState, "\x02"), tlv(vendorTL, "vendor")), newID,
			"id:00c0ffee12345678 sub:001 dlvrd:001 submit date:2301011200 done date:2301011201 stat:DELIVRD err:000 text:Hello world", nil},
		{"every receipted_message_id replaced", dlr(dlrESM, 0, "", tlv(TagReceiptedMsgID, "1\x00"), tlv(vendorTL, "v"), tlv(TagReceiptedMsgID, "2\x00")), newID, "", nil},
		{"message_payload", dlr(dlrESM, 0, "", tlv(vendorTL, "v"), tlv(TagMessagePayload, "id:99 stat:EXPIRED err:000 text:"), tlv(TagMessageState, "\x03")),
			newID, "id:" + newID + " stat:EXPIRED err:000 text:", nil},
		{"message_payload without id", dlr(dlrESM, 0, "", tlv(TagMessagePayload, "stat:EXPIRED"), tlv(TagReceiptedMsgID, "9\x00")), newID, "stat:EXPIRED", nil},
		{"UCS2 text", dlr(dlrESM, 8, ucs2("id:1234 stat:DELIVRD text:Grüße ✓ id:1234"), tlv(TagReceiptedMsgID, "1234\x00")), newID,
			"id:" + newID + " stat:DELIVRD text:Grüße ✓ id:1234", nil},
		{"UCS2 upper-case name, odd trailing octet", dlr(dlrESM, 8, ucs2("ID:1 Stat:DELIVRD")+"\x00", tlv(TagReceiptedMsgID, "1\x00")), "ab", "", nil},
		{"UCS2 message_payload", dlr(dlrESM, 8, "", tlv(TagMessagePayload, ucs2("id:5 stat:DELIVRD"))), newID, "id:" + newID + " stat:DELIVRD", nil},
		{"JIS text left alone", dlr(dlrESM, 5, "id:1 stat:DELIVRD", tlv(TagReceiptedMsgID, "1\x00")), newID, "id:1 stat:DELIVRD", nil},
		{"254 octets fit", dlr(dlrESM, 0, long), "9", "id:9 " + strings.Repeat("x", 249), nil},
		{"255 octets do not", dlr(dlrESM, 0, long), "99", "", ErrReceiptTooLong},
		{"64-octet id", dlr(dlrESM, 0, "id:1 stat:DELIVRD"), strings.Repeat("Z", 64), "id:" + strings.Repeat("Z", 64) + " stat:DELIVRD", nil},
		{"65-octet id", dlr(dlrESM, 0, stdText), strings.Repeat("Z", 65), "", ErrInvalidReceiptID},
		{"empty id", dlr(dlrESM, 0, stdText), "", "", ErrInvalidReceiptID},
		{"id with space", dlr(dlrESM, 0, stdText), "a b", "", ErrInvalidReceiptID},
		{"id with colon", dlr(dlrESM, 0, stdText), "a:b", "", ErrInvalidReceiptID},
		{"id with $ (not GSM-safe)", dlr(dlrESM, 0, stdText), "a$b", "", ErrInvalidReceiptID},
		{"id with non-ASCII", dlr(dlrESM, 0, stdText), "ä", "", ErrInvalidReceiptID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.body)
			prefix := []byte("prefix")
			out, err := AppendRewrittenReceipt(prefix, s, []byte(tt.newID))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if string(out[:len(prefix)]) != "prefix" {
				t.Fatalf("dst prefix overwritten: %q", out)
			}
			if err != nil {
				if len(out) != len(prefix) {
					t.Fatalf("dst grew by %d octets on error", len(out)-len(prefix))
				}
				return
			}
			body := out[len(prefix):]
			checkRewrite(t, s, body, []byte(tt.newID))
			n := mustParse(t, body)
			got := string(n.Payload())
			if s.DataCoding == 8 && tt.wantText != "" {
				got = string(utf16Decode(n.Payload()))
			}
			if tt.wantText != "" && got != tt.wantText || tt.wantText == "" && s.DataCoding != 8 && got != string(s.Payload()) {
				t.Errorf("text %q, want %q", got, tt.wantText)
			}
		})
	}
}

func utf16Decode(b []byte) []rune {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return utf16.Decode(u)
}

func TestAppendRewrittenReceiptBadTLVs(t *testing.T) {
	s := mustParse(t, dlr(dlrESM, 0, stdText))
	s.TLVs = []byte{0x00, 0x1E, 0x00} // a caller-built view, not from ParseSubmit
	out, err := AppendRewrittenReceipt(nil, s, []byte("1"))
	var be *BodyError
	if !errors.As(err, &be) || be.Status != StatusInvOptParam || len(out) != 0 {
		t.Fatalf("got %q, %v; want nothing and ESME_RINVOPTPARSTREAM", out, err)
	}
}

func TestCanonicalID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ABCdef", "abcdef"},
		{"0000012345", "12345"},
		{"000", "0"},
		{"0", "0"},
		{"00A1", "a1"},
		{" \t12AB\x00\x00", "12ab"},
		{"  ", ""},
		{"", ""},
		{"abc-123", "abc-123"},
		{"0 0 0", "0 0 0"}, // a zero a blank follows stays: canonical forms are stable
		{"00 1", "0 1"},
		{"00-1", "-1"},         // leading zeros go even before punctuation
		{"ÄB", "\xc3\x84b"},    // only ASCII letters change
		{"\x000012\x00", "12"}, // NULs then zeros
	}
	for _, tt := range tests {
		if got := CanonicalID([]byte("x:"), []byte(tt.in)); string(got) != "x:"+tt.want {
			t.Errorf("CanonicalID(%q) = %q, want %q", tt.in, got[2:], tt.want)
		}
	}
}

func TestIDCandidates(t *testing.T) {
	long := strings.Repeat("a", MaxIDLen)
	tests := []struct {
		name string
		id   string
		mode IDMode
		want []string
	}{
		{"same: case and leading zeros", "00ABC", IDSame, []string{"abc"}},
		{"same: digits are not converted", "1715004", IDSame, []string{"1715004"}},
		{"same: surrounding blanks", " 12\x00", IDSame, []string{"12"}},
		{"kannel 0x01: hex resp, decimal receipt", "1715004", IDReceiptDecimal, []string{"1a2b3c"}},
		{"kannel 0x01 with leading zeros", "0001715004", IDReceiptDecimal, []string{"1a2b3c"}},
		{"kannel 0x02: decimal resp, hex receipt", "1A2B3C", IDReceiptHex, []string{"1715004"}},
		{"receipt_hex lower case, leading zeros", "00ff", IDReceiptHex, []string{"255"}},
		{"receipt_decimal: non-decimal as is", "abc-123", IDReceiptDecimal, []string{"abc-123"}},
		{"receipt_hex: non-hex as is", "xyz", IDReceiptHex, []string{"xyz"}},
		{"receipt_decimal: over 64 bits as is", "18446744073709551616", IDReceiptDecimal, []string{"18446744073709551616"}},
		{"receipt_hex: 17 hex digits as is", "1ffffffffffffffff", IDReceiptHex, []string{"1ffffffffffffffff"}},
		{"auto: decimal receipt", "1715004", IDAuto, []string{"1715004", "1a2b3c", "24203268"}},
		{"auto: hex receipt upper case", "1A2B3C", IDAuto, []string{"1a2b3c", "1715004"}},
		{"auto: zero", "0000", IDAuto, []string{"0"}},
		{"auto: single digit, no duplicates", "7", IDAuto, []string{"7"}},
		{"auto: 10", "10", IDAuto, []string{"10", "a", "16"}},
		{"auto: max uint64 decimal", "18446744073709551615", IDAuto, []string{"18446744073709551615", "ffffffffffffffff"}},
		{"auto: max uint64 hex", "FFFFFFFFFFFFFFFF", IDAuto, []string{"ffffffffffffffff", "18446744073709551615"}},
		{"auto: over 64 bits as is", "18446744073709551616", IDAuto, []string{"18446744073709551616"}},
		{"auto: 17 hex digits as is", "1ffffffffffffffff", IDAuto, []string{"1ffffffffffffffff"}},
		{"auto: leading zeros do not count toward 64 bits", "0000000000000000000000ff", IDAuto, []string{"ff", "255"}},
		{"auto: non-hex id", "abc-123", IDAuto, []string{"abc-123"}},
		{"auto: uuid", "6F1C2B1E-4A1D-4E8B-9C1A-0D2E3F405162", IDAuto, []string{"6f1c2b1e-4a1d-4e8b-9c1a-0d2e3f405162"}},
		{"unknown mode acts as auto", "10", IDMode(9), []string{"10", "a", "16"}},
		{"64 octets", long, IDSame, []string{long}},
		{"65 octets: none", long + "b", IDAuto, nil},
		{"empty: none", "", IDAuto, nil},
		{"blank: none", " \x00", IDSame, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c IDCands
			IDCandidates(&c, []byte("stale"), IDSame) // a refill replaces
			IDCandidates(&c, []byte(tt.id), tt.mode)
			var got []string
			for i := 0; i < c.Len(); i++ {
				got = append(got, string(c.At(i)))
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") || len(got) != len(tt.want) {
				t.Fatalf("IDCandidates(%q, %v) = %q, want %q", tt.id, tt.mode, got, tt.want)
			}
		})
	}
}

func TestParseIDMode(t *testing.T) {
	for _, m := range []IDMode{IDAuto, IDSame, IDReceiptDecimal, IDReceiptHex} {
		got, err := ParseIDMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseIDMode(%q) = %v, %v", m.String(), got, err)
		}
		var u IDMode
		if b, _ := m.MarshalText(); u.UnmarshalText(b) != nil || u != m {
			t.Errorf("text round trip of %v gave %v", m, u)
		}
	}
	if m, err := ParseIDMode("Receipt_Hex"); err != nil || m != IDReceiptHex {
		t.Errorf("ParseIDMode is case-sensitive: %v, %v", m, err)
	}
	_, err := ParseIDMode("hex")
	if err == nil || !strings.Contains(err.Error(), "auto, same, receipt_decimal or receipt_hex") {
		t.Errorf("ParseIDMode(hex) error %v does not name the accepted values", err)
	}
	if s := IDMode(7).String(); s != "IDMode(7)" {
		t.Errorf("IDMode(7).String() = %q", s)
	}
}

// receiptBody is a typical receipt: Appendix B text plus receipted_message_id and message_state.
func receiptBody() []byte {
	return dlr(dlrESM, 0, "id:0A1B2C3D4E5F sub:001 dlvrd:001 submit date:2301011200 done date:2301011201 stat:DELIVRD err:000 text:Hello world",
		tlv(TagReceiptedMsgID, "0A1B2C3D4E5F\x00"), tlv(TagMessageState, "\x02"))
}

// sink keeps results alive without making them escape.
var sinkLen int

func TestReceiptZeroAllocs(t *testing.T) {
	s := mustParse(t, receiptBody())
	newID := []byte("00c0ffee12345678")
	dst := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		r, _ := ParseReceipt(s)
		var c IDCands
		IDCandidates(&c, r.ID, IDAuto)
		for i := 0; i < c.Len(); i++ {
			sinkLen += len(c.At(i))
		}
		dst, _ = AppendRewrittenReceipt(dst[:0], s, newID)
		sinkLen += len(dst)
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per receipt, want 0", allocs)
	}
}

func BenchmarkParseReceipt(b *testing.B) {
	s := mustParse(b, receiptBody())
	b.ReportAllocs()
	for b.Loop() {
		r, err := ParseReceipt(s)
		if err != nil {
			b.Fatal(err)
		}
		sinkLen += len(r.ID)
	}
}

func BenchmarkIDCandidates(b *testing.B) {
	id := []byte("0001715004")
	b.ReportAllocs()
	for b.Loop() {
		var c IDCands
		IDCandidates(&c, id, IDAuto)
		sinkLen += len(c.At(c.Len() - 1))
	}
}

func BenchmarkAppendRewrittenReceipt(b *testing.B) {
	s := mustParse(b, receiptBody())
	newID := []byte("00c0ffee12345678")
	dst := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = AppendRewrittenReceipt(dst[:0], s, newID); err != nil {
			b.Fatal(err)
		}
	}
	sinkLen += len(dst)
}
