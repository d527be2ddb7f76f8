package smpp

import (
	"unicode/utf16"

	"github.com/linxGnu/gosmpp/data"
)

// EncodeText returns the message's segments (without UDH) and its data_coding: GSM 7-bit unpacked
// (one octet per septet) when every character has a GSM code, else UCS2.
func EncodeText(text string) ([][]byte, byte) {
	if b, err := data.GSM7BIT.Encode(text); err == nil && gsmOnly(text) {
		return split(b, 160, 153, func(b []byte, i int) bool { return i > 0 && b[i-1] == 0x1B }), 0x00
	}
	b, _ := data.UCS2.Encode(text)
	return split(b, 140, 134, func(b []byte, i int) bool {
		// do not cut a surrogate pair
		return i >= 2 && utf16.IsSurrogate(rune(uint16(b[i-2])<<8|uint16(b[i-1]))) && b[i-2] < 0xDC
	}), 0x08
}

// gsmOnly reports whether text survives a GSM 7-bit round trip.
func gsmOnly(text string) bool {
	b, err := data.GSM7BIT.Encode(text)
	if err != nil {
		return false
	}
	back, err := data.GSM7BIT.Decode(b)
	return err == nil && back == text
}

// split cuts b into parts of at most per octets, or returns it whole if it fits single; bad(b, i)
// reports that cutting before i would split a character.
func split(b []byte, single, per int, bad func([]byte, int) bool) [][]byte {
	if len(b) <= single {
		return [][]byte{b}
	}
	var parts [][]byte
	for len(b) > per {
		n := per
		for n > 0 && bad(b, n) {
			n--
		}
		if n%2 == 1 && per%2 == 0 { // UCS2: keep code units whole
			n--
		}
		parts = append(parts, b[:n])
		b = b[n:]
	}
	return append(parts, b)
}
