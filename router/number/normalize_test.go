package number

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

func normalizer(t testing.TB, home, unknown string) *Normalizer {
	t.Helper()
	cfg := DefaultNormalizerConfig()
	cfg.DefaultCountry = home
	if unknown != "" {
		cfg.UnknownTON = unknown
	}
	z, err := NewNormalizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func TestNormalize(t *testing.T) {
	const (
		unk  = TONUnknown
		intl = TONInternational
		nat  = TONNational
	)
	tests := []struct {
		name    string
		home    string // default country
		unknown string // UnknownTON, "" default
		addr    string
		ton     byte
		want    uint64
		region  string
		err     error
	}{
		// Germany.
		{"DE mobile national", "DE", "", "015112345678", nat, 4915112345678, "DE", nil},
		{"DE mobile unknown TON with trunk", "DE", "", "015112345678", unk, 4915112345678, "DE", nil},
		{"DE + with spaces", "DE", "", "+49 151 1234 5678", unk, 4915112345678, "DE", nil},
		{"DE + with spaces, TON national", "DE", "", "+49 151 1234 5678", nat, 4915112345678, "DE", nil},
		{"DE 00 prefix", "DE", "", "0049 151 12345678", unk, 4915112345678, "DE", nil},
		{"DE 00 prefix, no default country", "", "", "0049151-1234.5678", unk, 4915112345678, "DE", nil},
		{"DE 00 prefix under TON international", "", "", "004915112345678", intl, 4915112345678, "DE", nil},
		{"DE parentheses", "DE", "", "(0151) 1234-5678", nat, 4915112345678, "DE", nil},
		{"DE TON international", "", "", "4915112345678", intl, 4915112345678, "DE", nil},
		{"DE unknown TON, international digits", "DE", "", "4915112345678", unk, 4915112345678, "DE", nil},
		{"DE national without trunk", "DE", "", "15112345678", nat, 4915112345678, "DE", nil},
		{"DE Berlin landline", "DE", "", "030 1234567", nat, 49301234567, "DE", nil},
		// China: mobiles are dialled without the trunk prefix.
		{"CN mobile national", "CN", "", "13800138000", nat, 8613800138000, "CN", nil},
		{"CN mobile unknown TON read nationally", "CN", UnknownNational, "13800138000", unk, 8613800138000, "CN", nil},
		{"CN +86", "", "", "+86 138 0013 8000", unk, 8613800138000, "CN", nil},
		{"CN 0086", "CN", "", "0086 13800138000", unk, 8613800138000, "CN", nil},
		// The reason UnknownTON exists: as international digits the same number is a NANP one.
		{"CN mobile unknown TON read internationally", "CN", "", "13800138000", unk, 13800138000, "US", nil},
		{"national first falls back to international", "CN", UnknownNational, "4915112345678", unk, 4915112345678, "DE", nil},
		// NANP and other shared calling codes.
		{"US +1", "", "", "+1 212 555 0123", unk, 12125550123, "US", nil},
		{"US national", "US", "", "(212) 555-0123", nat, 12125550123, "US", nil},
		{"US trunk 1", "US", "", "1 212 555 0123", unk, 12125550123, "US", nil},
		{"US unknown TON falls back to national", "US", "", "2125550123", unk, 12125550123, "US", nil},
		{"US 011 international prefix", "US", "", "011 49 151 12345678", unk, 4915112345678, "DE", nil},
		{"AU 0011 international prefix", "AU", "", "0011 49 151 12345678", unk, 4915112345678, "DE", nil},
		{"CV: 0 international prefix", "CV", "", "0 49 151 12345678", unk, 4915112345678, "DE", nil},
		{"CV: 00 still international", "CV", "", "0049 151 12345678", unk, 4915112345678, "DE", nil},
		{"011 is not international outside NANP", "ZA", "", "011 123 4567", nat, 27111234567, "ZA", nil},
		{"CA by area code", "", "", "+1 416 555 0123", intl, 14165550123, "CA", nil},
		{"JM by area code", "", "", "+1 876 555 0123", intl, 18765550123, "JM", nil},
		{"RU", "", "", "+7 912 345 67 89", unk, 79123456789, "RU", nil},
		{"KZ", "", "", "+7 701 123 4567", unk, 77011234567, "KZ", nil},
		{"RU trunk 8", "RU", "", "8 912 345-67-89", unk, 79123456789, "RU", nil},
		{"RU 810 international prefix", "RU", "", "810 49 151 12345678", unk, 4915112345678, "DE", nil},
		{"GG mobile", "", "", "+44 7781 123456", intl, 447781123456, "GG", nil},
		{"GB mobile", "GB", "", "07400 123456", nat, 447400123456, "GB", nil},
		// Italy has no trunk prefix: the 0 belongs to the number.
		{"IT Rome national", "IT", "", "06 1234 5678", nat, 390612345678, "IT", nil},
		{"IT Rome unknown TON", "IT", "", "06 1234 5678", unk, 390612345678, "IT", nil},
		{"non-geographic +800", "", "", "+800 1234 5678", intl, 80012345678, "001", nil},
		// Invalid.
		{"empty", "DE", "", "", unk, 0, "", ErrEmpty},
		{"separators only", "DE", "", " - ", unk, 0, "", ErrEmpty},
		{"plus only", "DE", "", "+", unk, 0, "", ErrEmpty},
		{"letters", "DE", "", "0151ABC5678", unk, 0, "", ErrInvalidChar},
		{"letters after +", "", "", "+49 151 CALL ME", intl, 0, "", ErrInvalidChar},
		{"plus inside", "", "", "49+15112345678", intl, 0, "", ErrInvalidChar},
		{"double plus", "", "", "++4915112345678", intl, 0, "", ErrInvalidChar},
		{"too short", "DE", "", "+49 151 12", unk, 0, "", ErrTooShort},
		{"too long", "DE", "", "+49 151 1234 5678 9012", unk, 0, "", ErrTooLong},
		{"too long national", "DE", "", "0151 1234 5678 9012 34", nat, 0, "", ErrTooLong},
		{"too many digits to read", "", "", "+4915112345678901234567890", intl, 0, "", ErrTooLong},
		{"length impossible in the country", "", "", "+1 212 555 01234", intl, 0, "", ErrLength},
		{"national without default country", "", "", "015112345678", nat, 0, "", ErrNoDefaultCountry},
		{"unknown TON trunk prefix without default country", "", "", "015112345678", unk, 0, "", ErrNoDefaultCountry},
		{"TON international with a trunk prefix", "DE", "", "015112345678", intl, 0, "", ErrCountryCode},
		{"+ then 00", "", "", "+0049 151 12345678", unk, 0, "", ErrCountryCode},
		{"unassigned country code", "", "", "+28 1234 5678", intl, 0, "", ErrCountryCode},
		{"alphanumeric sender", "DE", "", "MyShop", TONAlphanumeric, 0, "", ErrAlphanumeric},
		{"alphanumeric sender made of digits", "DE", "", "4915112345678", TONAlphanumeric, 0, "", ErrAlphanumeric},
		{"network-specific TON", "DE", "", "1234", 3, 0, "", ErrTON},
		{"abbreviated TON", "DE", "", "1234", 6, 0, "", ErrTON},
		// Tristan da Cunha has 7-digit numbers: below the default minimum.
		{"below min digits", "", "", "+290 8123", intl, 0, "", ErrTooShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z := normalizer(t, tt.home, tt.unknown)
			got, err := z.Normalize([]byte(tt.addr), tt.ton)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Normalize(%q, ton %d) error = %v, want %v", tt.addr, tt.ton, err, tt.err)
			}
			if got.E164 != tt.want || got.Region != tt.region {
				t.Fatalf("Normalize(%q, ton %d) = %+v, want %d %s", tt.addr, tt.ton, got, tt.want, tt.region)
			}
			if err == nil && strconv.Itoa(int(got.CC)) != strconv.FormatUint(got.E164, 10)[:len(strconv.Itoa(int(got.CC)))] {
				t.Fatalf("CC %d is not a prefix of %d", got.CC, got.E164)
			}
		})
	}
}

