package number

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// TestLPMAgainstScan checks the flattened table against a plain scan of the prefixes, for
// random nested prefix sets and numbers of every length.
func TestLPMAgainstScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 50; round++ {
		var es []entry
		for i := 0; i < 1+rng.IntN(200); i++ {
			d := 1 + rng.IntN(8)
			p := uint64(1 + rng.IntN(3)) // few leading digits: prefixes nest
			for j := 1; j < d; j++ {
				p = p*10 + uint64(rng.IntN(3))
			}
			es = append(es, entry{prefix: p, digits: uint8(d), val: uint16(1 + rng.IntN(5))})
		}
		t1 := buildLPM(es)
		scan := func(n uint64, d int) uint16 {
			best, bestD := uint16(0), 0
			for _, e := range es { // the last of equal prefixes wins
				if int(e.digits) <= d && n/pow10[d-int(e.digits)] == e.prefix && int(e.digits) >= bestD {
					best, bestD = e.val, int(e.digits)
				}
			}
			return best
		}
		for i := 0; i < 2000; i++ {
			d := 1 + rng.IntN(MaxDigits)
			n := uint64(1 + rng.IntN(3))
			for j := 1; j < d; j++ {
				n = n*10 + uint64(rng.IntN(3))
			}
			if got, want := t1.lookup(n, d), scan(n, d); got != want {
				t.Fatalf("round %d: lookup(%d) = %d, want %d (prefixes %v)", round, n, got, want, es)
			}
		}
	}
}

