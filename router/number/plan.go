package number

import (
	"fmt"
	"strings"
)

// countryDef is one planCountries row (plan_gen.go).
type countryDef struct {
	region  string // ISO 3166 region, "001" for a non-geographic calling code
	cc      uint16 // country calling code
	trunk   string // national (trunk) prefix, "" if none
	intl    string // international prefix other than 00, "" if none
	lengths uint32 // bit n set: n-digit national significant numbers exist
}

// sharedDef is one planShared row: numbers starting with prefix (country code first) belong to
// region, not to their calling code's main region.
type sharedDef struct {
	prefix uint64
	region string
}

// country is a region of the numbering plan as the hot path uses it.
type country struct {
	countryDef
	ccDigits int  // digits in cc
	shared   bool // cc is shared with other regions: the region comes from plan.shared
}

// numberingPlan is built once, at package initialisation, from the generated tables.
// Immutable afterwards.
type numberingPlan struct {
	countries []country
	byCC      [1000]int16 // country calling code -> index of its main region; -1: unassigned
	byRegion  map[string]int
	shared    lpm // values: index into countries + 1
}

var plan = buildPlan()

func buildPlan() *numberingPlan {
	p := &numberingPlan{byRegion: map[string]int{}}
	for i := range p.byCC {
		p.byCC[i] = -1
	}
	ccRegions := map[uint16]int{}
	for _, d := range planCountries {
		ccRegions[d.cc]++
	}
	for _, d := range planCountries {
		i := len(p.countries)
		p.countries = append(p.countries, country{countryDef: d, ccDigits: digits(uint64(d.cc)), shared: ccRegions[d.cc] > 1})
		if p.byCC[d.cc] < 0 {
			p.byCC[d.cc] = int16(i)
		}
		if d.region != "001" {
			p.byRegion[d.region] = i
		}
	}
	var entries []entry
	for _, s := range planShared {
		i, ok := p.byRegion[s.region]
		if !ok {
			panic(fmt.Sprintf("number: planShared names unknown region %s", s.region))
		}
		entries = append(entries, entry{prefix: s.prefix, digits: uint8(digits(s.prefix)), val: uint16(i + 1)})
	}
	p.shared = buildLPM(entries)
	return p
}

// Region reports whether region is an ISO 3166 region code the numbering plan knows ("DE").
func Region(region string) bool {
	_, ok := plan.byRegion[strings.ToUpper(region)]
	return ok
}

// CallingCode returns the country calling code of region (49 for "DE"), 0 if it is unknown.
func CallingCode(region string) int {
	if i, ok := plan.byRegion[strings.ToUpper(region)]; ok {
		return int(plan.countries[i].cc)
	}
	return 0
}

// pow10[n] is 10ⁿ.
var pow10 = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
	1e16, 1e17, 1e18, 1e19}

// digits returns the number of decimal digits of n (1 for 0).
func digits(n uint64) int {
	d := 1
	for d < len(pow10) && n >= pow10[d] {
		d++
	}
	return d
}
