package smpptest

import (
	"fmt"
	"strconv"
	"strings"
)

// IDRadix is the digit set of a message id.
type IDRadix uint8

// Radixes of message ids.
const (
	Decimal  IDRadix = iota // 0-9
	HexLower                // 0-9a-f
	HexUpper                // 0-9A-F
)

// MaxIDWidth is the widest zero padding an IDFormat may ask for: message ids are at most 64
// octets.
const MaxIDWidth = 64

// IDFormat renders a message number as a message id: in Radix, zero-padded to at least Width
// digits. The zero value is plain decimal ("1", "2", ...). Real SMSCs differ, and a receipt's id
// may be written differently from the submit_sm_resp's: see Config.
type IDFormat struct {
	Radix IDRadix
	Width int // minimum digits, zero-padded; 0..MaxIDWidth
}

// Append appends the id of n to dst; it allocates only when dst lacks the room.
func (f IDFormat) Append(dst []byte, n uint64) []byte {
	var tmp [20]byte
	base := 10
	if f.Radix != Decimal {
		base = 16
	}
	d := strconv.AppendUint(tmp[:0], n, base)
	for i := len(d); i < f.Width; i++ {
		dst = append(dst, '0')
	}
	if f.Radix == HexUpper {
		for i, c := range d {
			if c >= 'a' {
				d[i] = c - 'a' + 'A'
			}
		}
	}
	return append(dst, d...)
}

// Format returns the id of n.
func (f IDFormat) Format(n uint64) string { return string(f.Append(nil, n)) }

// String returns f as ParseIDFormat reads it: "dec", "hex" (lower case) or "HEX" (upper case),
// followed by ":width" when padded.
func (f IDFormat) String() string {
	name := [...]string{Decimal: "dec", HexLower: "hex", HexUpper: "HEX"}[min(f.Radix, HexUpper)]
	if f.Width > 0 {
		return fmt.Sprintf("%s:%d", name, f.Width)
	}
	return name
}

// validate reports a radix or width out of range.
func (f IDFormat) validate() error {
	if f.Radix > HexUpper {
		return fmt.Errorf("radix %d: want Decimal, HexLower or HexUpper", f.Radix)
	}
	if f.Width < 0 || f.Width > MaxIDWidth {
		return fmt.Errorf("width %d: want 0..%d", f.Width, MaxIDWidth)
	}
	return nil
}

// ParseIDFormat reads "dec", "hex" or "HEX", optionally followed by ":width" (zero padding), e.g.
// "HEX:8" for 0000002A.
func ParseIDFormat(s string) (IDFormat, error) {
	name, width, padded := strings.Cut(s, ":")
	var f IDFormat
	switch name {
	case "dec":
		f.Radix = Decimal
	case "hex":
		f.Radix = HexLower
	case "HEX":
		f.Radix = HexUpper
	default:
		return IDFormat{}, fmt.Errorf("id format %q: want dec, hex or HEX, optionally with :width (e.g. HEX:8)", s)
	}
	if padded {
		w, err := strconv.Atoi(width)
		if err != nil {
			return IDFormat{}, fmt.Errorf("id format %q: width %q is not a number", s, width)
		}
		f.Width = w
	}
	if err := f.validate(); err != nil {
		return IDFormat{}, fmt.Errorf("id format %q: %w", s, err)
	}
	return f, nil
}

// MarshalText implements encoding.TextMarshaler (flag.TextVar).
func (f IDFormat) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseIDFormat.
func (f *IDFormat) UnmarshalText(b []byte) error {
	v, err := ParseIDFormat(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}
