package content

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// occurrences counts the (overlapping) occurrences of p in text.
func occurrences(text, p []rune) int {
	n := 0
	for i := 0; i+len(p) <= len(text); i++ {
		if slices.Equal(text[i:i+len(p)], p) {
			n++
		}
	}
	return n
}

// TestAutomatonMatchesBruteForce compares every report with a naive search, on small alphabets
// where patterns overlap, nest and share prefixes and suffixes a lot.
func TestAutomatonMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, alphabet := range [][]rune{[]rune("ab"), []rune("abc"), []rune("免费贷款"), []rune("a😀b")} {
		for round := range 200 {
			patterns := make([][]rune, 1+rng.IntN(12))
			for i := range patterns {
				patterns[i] = make([]rune, 1+rng.IntN(5))
				for j := range patterns[i] {
					patterns[i][j] = alphabet[rng.IntN(len(alphabet))]
				}
			}
			a, ok := buildAutomaton(patterns)
			if !ok {
				t.Fatal("build failed")
			}
			text := make([]rune, rng.IntN(40))
			for i := range text {
				text[i] = alphabet[rng.IntN(len(alphabet))]
				if rng.IntN(10) == 0 {
					text[i] = 'z' // in no pattern: resets the search
				}
			}
			got := make([]int, len(patterns))
			a.scan(text, func(p int32) bool { got[p]++; return true })
			for i, p := range patterns {
				if want := occurrences(text, p); got[i] != want {
					t.Fatalf("alphabet %q round %d: pattern %q found %d times in %q, want %d",
						string(alphabet), round, string(p), got[i], string(text), want)
				}
			}
		}
	}
}

func TestAutomatonStopsWhenAsked(t *testing.T) {
	a, _ := buildAutomaton([][]rune{[]rune("ab"), []rune("b"), []rune("abab")})
	var seen []int32
	a.scan([]rune("xabab"), func(p int32) bool { seen = append(seen, p); return len(seen) < 3 })
	// At 2 "ab" (pattern 0) and "b" (1) end; at 4 "abab" (2), longest first: stopped there.
	if !slices.Equal(seen, []int32{0, 1, 2}) {
		t.Fatalf("got %v", seen)
	}
}

func TestAutomatonWideEdges(t *testing.T) {
	// A state with more than 8 edges is searched by bisection.
	var patterns [][]rune
	for c := 'a'; c <= 'z'; c++ {
		patterns = append(patterns, []rune{'#', c})
	}
	a, _ := buildAutomaton(patterns)
	for c := 'a'; c <= 'z'; c++ {
		found := -1
		a.scan([]rune{'#', '#', c}, func(p int32) bool { found = int(p); return true })
		if found != int(c-'a') {
			t.Fatalf("#%c: found pattern %d", c, found)
		}
	}
	n := 0 // only "#a" at the end
	a.scan([]rune("#{#0##a"), func(int32) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d matches, want 1", n)
	}
}