func TestNormalizeMinDigits(t *testing.T) {
	cfg := DefaultNormalizerConfig()
	cfg.MinDigits = 7
	z, err := NewNormalizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := z.Normalize([]byte("+290 8123"), TONInternational); err != nil || n.E164 != 2908123 || n.Region != "TA" {
		t.Fatalf("Tristan da Cunha with min_digits 7: %+v %v", n, err)
	}
}

func TestNormalizerConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		mutate func(*NormalizerConfig)
		ok     bool
	}{
		{func(c *NormalizerConfig) {}, true},
		{func(c *NormalizerConfig) { c.DefaultCountry = "de" }, true},
		{func(c *NormalizerConfig) { c.DefaultCountry = "XX" }, false},
		{func(c *NormalizerConfig) { c.DefaultCountry = "001" }, false},
		{func(c *NormalizerConfig) { c.UnknownTON = "guess" }, false},
		{func(c *NormalizerConfig) { c.MinDigits = 0 }, false},
		{func(c *NormalizerConfig) { c.MinDigits = 16 }, false},
	} {
		c := DefaultNormalizerConfig()
		tt.mutate(&c)
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", c, err, tt.ok)
		}
	}
}

// types are the number types libphonenumber has example numbers for.
var types = []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE,
	phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST, phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER,
	phonenumbers.PAGER, phonenumbers.UAN, phonenumbers.VOICEMAIL}

