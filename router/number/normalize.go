package number

import (
	"errors"
	"fmt"
	"strings"
)

// SMPP type of number (TON) values Normalize distinguishes.
const (
	TONUnknown       byte = 0
	TONInternational byte = 1
	TONNational      byte = 2
	TONAlphanumeric  byte = 5
)

// Why an address is not a number. Normalize returns these as they are (never wrapped), so the
// hot path allocates nothing; their text is the reason recorded in explain output.
var (
	// ErrEmpty: the address has no digits.
	ErrEmpty = errors.New("no digits")
	// ErrInvalidChar: a letter or other character besides digits, a leading '+', spaces,
	// dashes, dots and parentheses.
	ErrInvalidChar = errors.New("letters or other characters besides digits and + - . ( ) space")
	// ErrAlphanumeric: TON 5, an alphanumeric (sender name) address.
	ErrAlphanumeric = errors.New("alphanumeric address (TON 5), not a number")
	// ErrTON: a type of number other than unknown (0), international (1), national (2).
	ErrTON = errors.New("type of number not unknown, international or national")
	// ErrNoDefaultCountry: a national number, but no default country is configured.
	ErrNoDefaultCountry = errors.New("national number without a default country")
	// ErrCountryCode: the number does not start with an assigned country calling code.
	ErrCountryCode = errors.New("no assigned country calling code")
	// ErrTooShort: fewer digits than the configured minimum (country code included).
	ErrTooShort = errors.New("too short")
	// ErrTooLong: more than 15 digits (country code included), E.164's maximum.
	ErrTooLong = errors.New("too long: E.164 allows 15 digits")
	// ErrLength: the national number's length does not exist in its country.
	ErrLength = errors.New("national number length not possible in its country")
)

// Number is an E.164 number.
type Number struct {
	E164   uint64 // country code first: 4915112345678
	CC     uint16 // country calling code: 49
	Region string // ISO 3166 region ("DE"); "001" for non-geographic codes (+800, +882…)
}

// Unknown-TON readings (NormalizerConfig.UnknownTON).
const (
	UnknownInternational = "international"
	UnknownNational      = "national"
)

// NormalizerConfig configures a Normalizer.
type NormalizerConfig struct {
	// DefaultCountry is the ISO 3166 region ("DE", "CN") national numbers belong to; "" none:
	// national numbers are then invalid.
	DefaultCountry string
	// UnknownTON is how a TON 0 number without '+', an international prefix or the default
	// country's trunk prefix is read first: UnknownInternational (country code first) or
	// UnknownNational (a national number of DefaultCountry). If that reading is invalid the
	// other is tried.
	UnknownTON string
	// MinDigits is the fewest digits a number may have, country code included (1..15).
	MinDigits int
}

// DefaultNormalizerConfig returns the defaults: no default country, TON 0 read as
// international first, at least 8 digits.
func DefaultNormalizerConfig() NormalizerConfig {
	return NormalizerConfig{UnknownTON: UnknownInternational, MinDigits: 8}
}

// Validate reports the first invalid field.
func (c *NormalizerConfig) Validate() error {
	if c.DefaultCountry != "" && !Region(c.DefaultCountry) {
		return fmt.Errorf("default_country: %q is not an ISO 3166 region code with a numbering plan (e.g. \"DE\")", c.DefaultCountry)
	}
	if c.UnknownTON != UnknownInternational && c.UnknownTON != UnknownNational {
		return fmt.Errorf("unknown_ton: %q, want %q or %q", c.UnknownTON, UnknownInternational, UnknownNational)
	}
	if c.MinDigits < 1 || c.MinDigits > MaxDigits {
		return fmt.Errorf("min_digits: %d, want 1..%d", c.MinDigits, MaxDigits)
	}
	return nil
}

// Normalizer turns SMPP addresses into E.164 numbers using the numbering plan generated from
// libphonenumber (plan_gen.go). Immutable; safe for concurrent use; Normalize allocates nothing.
type Normalizer struct {
	home      *country // nil: no default country
	trunk     string   // home's trunk prefix
	intl      string   // home's international prefix besides 00
	national  bool     // TON 0 without prefixes: national reading first
	minDigits int
}

// NewNormalizer returns a Normalizer for cfg.
func NewNormalizer(cfg NormalizerConfig) (*Normalizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	z := &Normalizer{national: cfg.UnknownTON == UnknownNational, minDigits: cfg.MinDigits}
	if cfg.DefaultCountry != "" {
		z.home = &plan.countries[plan.byRegion[strings.ToUpper(cfg.DefaultCountry)]]
		z.trunk, z.intl = z.home.trunk, z.home.intl
	}
	return z, nil
}

// maxInput bounds the digits Normalize reads: 15 plus the longest international prefix.
const maxInput = 24

