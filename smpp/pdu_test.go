package smpp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// body builds a submit_sm body field by field; strings are written raw, so a test controls
// terminators (a field without "\x00" is unterminated).
func body(parts ...string) []byte { return []byte(strings.Join(parts, "")) }

// okHead is a valid body up to and including validity_period.
const okHead = "\x00" + "\x01\x01" + "12345\x00" + "\x01\x01" + "4477001\x00" + "\x00\x00\x00" + "\x00" + "\x00"

func TestParseSubmitStatus(t *testing.T) {
	tail := "\x01\x00\x00\x00" // registered_delivery, replace_if_present, data_coding, sm_default_msg_id
	payload := string(AppendTLV(nil, TagMessagePayload, []byte("payload")))
	tests := []struct {
		name string
		body []byte
		want Status
	}{
		{"minimal ok", body(okHead, tail, "\x05hello"), StatusOK},
		{"empty short_message ok", body(okHead, tail, "\x00"), StatusOK},
		{"message_payload only ok", body(okHead, tail, "\x00", payload), StatusOK},
		{"sm_length 254 ok", body(okHead, tail, "\xfe", strings.Repeat("a", 254)), StatusOK},
		{"empty body", nil, StatusInvServType},
		{"service_type unterminated", body("CMT"), StatusInvServType},
		{"service_type too long", body("ABCDEF\x00", "\x01\x01"), StatusInvServType},
		{"source ton/npi missing", body("\x00", "\x01"), StatusInvSrcAddr},
		{"source unterminated", body("\x00", "\x01\x01", "12345"), StatusInvSrcAddr},
		{"source too long", body("\x00", "\x01\x01", strings.Repeat("1", 21), "\x00"), StatusInvSrcAddr},
		{"destination missing", body("\x00", "\x01\x01", "123\x00"), StatusInvDstAddr},
		{"destination ton only", body("\x00", "\x01\x01", "123\x00", "\x01"), StatusInvDstAddr},
		{"destination empty", body("\x00", "\x01\x01", "123\x00", "\x01\x01", "\x00", "\x00\x00\x00\x00\x00", tail, "\x00"), StatusInvDstAddr},
		{"destination too long", body("\x00", "\x01\x01", "123\x00", "\x01\x01", strings.Repeat("4", 21), "\x00"), StatusInvDstAddr},
		{"esm_class missing", body("\x00", "\x01\x01", "123\x00", "\x01\x01", "44\x00", "\x00"), StatusInvMsgLen},
		{"schedule unterminated", body("\x00", "\x01\x01", "123\x00", "\x01\x01", "44\x00", "\x00\x00\x00", "0601021504000+0"), StatusInvSched},
		{"schedule too long", body("\x00", "\x01\x01", "123\x00", "\x01\x01", "44\x00", "\x00\x00\x00", "0601021504000+00X\x00"), StatusInvSched},
		{"validity too long", body("\x00", "\x01\x01", "123\x00", "\x01\x01", "44\x00", "\x00\x00\x00", "\x00", "0601021504000+00X\x00"), StatusInvExpiry},
		{"validity unterminated", body("\x00", "\x01\x01", "123\x00", "\x01\x01", "44\x00", "\x00\x00\x00", "\x00", "06"), StatusInvExpiry},
		{"sm_length missing", body(okHead, tail), StatusInvMsgLen},
		{"sm_length beyond body", body(okHead, tail, "\x06hello"), StatusInvMsgLen},
		{"sm_length 255", body(okHead, tail, "\xff", strings.Repeat("a", 255)), StatusInvMsgLen},
		{"tlv stream 3 octets", body(okHead, tail, "\x00", "\x04\x24\x00"), StatusInvOptParam},
		{"tlv length beyond body", body(okHead, tail, "\x00", "\x04\x24\x00\x09abc"), StatusInvOptParam},
		{"tlv second truncated", body(okHead, tail, "\x00", payload, "\x02"), StatusInvOptParam},
		{"short_message and message_payload", body(okHead, tail, "\x02hi", payload), StatusInvMsgLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Submit
			err := ParseSubmit(tt.body, &s)
			if tt.want == StatusOK {
				if err != nil {
					t.Fatalf("ParseSubmit: %v, want ok", err)
				}
				return
			}
			var be *BodyError
			if !errors.As(err, &be) {
				t.Fatalf("ParseSubmit error = %v, want *BodyError with %v", err, tt.want)
			}
			if be.Status != tt.want {
				t.Fatalf("status = %v (%v), want %v", be.Status, err, tt.want)
			}
		})
	}
}

