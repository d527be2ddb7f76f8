package dedup

import (
	"encoding/binary"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/router/content"
	"github.com/zeebo/xxh3"
)

// Key identifies a message for exact duplicate detection: a 128-bit xxh3 hash of the account's
// system_id, the destination, the data_coding alphabet, the concatenation part (number and count)
// and the payload without its concatenation header. Its underlying type is a plain array so the
// router can carry it in a Message field without importing this package.
type Key [2]uint64

// keyBuf bounds the stack buffer the key is hashed from; a longer payload (a message_payload
// TLV) is hashed separately and its hash written instead.
const keyBuf = 384

// Field tags in the hashed encoding; every variable-length field is length-prefixed or last, so
// distinct messages never encode alike.
const (
	tagAccount     = 'A' // len, system_id
	tagAccountHash = 'a' // 16-octet hash of a system_id longer than maxInlineAccount
	tagDestE164    = 'E' // 8-octet m.Dest
	tagDestDigits  = 'D' // len, the digits of destination_addr
	tagDestRaw     = 'R' // len, destination_addr without any digit (alphanumeric)
	tagCoding      = 'C' // alphabet class, and for codingOther the data_coding octet
	tagPart        = 'S' // total, seq (and with KeyConcatRef the 16-bit reference)
	tagUDH         = 'U' // len, the user data header's information elements other than concatenation, if any
	tagPayload     = 'P' // the payload, to the end
	tagPayloadHash = 'H' // 16-octet hash of a payload too long for the buffer
)

const maxInlineAccount = 64

// KeyOf returns m's duplicate key. It allocates nothing. withRef also keys on the concatenation
// reference number (see Config.KeyConcatRef).
func KeyOf(m *router.Message) Key { return keyOf(m, false) }

func keyOf(m *router.Message, withRef bool) Key {
	var buf [keyBuf]byte
	b := buf[:0]
	if id := m.Account.SystemID; len(id) <= maxInlineAccount {
		b = append(b, tagAccount, byte(len(id)))
		b = append(b, id...)
	} else {
		h := xxh3.HashString128(id)
		b = append(b, tagAccountHash)
		b = binary.BigEndian.AppendUint64(b, h.Hi)
		b = binary.BigEndian.AppendUint64(b, h.Lo)
	}

	s := &m.Submit
	if m.Dest != 0 {
		b = append(b, tagDestE164)
		b = binary.BigEndian.AppendUint64(b, m.Dest)
	} else {
		// destination_addr is at most 20 octets (the decoder enforces 21 with its NUL).
		b = append(b, tagDestDigits, 0)
		lenAt := len(b) - 1
		for _, c := range s.DstAddr {
			if '0' <= c && c <= '9' {
				b = append(b, c)
			}
		}
		if n := len(b) - lenAt - 1; n > 0 {
			b[lenAt] = byte(n)
		} else {
			b = append(b[:lenAt-1], tagDestRaw, byte(len(s.DstAddr)))
			b = append(b, s.DstAddr...)
		}
	}

	c := content.CodingOf(s.DataCoding, false)
	b = append(b, tagCoding, byte(c))
	if c == content.CodingUnsupported {
		b = append(b, s.DataCoding)
	}

	if part, ok := s.Concat(); ok {
		b = append(b, tagPart, part.Total, part.Seq)
		if withRef {
			b = binary.BigEndian.AppendUint16(b, part.Ref)
		}
	}

	p := s.Payload()
	if s.ESMClass&0x40 != 0 && len(p) > 0 && int(p[0])+1 <= len(p) {
		udh := p[1 : 1+int(p[0])]
		p = p[1+int(p[0]):]
		b = append(b, tagUDH, 0)
		lenAt := len(b) - 1
		for len(udh) >= 2 && 2+int(udh[1]) <= len(udh) {
			ie := udh[:2+int(udh[1])]
			udh = udh[len(ie):]
			if ie[0] != 0x00 && ie[0] != 0x08 { // concatenation: its part number is tagPart
				b = append(b, ie...)
			}
		}
		b = append(b, udh...) // a malformed tail is kept as is
		if n := len(b) - lenAt - 1; n > 0 {
			b[lenAt] = byte(n)
		} else {
			b = b[:lenAt-1] // concatenation only: keyed as with SAR TLVs
		}
	}

	if len(b)+1+len(p) <= keyBuf {
		b = append(b, tagPayload)
		b = append(b, p...)
	} else {
		h := xxh3.Hash128(p)
		b = append(b, tagPayloadHash)
		b = binary.BigEndian.AppendUint64(b, h.Hi)
		b = binary.BigEndian.AppendUint64(b, h.Lo)
	}
	h := xxh3.Hash128(b)
	return Key{h.Hi, h.Lo}
}
