package dedup

import (
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/linxGnu/gosmpp/data"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

// clock is an injectable test clock (unix nanos).
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() int64              { return c.t.Load() }
func (c *clock) Advance(d time.Duration) { c.t.Add(int64(d)) }

// gsm7Bytes encodes s in the unpacked GSM 03.38 default alphabet (with the extension table); it
// fails the test on a character outside it.
func gsm7Bytes(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := data.GSM7BIT.Encode(s)
	if back, _ := data.GSM7BIT.Decode(b); err != nil || back != s {
		tb.Fatalf("%q is not all in the GSM 7-bit alphabet", s)
	}
	return b
}

// ucs2 encodes s as big-endian UTF-16.
func ucs2(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return b
}

// msg builds a message; opts adjust it.
func msg(acct *smpp.Account, dst string, dc byte, payload []byte, opts ...func(*router.Message)) *router.Message {
	m := &router.Message{Account: acct, Submit: smpp.Submit{DstTON: 1, DstNPI: 1, DstAddr: []byte(dst),
		SrcAddr: []byte("Shop"), DataCoding: dc, ShortMessage: payload}}
	for _, o := range opts {
		o(m)
	}
	return m
}

// udhPart puts an 8-bit-reference concatenation UDH in front of the short message.
func udhPart(ref, total, seq byte) func(*router.Message) {
	return func(m *router.Message) {
		m.Submit.ESMClass |= 0x40
		m.Submit.ShortMessage = append([]byte{5, 0x00, 3, ref, total, seq}, m.Submit.ShortMessage...)
	}
}

// udh16Part puts a 16-bit-reference concatenation UDH in front of the short message.
func udh16Part(ref uint16, total, seq byte) func(*router.Message) {
	return func(m *router.Message) {
		m.Submit.ESMClass |= 0x40
		m.Submit.ShortMessage = append([]byte{6, 0x08, 4, byte(ref >> 8), byte(ref), total, seq}, m.Submit.ShortMessage...)
	}
}

// sarPart sets the SAR TLVs.
func sarPart(ref uint16, total, seq byte) func(*router.Message) {
	return func(m *router.Message) {
		t := smpp.AppendTLV(nil, smpp.TagSarMsgRefNum, []byte{byte(ref >> 8), byte(ref)})
		t = smpp.AppendTLV(t, smpp.TagSarTotalSegments, []byte{total})
		m.Submit.TLVs = smpp.AppendTLV(t, smpp.TagSarSegmentSeqnum, []byte{seq})
	}
}

// asPayload moves the short message into a message_payload TLV.
func asPayload(m *router.Message) {
	m.Submit.TLVs = smpp.AppendTLV(m.Submit.TLVs, smpp.TagMessagePayload, m.Submit.ShortMessage)
	m.Submit.ShortMessage = nil
}

func withDest(e164 uint64) func(*router.Message) { return func(m *router.Message) { m.Dest = e164 } }

func testConfig(c *clock) Config {
	cfg := DefaultConfig()
	cfg.Now = c.Now
	cfg.MaxEntries = 1 << 16
	return cfg
}
