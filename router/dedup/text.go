package dedup

import (
	"unicode"
	"unicode/utf16"
)

// coding is the alphabet class of a data_coding value: what the payload octets mean.
type coding uint8

const (
	codingOther  coding = iota // an alphabet smppd does not decode (JIS, Cyrillic, reserved…)
	codingGSM7                 // GSM 03.38 default alphabet, unpacked: one octet per septet
	codingIA5                  // IA5 / ASCII
	codingLatin1               // ISO-8859-1
	codingUCS2                 // UCS2, big-endian UTF-16 as sent in practice (surrogates combined)
	codingBinary               // 8-bit data: not text
)

// codingOf classifies data_coding: the SMPP 3.4 values 0x00–0x0F (§5.2.19), then the GSM 03.38
// coding groups (general 0x10–0x7F, message waiting 0xC0–0xEF, data coding/message class 0xF0–0xFF).
// Message class and indication bits do not matter: only what the octets mean.
func codingOf(dc byte) coding {
	switch {
	case dc == 0x00:
		return codingGSM7
	case dc == 0x01:
		return codingIA5
	case dc == 0x02 || dc == 0x04:
		return codingBinary
	case dc == 0x03:
		return codingLatin1
	case dc == 0x08:
		return codingUCS2
	case dc < 0x10:
		return codingOther
	case dc < 0x80: // general data coding (bit 6: automatic deletion), bit 5: compressed
		if dc&0x20 != 0 {
			return codingBinary
		}
		switch dc >> 2 & 3 {
		case 0:
			return codingGSM7
		case 1:
			return codingBinary
		case 2:
			return codingUCS2
		}
		return codingOther
	case dc >= 0xC0 && dc < 0xE0:
		return codingGSM7
	case dc >= 0xE0 && dc < 0xF0:
		return codingUCS2
	case dc >= 0xF0:
		if dc&0x04 != 0 {
			return codingBinary
		}
		return codingGSM7
	}
	return codingOther
}

// gsm7 maps the GSM 03.38 default alphabet to Unicode; 0x1B is the escape to gsm7Ext.
var gsm7 = [128]rune{
	'@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
	'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', 0x1B, 'Æ', 'æ', 'ß', 'É',
	' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
	'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
	'¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
	'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
	'¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
	'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
}

// gsm7Ext maps the characters of the GSM 03.38 extension table (after 0x1B).
func gsm7Ext(c byte) rune {
	switch c {
	case 0x0A:
		return '\f'
	case 0x14:
		return '^'
	case 0x28:
		return '{'
	case 0x29:
		return '}'
	case 0x2F:
		return '\\'
	case 0x3C:
		return '['
	case 0x3D:
		return '~'
	case 0x3E:
		return ']'
	case 0x40:
		return '|'
	case 0x65:
		return '€'
	}
	return ' ' // unknown extension: the standard says show as space
}

// chunk is how many runes are decoded, normalised and hashed at a time, in stack buffers.
const chunk = 64

// gsm7Class classifies the runes of gsm7.
var gsm7Class = func() (t [128]uint8) {
	for i, r := range gsm7 {
		t[i] = class(r)
	}
	return t
}()

// decode decodes up to chunk runes of p read as c into rs, their classes into cs, and returns how
// many, and the rest of p. Malformed input never fails: a lone surrogate is U+FFFD, a trailing odd
// octet of UCS2 is dropped, an escape at the end of GSM 7-bit is a space.
func decode(p []byte, c coding, rs *[chunk]rune, cs *[chunk]uint8) (int, []byte) {
	n := 0
	switch c {
	case codingGSM7:
		i := 0
		for ; i < len(p) && n < chunk; i++ {
			b := p[i] & 0x7F
			if b == 0x1B {
				r := rune(' ')
				if i+1 < len(p) {
					i++
					r = gsm7Ext(p[i] & 0x7F)
				}
				rs[n], cs[n] = r, class(r)
			} else {
				rs[n], cs[n] = gsm7[b], gsm7Class[b]
			}
			n++
		}
		p = p[i:]
	case codingUCS2:
		i := 0
		for ; i+1 < len(p) && n < chunk; i += 2 {
			r := rune(p[i])<<8 | rune(p[i+1])
			if utf16.IsSurrogate(r) {
				r2 := rune(unicode.ReplacementChar)
				if r < 0xDC00 && i+3 < len(p) {
					if r2 = rune(p[i+2])<<8 | rune(p[i+3]); r2 >= 0xDC00 && r2 < 0xE000 {
						i += 2
					}
				}
				r = utf16.DecodeRune(r, r2) // U+FFFD unless a valid pair
			}
			rs[n], cs[n] = r, class(r)
			n++
		}
		if p = p[i:]; len(p) < 2 {
			p = nil
		}
	default: // IA5 and Latin-1: one octet, one code point
		m := min(len(p), chunk)
		for i, b := range p[:m] {
			rs[i], cs[i] = rune(b), class(rune(b))
		}
		n, p = m, p[m:]
	}
	return n, p
}