func TestLPMEdges(t *testing.T) {
	tb := buildLPM([]entry{{1, 1, 1}, {999, 3, 2}, {49, 2, 3}, {4915, 4, 4}, {49151, 5, 5}, {4916, 4, 6}, {1200, 4, 7}})
	for _, tt := range []struct {
		n    uint64
		want uint16
	}{
		{12125550123, 1}, {999123456789012, 2}, {99, 0}, {4930123456, 3}, {491501234567, 4},
		{4915112345678, 5}, {49151, 5}, {4915, 4}, {4916, 6}, {4917, 3}, {48, 0}, {5, 0}, {100000000000000, 1},
		{1200, 7}, {12001, 7}, {120, 1}, {12, 1}, {491, 3}, // shorter than a prefix: its padding is not digits
	} {
		if got := tb.lookup(tt.n, digits(tt.n)); got != tt.want {
			t.Errorf("lookup(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
	var empty lpm = buildLPM(nil)
	if empty.lookup(4915112345678, 13) != 0 {
		t.Fatal("empty table found something")
	}
}

// TestOperatorAgreesWithLibphonenumber compares the generated table with
// phonenumbers.GetCarrierForNumber for numbers drawn from the carrier prefixes of several
// countries and for every region's example mobile number.
func TestOperatorAgreesWithLibphonenumber(t *testing.T) {
	tb, err := Build(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var prefixes []string
	for _, l := range strings.Split(generatedRanges, "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		p, _, _ := strings.Cut(l, ",")
		for _, cc := range []string{"49", "86", "7", "44", "33", "91", "55", "234", "1"} {
			if strings.HasPrefix(p, cc) {
				prefixes = append(prefixes, p)
			}
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	check := func(num *phonenumbers.PhoneNumber) bool {
		e164 := phonenumbers.Format(num, phonenumbers.E164)
		n, _ := strconv.ParseUint(e164[1:], 10, 64)
		want, err := phonenumbers.GetCarrierForNumber(num, "en")
		if err != nil {
			t.Fatal(err)
		}
		if got := tb.Operator(n); got != want {
			t.Errorf("%s: operator %q, libphonenumber %q", e164, got, want)
		}
		return want != ""
	}
	named := 0
	for i := 0; i < 600; i++ {
		p := prefixes[rng.IntN(len(prefixes))]
		s := p
		for len(s) < 11+rng.IntN(3) {
			s += strconv.Itoa(rng.IntN(10))
		}
		num, err := phonenumbers.Parse("+"+s, "")
		if err != nil {
			continue
		}
		if check(num) {
			named++
		}
	}
	for region := range phonenumbers.GetSupportedRegions() {
		if ex := phonenumbers.GetExampleNumberForType(region, phonenumbers.MOBILE); ex != nil && check(ex) {
			named++
		}
	}
	if named < 500 {
		t.Fatalf("only %d numbers with a known operator checked", named)
	}
}

func writeFile(t testing.TB, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTableFilesPrecedence(t *testing.T) {
	dir := t.TempDir()
	ranges1 := writeFile(t, dir, "ranges1.csv", `# operator ranges
49151,Telekom
4915,Fallback DE
+4919,Nineteen
491761,Custom, Inc.

8613800,MVNO A
`)
	ranges2 := writeFile(t, dir, "ranges2.csv", "4919,Nineteen B\n")
	ports := writeFile(t, dir, "ports.csv", "# msisdn,operator\n4915112345678,Vodafone\n491761234567,Ported\n")
	tb, err := Build([]string{ranges1, ranges2}, []string{ports})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		n    uint64
		want string
	}{
		{4915112345678, "Vodafone"},     // ported number beats every prefix
		{4915112345679, "Telekom"},      // range file replaces the generated 49151 (T-Mobile)
		{491511234567, "Telekom"},       // a number the port entry is a prefix of is not ported
		{491523234567, "Vodafone"},      // generated 491523 still longer than custom 4915
		{491540000000, "Fallback DE"},   // only the custom 4915 covers it
		{491701234567, "T-Mobile"},      // generated 49170, no custom prefix
		{4917612345678, "Custom, Inc."}, // custom 491761 longer than generated 49176; comma kept
		{491761234567, "Ported"},        // exact
		{491901234567, "Nineteen B"},    // the later file wins for the same prefix 4919
		{8613800138000, "MVNO A"},       // custom longer than generated 86138
		{8613900138000, "China Mobile"}, // generated
		{4930123456, ""},                // no prefix at all
	} {
		if got := tb.Operator(tt.n); got != tt.want {
			t.Errorf("Operator(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	if p, n := tb.Len(); n != 2 || p < 20000 {
		t.Errorf("Len() = %d prefixes, %d ported", p, n)
	}
}

func TestTableFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name, text string
		ported     bool
		line       int
		msg        string
	}{
		{"no comma", "# ok\n49151,A\n49152\n", false, 3, `want "digits,operator"`},
		{"letters", "49151,A\n\n49x52,B\n", false, 3, "not a number"},
		{"leading zero", "0151,A\n", false, 1, "starts with 0"},
		{"no operator", "49151, \n", false, 1, "no operator"},
		{"no digits", ",A\n", false, 1, "no digits"},
		{"too long", "4915112345678901,A\n", true, 1, "more than 15 digits"},
		{"conflicting repeat", "49151,A\n49152,B\n49151,C\n", false, 3, `differs from line 1's "A"`},
		{"conflicting ported repeat", "4915112345678,A\n4915112345678,B\n", true, 2, "differs from line 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, dir, strings.ReplaceAll(tt.name, " ", "_")+".csv", tt.text)
			var err error
			if tt.ported {
				_, err = Build(nil, []string{p})
			} else {
				_, err = Build([]string{p}, nil)
			}
			var fe *FileError
			if !errors.As(err, &fe) || fe.File != p || fe.Line != tt.line || !strings.Contains(err.Error(), tt.msg) ||
				!strings.HasPrefix(err.Error(), p+":"+strconv.Itoa(tt.line)+": ") {
				t.Fatalf("Build: %v, want %s:%d: …%s", err, p, tt.line, tt.msg)
			}
		})
	}
	// Repeating a line with the same operator is fine.
	if _, err := Build([]string{writeFile(t, dir, "repeat.csv", "49151,A\n49151,A\n")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Build([]string{filepath.Join(dir, "missing.csv")}, nil); !errors.Is(err, os.ErrNotExist) ||
		!strings.Contains(err.Error(), "missing.csv") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestReloadKeepsOldTableOnError(t *testing.T) {
	dir := t.TempDir()
	ranges := writeFile(t, dir, "ranges.csv", "4915112,First\n")
	ports := writeFile(t, dir, "ports.csv", "")
	r, err := NewReloader([]string{ranges}, []string{ports}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	const n = 4915112345678
	if got := r.Table().Operator(n); got != "First" {
		t.Fatalf("first load: %q", got)
	}
	writeFile(t, dir, "ranges.csv", "4915112,Second\n")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := r.Table().Operator(n); got != "Second" {
		t.Fatalf("after reload: %q", got)
	}
	good := r.Table()
	writeFile(t, dir, "ports.csv", "# ported\n4915112345678,Third\n49151abc,Broken\n")
	err = r.Reload()
	var fe *FileError
	if !errors.As(err, &fe) || fe.File != ports || fe.Line != 3 || !strings.Contains(err.Error(), ports+":3:") {
		t.Fatalf("bad file: Reload() = %v, want an error naming %s:3", err, ports)
	}
	if r.Table() != good || r.Table().Operator(n) != "Second" {
		t.Fatalf("bad file replaced the table: %q", r.Table().Operator(n))
	}
	if _, err := NewReloader([]string{filepath.Join(dir, "nope.csv")}, nil, nil); err == nil {
		t.Fatal("NewReloader with a missing file succeeded")
	}
}

func TestLookupAllocatesNothing(t *testing.T) {
	tb, err := Build(nil, []string{writeFile(t, t.TempDir(), "p.csv", "4915112345678,X\n")})
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { tb.Operator(4915112345679) }); n != 0 {
		t.Fatalf("Operator allocates %.0f times", n)
	}
}

func BenchmarkLookup(b *testing.B) {
	tb, err := Build(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	nums := []uint64{4915112345678, 8613800138000, 447400123456, 12125550123, 79123456789, 919812345678, 5511912345678, 2348031234567}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tb.lookup(nums[i&7])
	}
}

// BenchmarkNormalizeLookup is the per-message work: normalise a destination, attribute it.
func BenchmarkNormalizeLookup(b *testing.B) {
	z := normalizer(b, "DE", "")
	tb, err := Build(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	addrs := [][]byte{[]byte("+4915112345678"), []byte("015112345678"), []byte("0049 151 1234 5678"), []byte("+8613800138000")}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n, err := z.Normalize(addrs[i&3], TONUnknown)
		if err != nil || tb.lookup(n.E164) == 0 {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkLookupSpread looks up numbers spread over the world's carrier prefixes, so the
// table is not all in the innermost caches.
func BenchmarkLookupSpread(b *testing.B) {
	tb, err := Build(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	var nums []uint64
	rng := rand.New(rand.NewPCG(7, 8))
	lines := strings.Split(strings.TrimSpace(generatedRanges), "\n")
	for len(nums) < 1<<16 {
		l := lines[rng.IntN(len(lines))]
		if l[0] == '#' {
			continue
		}
		p, _, _ := strings.Cut(l, ",")
		n, _ := strconv.ParseUint(p, 10, 64)
		for digits(n) < 12 {
			n = n*10 + uint64(rng.IntN(10))
		}
		nums = append(nums, n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tb.lookup(nums[i&(1<<16-1)])
	}
}