// TestNormalizeAgreesWithLibphonenumber normalises every example number of every region and type
// in E.164 (and, for a few countries, in national format with that country as default) and
// expects libphonenumber's E.164 number and region.
func TestNormalizeAgreesWithLibphonenumber(t *testing.T) {
	z := normalizer(t, "", "")
	z.minDigits = 1 // tiny countries' example numbers are shorter than the default minimum
	checked := 0
	for region := range phonenumbers.GetSupportedRegions() {
		for _, typ := range types {
			ex := phonenumbers.GetExampleNumberForType(region, typ)
			if ex == nil {
				continue
			}
			e164 := phonenumbers.Format(ex, phonenumbers.E164)
			if len(e164)-1 > MaxDigits {
				continue // libphonenumber allows 16-17 digit German and Japanese numbers
			}
			want := phonenumbers.GetRegionCodeForNumber(ex)
			got, err := z.Normalize([]byte(e164), TONInternational)
			if err != nil || "+"+strconv.FormatUint(got.E164, 10) != e164 || got.Region != want {
				t.Errorf("%s %v example %s: got %+v %v, want region %s", region, typ, e164, got, err, want)
			}
			checked++
		}
	}
	for _, region := range []string{"DE", "CN", "US", "GB", "FR", "IT", "ES", "NL", "PL", "RU", "IN", "JP", "CA", "AU"} {
		z := normalizer(t, region, "")
		for _, typ := range []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE} {
			ex := phonenumbers.GetExampleNumberForType(region, typ)
			national := phonenumbers.Format(ex, phonenumbers.NATIONAL)
			got, err := z.Normalize([]byte(national), TONNational)
			if e164 := phonenumbers.Format(ex, phonenumbers.E164); err != nil || "+"+strconv.FormatUint(got.E164, 10) != e164 {
				t.Errorf("%s national %q: got %+v %v, want %s", region, national, got, err, e164)
			}
			checked++
		}
	}
	if checked < 500 {
		t.Fatalf("only %d example numbers checked", checked)
	}
}

// TestSharedCallingCodes draws valid numbers of the calling codes several regions share (+1,
// +7, +44…) and expects libphonenumber's region for each.
func TestSharedCallingCodes(t *testing.T) {
	z := normalizer(t, "", "")
	z.minDigits = 1
	rng := rand.New(rand.NewPCG(1, 2))
	checked := map[string]int{}
	for cc := range phonenumbers.GetSupportedCallingCodes() {
		regions := phonenumbers.GetRegionCodesForCountryCode(cc)
		if len(regions) < 2 {
			continue
		}
		for _, region := range regions {
			base := phonenumbers.GetExampleNumber(region)
			if base == nil {
				continue
			}
			nsn := phonenumbers.GetNationalSignificantNumber(base)
			// Vary the digits after a random cut of the example number, keeping valid ones.
			for try := 0; try < 400 && checked[region] < 25; try++ {
				keep := rng.IntN(len(nsn))
				s := []byte(nsn)
				for i := keep; i < len(s); i++ {
					s[i] = byte('0' + rng.IntN(10))
				}
				num, err := phonenumbers.Parse("+"+strconv.Itoa(cc)+string(s), "")
				if err != nil || !phonenumbers.IsValidNumber(num) {
					continue
				}
				want := phonenumbers.GetRegionCodeForNumber(num)
				e164 := phonenumbers.Format(num, phonenumbers.E164)
				got, err := z.Normalize([]byte(e164), TONInternational)
				if err != nil || got.Region != want {
					t.Errorf("%s: got %+v %v, want %s", e164, got, err, want)
				}
				checked[region]++
			}
		}
	}
	total := 0
	for _, n := range checked {
		total += n
	}
	if total < 300 || checked["CA"] == 0 || checked["KZ"] == 0 || checked["GG"] == 0 {
		t.Fatalf("too few numbers checked: %v", checked)
	}
}

func TestNormalizeAllocatesNothing(t *testing.T) {
	z := normalizer(t, "DE", "")
	addr := []byte("+49 151 1234 5678")
	if n := testing.AllocsPerRun(100, func() { z.Normalize(addr, TONUnknown) }); n != 0 {
		t.Fatalf("Normalize allocates %.0f times", n)
	}
	bad := []byte("0151ABC")
	if n := testing.AllocsPerRun(100, func() { z.Normalize(bad, TONUnknown) }); n != 0 {
		t.Fatalf("Normalize of an invalid number allocates %.0f times", n)
	}
}

func BenchmarkNormalize(b *testing.B) {
	z := normalizer(b, "DE", "")
	addrs := [][]byte{[]byte("+4915112345678"), []byte("015112345678"), []byte("0049 151 1234 5678"), []byte("+1 416 555 0123")}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := z.Normalize(addrs[i&3], TONUnknown); err != nil {
			b.Fatal(err)
		}
	}
}
