package content

import (
	"slices"
	"unicode/utf8"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

// Coding is how a message's octets are read as text.
type Coding uint8

// Codings, from data_coding (SMPP 3.4 §5.2.19, and the GSM 03.38 data coding scheme groups above 0x0F).
const (
	CodingNone        Coding = iota // zero value: nothing decoded
	CodingGSM7                      // GSM 03.38 default alphabet and extension table, one octet per septet
	CodingGSM7Packed                // the same, septets packed 8 into 7 octets (only with Config.PackedGSM7)
	CodingIA5                       // data_coding 1: IA5 (ASCII)
	CodingLatin1                    // data_coding 3: ISO 8859-1
	CodingUCS2                      // data_coding 8: big-endian UTF-16, surrogate pairs included
	CodingBinary                    // 8-bit data (data_coding 2, 4, and the GSM 8-bit groups): not text
	CodingUnsupported               // a character set smppd does not decode (JIS, Cyrillic, Hebrew, KS C 5601, compressed, reserved)
)

var codingNames = [...]string{"none", "gsm7", "gsm7_packed", "ia5", "latin1", "ucs2", "binary", "unsupported"}

func (c Coding) String() string {
	if int(c) < len(codingNames) {
		return codingNames[c]
	}
	return "unknown"
}

// Text reports whether content rules apply to the coding.
func (c Coding) Text() bool { return c >= CodingGSM7 && c <= CodingUCS2 }

// CodingOf returns how data_coding dc is read. No data_coding value says that GSM septets are
// packed (SMPP clients send one octet per septet and the SMSC packs for the air interface), so
// packing is never guessed: packed says the clients pack.
func CodingOf(dc byte, packed bool) Coding {
	gsm := CodingGSM7
	if packed {
		gsm = CodingGSM7Packed
	}
	switch {
	case dc == 0x00:
		return gsm
	case dc == 0x01:
		return CodingIA5
	case dc == 0x02 || dc == 0x04:
		return CodingBinary
	case dc == 0x03:
		return CodingLatin1
	case dc == 0x08:
		return CodingUCS2
	case dc < 0x10:
		return CodingUnsupported // 0x05 JIS, 0x06 Cyrillic, 0x07 Hebrew, 0x09 pictogram, 0x0A ISO-2022-JP, 0x0D, 0x0E
	case dc < 0x80: // GSM general data coding (0x00-0x3F) and automatic deletion (0x40-0x7F) groups
		if dc&0x20 != 0 {
			return CodingUnsupported // compressed
		}
		switch dc & 0x0C {
		case 0x00:
			return gsm
		case 0x04:
			return CodingBinary
		case 0x08:
			return CodingUCS2
		}
		return CodingUnsupported
	case dc >= 0xC0 && dc < 0xE0: // message waiting indication, discard or store, GSM 7-bit
		return gsm
	case dc >= 0xE0 && dc < 0xF0: // message waiting indication, store, UCS2
		return CodingUCS2
	case dc >= 0xF0: // data coding / message class: bit 2 chooses 8-bit data
		if dc&0x04 != 0 {
			return CodingBinary
		}
		return gsm
	}
	return CodingUnsupported // 0x80-0xBF reserved
}

// UserData returns s's message octets without the user data header: short_message, or
// message_payload when short_message is empty, with the UDH skipped when esm_class has 0x40.
// A UDH longer than the message leaves nothing.
func UserData(s *smpp.Submit) []byte {
	p := s.Payload()
	if s.ESMClass&0x40 == 0 || len(p) == 0 {
		return p
	}
	return p[min(int(p[0])+1, len(p)):]
}

// AppendText appends the characters of s's message to dst and tells how it was read; for a
// coding that is not text (binary, unsupported) it appends nothing. packed: see CodingOf.
func AppendText(dst []rune, s *smpp.Submit, packed bool) ([]rune, Coding) {
	return appendText(dst, s, packed)
}

// TextOf returns m's decoded text, decoding it into m.Text the first time a stage asks, so the
// stages of one message decode it once (packed as for AppendText; the first caller's choice
// holds for the message).
func TextOf(m *router.Message, packed bool) ([]rune, Coding) {
	if !m.TextDone {
		var c Coding
		m.Text, c = appendText(m.Text[:0], &m.Submit, packed)
		m.TextCoding, m.TextDone = uint8(c), true
	}
	return m.Text, Coding(m.TextCoding)
}

func appendText(dst []rune, s *smpp.Submit, packed bool) ([]rune, Coding) {
	c := CodingOf(s.DataCoding, packed)
	if c == CodingGSM7Packed {
		p := s.Payload()
		skip := 0
		if s.ESMClass&0x40 != 0 && len(p) > 0 {
			// the UDH is followed by fill bits up to the next septet boundary
			skip = (min(int(p[0])+1, len(p))*8 + 6) / 7
		}
		return appendGSM7Packed(dst, p, skip), c
	}
	return AppendDecoded(dst, c, UserData(s)), c
}

// AppendDecoded appends the characters of user data b (no UDH) read in coding c to dst. Octets
// that are not characters in c (GSM or IA5 octets above 0x7F, unpaired UTF-16 surrogates) become
// U+FFFD; a trailing odd UCS2 octet and a trailing GSM escape are dropped.
func AppendDecoded(dst []rune, c Coding, b []byte) []rune {
	switch c {
	case CodingGSM7:
		return appendGSM7(dst, b)
	case CodingGSM7Packed:
		return appendGSM7Packed(dst, b, 0)
	case CodingIA5:
		dst = slices.Grow(dst, len(b))
		for _, o := range b {
			r := rune(o)
			if o >= 0x80 {
				r = utf8.RuneError
			}
			dst = append(dst, r)
		}
	case CodingLatin1:
		dst = slices.Grow(dst, len(b))
		for _, o := range b {
			dst = append(dst, rune(o))
		}
	case CodingUCS2:
		return appendUCS2(dst, b)
	}
	return dst
}

// gsmBasic is the GSM 03.38 default alphabet.
var gsmBasic = [128]rune{
	'@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
	'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', 0x1B, 'Æ', 'æ', 'ß', 'É',
	' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
	'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
	'¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
	'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
	'¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
	'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
}

// gsmExt maps the septet after an escape (0x1B) to its extension-table character; any other
// septet shows as its default-alphabet character (GSM 03.38 §6.2.1.1), and a second escape as a
// space.
func gsmExt(s byte) rune {
	switch s {
	case 0x0A:
		return '\f'
	case 0x14:
		return '^'
	case 0x1B:
		return ' '
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
	return gsmBasic[s&0x7F]
}

func appendGSM7(dst []rune, b []byte) []rune {
	dst = slices.Grow(dst, len(b))
	j := len(dst)
	out := dst[:j+len(b)]
	for i := 0; i < len(b); i++ {
		o := b[i]
		switch {
		case o < 0x80 && o != 0x1B:
			out[j] = gsmBasic[o]
		case o >= 0x80:
			out[j] = utf8.RuneError
		case i+1 == len(b):
			continue // a trailing escape
		default:
			i++
			if o = b[i]; o >= 0x80 {
				out[j] = utf8.RuneError
			} else {
				out[j] = gsmExt(o)
			}
		}
		j++
	}
	return out[:j]
}

// appendGSM7Packed decodes packed septets, starting at septet skip.
func appendGSM7Packed(dst []rune, b []byte, skip int) []rune {
	n := len(b) * 8 / 7
	dst = slices.Grow(dst, max(n-skip, 0))
	esc := false
	for i := skip; i < n; i++ {
		bit := i * 7
		j, sh := bit>>3, uint(bit&7)
		v := uint16(b[j]) >> sh
		if sh > 1 {
			v |= uint16(b[j+1]) << (8 - sh) // j+1 < len(b): septet i ends within b
		}
		s := byte(v & 0x7F)
		switch {
		case esc:
			dst, esc = append(dst, gsmExt(s)), false
		case s == 0x1B:
			esc = true
		default:
			dst = append(dst, gsmBasic[s])
		}
	}
	return dst
}

func appendUCS2(dst []rune, b []byte) []rune {
	dst = slices.Grow(dst, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		u := rune(b[i])<<8 | rune(b[i+1])
		switch {
		case u < 0xD800 || u >= 0xE000:
		case u < 0xDC00 && i+3 < len(b):
			lo := rune(b[i+2])<<8 | rune(b[i+3])
			if lo >= 0xDC00 && lo < 0xE000 {
				u = 0x10000 + (u-0xD800)<<10 + (lo - 0xDC00)
				i += 2
			} else {
				u = utf8.RuneError
			}
		default:
			u = utf8.RuneError
		}
		dst = append(dst, u)
	}
	return dst
}