// Normalize returns the E.164 number addr (an SMPP source or destination address) with type of
// number ton stands for:
//
//   - separators (space - . ( )) are dropped; any other non-digit but a leading '+' is invalid;
//   - a leading '+', "00" or the default country's own international prefix ("011" in NANP,
//     "810" in Russia) makes it international, whatever the TON;
//   - TON 1 (international): the digits start with the country code;
//   - TON 2 (national): the default country's trunk prefix ("0" in DE) is dropped, if present,
//     and its country code prepended;
//   - TON 0 (unknown): with the trunk prefix, as TON 2 (falling back to international if that is
//     invalid); without, read as configured (UnknownTON), falling back to the other reading;
//   - TON 5 (alphanumeric) is ErrAlphanumeric; other TONs ErrTON.
//
// The result is validated: an assigned country calling code, at most 15 and at least MinDigits
// digits, and a national number length the country has. Numbering ranges are not checked (they
// change faster than lengths; the upstream SMSC rejects unassigned ones).
func (z *Normalizer) Normalize(addr []byte, ton byte) (Number, error) {
	switch ton {
	case TONUnknown, TONInternational, TONNational:
	case TONAlphanumeric:
		return Number{}, ErrAlphanumeric
	default:
		return Number{}, ErrTON
	}
	var buf [maxInput]byte
	n, plus := 0, false
	for _, c := range addr {
		switch {
		case c >= '0' && c <= '9':
			if n == len(buf) {
				return Number{}, ErrTooLong
			}
			buf[n] = c
			n++
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		case c == '+' && n == 0 && !plus:
			plus = true
		default:
			return Number{}, ErrInvalidChar
		}
	}
	if n == 0 {
		return Number{}, ErrEmpty
	}
	d := buf[:n]
	if plus {
		return z.international(d)
	}
	if p := z.intlPrefix(d); p > 0 {
		return z.international(d[p:])
	}
	if ton == TONInternational {
		return z.international(d)
	}
	if z.home == nil {
		if ton == TONNational {
			return Number{}, ErrNoDefaultCountry
		}
		num, err := z.international(d)
		if err != nil && d[0] == '0' {
			err = ErrNoDefaultCountry // a trunk prefix, most likely
		}
		return num, err
	}
	if z.trunk != "" && hasPrefix(d, z.trunk) {
		num, err := z.nationalNumber(d[len(z.trunk):])
		if err != nil && ton == TONUnknown {
			if alt, err2 := z.international(d); err2 == nil {
				return alt, nil
			}
		}
		return num, err
	}
	if ton == TONNational {
		return z.nationalNumber(d)
	}
	num, err := z.read(d, z.national)
	if err != nil {
		if alt, err2 := z.read(d, !z.national); err2 == nil {
			return alt, nil
		}
	}
	return num, err
}

// read reads d as a national number of the default country or as an international one.
func (z *Normalizer) read(d []byte, national bool) (Number, error) {
	if national {
		return z.nationalNumber(d)
	}
	return z.international(d)
}

// intlPrefix returns the length of the international prefix d starts with, 0 if none; the
// longer of 00 and the default country's own (0011 before 00 before 0).
func (z *Normalizer) intlPrefix(d []byte) int {
	own := len(z.intl) > 0 && len(d) > len(z.intl) && hasPrefix(d, z.intl)
	if own && len(z.intl) > 2 {
		return len(z.intl)
	}
	if len(d) > 2 && d[0] == '0' && d[1] == '0' {
		return 2
	}
	if own {
		return len(z.intl)
	}
	return 0
}

func hasPrefix(d []byte, p string) bool {
	if len(d) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if d[i] != p[i] {
			return false
		}
	}
	return true
}

// international validates d, digits starting with a country calling code.
func (z *Normalizer) international(d []byte) (Number, error) {
	if len(d) > MaxDigits {
		return Number{}, ErrTooLong
	}
	if len(d) == 0 || d[0] == '0' {
		return Number{}, ErrCountryCode
	}
	cc, ci := 0, int16(-1)
	for i := 0; i < 3 && i < len(d)-1; i++ {
		cc = cc*10 + int(d[i]-'0')
		if ci = plan.byCC[cc]; ci >= 0 {
			break
		}
	}
	if ci < 0 {
		return Number{}, ErrCountryCode
	}
	var n uint64
	for _, c := range d {
		n = n*10 + uint64(c-'0')
	}
	return z.check(n, len(d), &plan.countries[ci])
}

// nationalNumber validates nsn, a national significant number of the default country.
func (z *Normalizer) nationalNumber(nsn []byte) (Number, error) {
	if len(nsn) == 0 {
		return Number{}, ErrTooShort
	}
	total := z.home.ccDigits + len(nsn)
	if total > MaxDigits {
		return Number{}, ErrTooLong
	}
	n := uint64(z.home.cc)
	for _, c := range nsn {
		n = n*10 + uint64(c-'0')
	}
	return z.check(n, total, &plan.countries[plan.byCC[z.home.cc]])
}

// check validates n (total digits) against main, the main region of its calling code.
func (z *Normalizer) check(n uint64, total int, main *country) (Number, error) {
	if total < z.minDigits {
		return Number{}, ErrTooShort
	}
	c := main
	if c.shared {
		if v := plan.shared.lookup(n, total); v != 0 {
			c = &plan.countries[v-1]
		}
	}
	if c.lengths&(1<<uint(total-c.ccDigits)) == 0 {
		return Number{}, ErrLength
	}
	return Number{E164: n, CC: c.cc, Region: c.region}, nil
}