func TestConcat(t *testing.T) {
	sar := func(ref uint16, total, seq byte) []byte {
		b := AppendTLV(nil, TagSarMsgRefNum, []byte{byte(ref >> 8), byte(ref)})
		b = AppendTLV(b, TagSarTotalSegments, []byte{total})
		return AppendTLV(b, TagSarSegmentSeqnum, []byte{seq})
	}
	tests := []struct {
		name string
		s    Submit
		want Concat
		ok   bool
	}{
		{"udh ie 0x00", Submit{ESMClass: 0x40, ShortMessage: []byte("\x05\x00\x03\x2a\x03\x02text")}, Concat{Ref: 0x2a, Total: 3, Seq: 2}, true},
		{"udh ie 0x08", Submit{ESMClass: 0x43, ShortMessage: []byte("\x06\x08\x04\x12\x34\x02\x01text")}, Concat{Ref: 0x1234, Total: 2, Seq: 1}, true},
		{"udh after another ie", Submit{ESMClass: 0x40, ShortMessage: []byte("\x08\x24\x01\x01\x00\x03\x07\x04\x04text")}, Concat{Ref: 7, Total: 4, Seq: 4}, true},
		{"udh in message_payload", Submit{ESMClass: 0x40, TLVs: AppendTLV(nil, TagMessagePayload, []byte("\x05\x00\x03\x09\x02\x02x"))}, Concat{Ref: 9, Total: 2, Seq: 2}, true},
		{"sar tlvs", Submit{TLVs: sar(0xbeef, 3, 3)}, Concat{Ref: 0xbeef, Total: 3, Seq: 3}, true},
		{"udh wins over sar", Submit{ESMClass: 0x40, ShortMessage: []byte("\x05\x00\x03\x01\x02\x01x"), TLVs: sar(2, 5, 5)}, Concat{Ref: 1, Total: 2, Seq: 1}, true},
		{"udh bytes without udhi", Submit{ShortMessage: []byte("\x05\x00\x03\x2a\x03\x02text")}, Concat{}, false},
		{"udh total 1", Submit{ESMClass: 0x40, ShortMessage: []byte("\x05\x00\x03\x2a\x01\x01text")}, Concat{}, false},
		{"udh other ie", Submit{ESMClass: 0x40, ShortMessage: []byte("\x03\x24\x01\x01text")}, Concat{}, false},
		{"udh length beyond", Submit{ESMClass: 0x40, ShortMessage: []byte("\x09\x00\x03\x2a\x03")}, Concat{}, false},
		{"udh ie length beyond", Submit{ESMClass: 0x40, ShortMessage: []byte("\x03\x00\x05\x2a")}, Concat{}, false},
		{"udhi, empty message", Submit{ESMClass: 0x40}, Concat{}, false},
		{"sar incomplete", Submit{TLVs: AppendTLV(AppendTLV(nil, TagSarMsgRefNum, []byte{0, 1}), TagSarTotalSegments, []byte{2})}, Concat{}, false},
		{"sar total 1", Submit{TLVs: sar(1, 1, 1)}, Concat{}, false},
		{"plain", Submit{ShortMessage: []byte("hello")}, Concat{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := tt.s.Concat()
			if ok != tt.ok || c != tt.want {
				t.Fatalf("Concat() = %+v, %v; want %+v, %v", c, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSegments(t *testing.T) {
	payload := func(dc byte, n int) Submit {
		return Submit{DataCoding: dc, TLVs: AppendTLV(nil, TagMessagePayload, bytes.Repeat([]byte{'a'}, n))}
	}
	tests := []struct {
		name string
		s    Submit
		want int
	}{
		{"short_message", Submit{ShortMessage: bytes.Repeat([]byte{'a'}, 254)}, 1},
		{"empty", Submit{}, 1},
		{"gsm payload 160", payload(0, 160), 1},
		{"gsm payload 161", payload(0, 161), 2},
		{"gsm payload 306", payload(1, 306), 2},
		{"gsm payload 307", payload(1, 307), 3},
		{"ucs2 payload 140", payload(8, 140), 1},
		{"ucs2 payload 141", payload(8, 141), 2},
		{"ucs2 payload 268", payload(8, 268), 2},
		{"8bit payload 269", payload(4, 269), 3},
	}
	for _, tt := range tests {
		if got := tt.s.Segments(); got != tt.want {
			t.Errorf("%s: Segments() = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestSubmitRoundTrip(t *testing.T) {
	in := Submit{
		ServiceType: []byte("CMT"), SrcTON: 5, SrcNPI: 0, SrcAddr: []byte("Brand"),
		DstTON: 1, DstNPI: 1, DstAddr: []byte("447700900123"), ESMClass: 0x40, ProtocolID: 0x7f,
		PriorityFlag: 1, ScheduleTime: []byte("260101120000000+"), ValidityPeriod: []byte("000001000000000R"),
		RegisteredDelivery: 1, ReplaceIfPresent: 1, DataCoding: 8, DefaultMsgID: 3,
		ShortMessage: []byte("\x05\x00\x03\x01\x02\x01\x00h\x00i"),
		TLVs:         AppendTLV(nil, 0x1403, []byte("x")),
	}
	b := AppendSubmitPDU([]byte("junk"), SubmitSM, 0x01020304, &in)[4:] // appends after existing bytes
	h := ParseHeader(b)
	if h.Length != uint32(len(b)) || h.ID != SubmitSM || h.Status != StatusOK || h.Seq != 0x01020304 {
		t.Fatalf("header = %+v, len %d", h, len(b))
	}
	var out Submit
	if err := ParseSubmit(b[HeaderLen:], &out); err != nil {
		t.Fatal(err)
	}
	fields := func(s *Submit) []string {
		return []string{string(s.ServiceType), string(s.SrcAddr), string(s.DstAddr), string(s.ScheduleTime),
			string(s.ValidityPeriod), string(s.ShortMessage), string(s.TLVs),
			string([]byte{s.SrcTON, s.SrcNPI, s.DstTON, s.DstNPI, s.ESMClass, s.ProtocolID, s.PriorityFlag,
				s.RegisteredDelivery, s.ReplaceIfPresent, s.DataCoding, s.DefaultMsgID})}
	}
	if got, want := fields(&out), fields(&in); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("round trip:\n got %q\nwant %q", got, want)
	}
	if c, ok := out.Concat(); !ok || c != (Concat{Ref: 1, Total: 2, Seq: 1}) {
		t.Fatalf("Concat after round trip = %+v, %v", c, ok)
	}
	if v, ok := FindTLV(out.TLVs, 0x1403); !ok || string(v) != "x" {
		t.Fatalf("FindTLV = %q, %v", v, ok)
	}
}

func TestAppendSubmitSMResp(t *testing.T) {
	ok := AppendSubmitSMResp(nil, SubmitSMResp, StatusOK, 7, []byte("abc"))
	if h := ParseHeader(ok); h.Length != 20 || h.ID != SubmitSMResp || h.Seq != 7 || string(ok[16:]) != "abc\x00" {
		t.Fatalf("ok resp = %+v %q", h, ok[16:])
	}
	bad := AppendSubmitSMResp(nil, SubmitSMResp, StatusThrottled, 8, []byte("abc"))
	if h := ParseHeader(bad); h.Length != HeaderLen || len(bad) != HeaderLen || h.Status != StatusThrottled {
		t.Fatalf("error resp = %+v, %d octets; want header only", h, len(bad))
	}
	if !IsResponse(ResponseID(SubmitSM)) || IsResponse(SubmitSM) || ResponseID(SubmitSM) != SubmitSMResp {
		t.Fatal("IsResponse/ResponseID disagree with the command ids")
	}
}

func TestSubmitRebase(t *testing.T) {
	in := Submit{ServiceType: []byte("CMT"), SrcAddr: []byte("Bank"), DstAddr: []byte("4915112345678"),
		ValidityPeriod: []byte("000001000000000R"), ShortMessage: []byte("hello"), TLVs: AppendTLV(nil, 0x0204, []byte{0, 1})}
	pdu := AppendSubmitPDU(nil, SubmitSM, 1, &in)
	var s Submit
	if err := ParseSubmit(pdu[HeaderLen:], &s); err != nil {
		t.Fatal(err)
	}
	cp := append([]byte(nil), pdu...)
	s.Rebase(pdu, cp)
	for i := range pdu {
		pdu[i] = 0xEE // the original is gone: the view must now read the copy
	}
	if string(s.DstAddr) != "4915112345678" || string(s.ShortMessage) != "hello" || string(s.SrcAddr) != "Bank" ||
		string(s.ServiceType) != "CMT" || string(s.ValidityPeriod) != "000001000000000R" || len(s.ScheduleTime) != 0 {
		t.Fatalf("rebased view reads %q %q %q", s.DstAddr, s.ShortMessage, s.SrcAddr)
	}
	if v, ok := FindTLV(s.TLVs, 0x0204); !ok || v[1] != 1 {
		t.Fatalf("TLVs after rebase: %x", s.TLVs)
	}
}
