package content

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// A table entry holds the mapped rune in its low 21 bits and the class of the mapped rune above.
const (
	runeMask     = 0x1FFFFF
	classShift   = 24
	classLetter  = 0 // letters, digits, marks, everything else: kept
	classSpace   = 1 // whitespace: collapsed, or removed in the compact form
	classSep     = 2 // punctuation and symbols: removed in the compact form
	classInvis   = 3 // format and control characters, fillers: removed when stripping invisibles
	tableEntries = 0x20000
)

// normalizer maps each character to its matching form in one table look-up (see doc.go, Normalisation).
// It is immutable once built; the Rules that were compiled with it own it.
type normalizer struct {
	// tab covers the BMP and plane 1 (emoji, mathematical alphanumerics, enclosed letters);
	// characters above are classified on the fly.
	tab            []uint32
	t2s            map[rune]rune
	stripInvisible bool
	stripSep       bool
}

// builtinT2S is the table of t2sPairs, built once.
var builtinT2S = sync.OnceValue(func() map[rune]rune {
	m := make(map[rune]rune, len(t2sPairs)/6)
	for s := t2sPairs; s != ""; {
		from, n := utf8.DecodeRuneInString(s)
		to, k := utf8.DecodeRuneInString(s[n:])
		m[from] = to
		s = s[n+k:]
	}
	return m
})

// builtinTable is the table with only the built-in variants, shared by every normalizer
// without a variants file.
var builtinTable = sync.OnceValue(func() []uint32 { return buildTable(builtinT2S()) })

func newNormalizer(variants map[rune]rune, stripInvisible, stripSep bool) *normalizer {
	n := &normalizer{stripInvisible: stripInvisible, stripSep: stripSep}
	if len(variants) == 0 {
		n.t2s, n.tab = builtinT2S(), builtinTable()
		return n
	}
	n.t2s = make(map[rune]rune, len(builtinT2S())+len(variants))
	for k, v := range builtinT2S() {
		n.t2s[k] = v
	}
	for k, v := range variants {
		n.t2s[k] = v
	}
	n.tab = buildTable(n.t2s)
	return n
}

func buildTable(t2s map[rune]rune) []uint32 {
	tab := make([]uint32, tableEntries)
	for r := range rune(tableEntries) {
		tab[r] = entry(r, t2s)
	}
	return tab
}

// entry computes a character's table entry: its compatibility (NFKC) form when that is one
// character, then the traditional -> simplified variant, then lower case; then the class.
func entry(r rune, t2s map[rune]rune) uint32 {
	m := r
	if r >= 0xD800 && r < 0xE000 {
		return uint32(utf8.RuneError) | classSep<<classShift // lone surrogate code points
	}
	var buf [utf8.UTFMax]byte
	b := buf[:utf8.EncodeRune(buf[:], r)]
	if !norm.NFKC.IsNormal(b) {
		if k := norm.NFKC.Bytes(b); utf8.RuneCount(k) == 1 {
			m, _ = utf8.DecodeRune(k)
		}
	}
	if v, ok := t2s[m]; ok {
		m = v
	}
	m = fold(m)
	return uint32(m) | uint32(classify(r, m))<<classShift
}

// fold is simple lower-casing, with the Greek final sigma folded too.
func fold(r rune) rune {
	if r == 'ς' {
		return 'σ'
	}
	return unicode.ToLower(r)
}

// classify returns the class of original character r mapped to m.
func classify(r, m rune) uint32 {
	switch {
	case unicode.IsSpace(m):
		return classSpace
	case invisible(r) || invisible(m):
		return classInvis
	case unicode.IsPunct(m) || unicode.IsSymbol(m):
		return classSep
	}
	return classLetter
}

// invisible reports characters that show nothing: format characters (Cf: zero-width space,
// joiners, word joiner, soft hyphen, byte order mark, bidirectional marks, tag characters),
// controls other than whitespace, variation selectors, the combining grapheme joiner and the
// Hangul fillers.
func invisible(r rune) bool {
	switch {
	case r == 0x034F, r == 0x115F, r == 0x1160, r == 0x3164, r == 0xFFA0:
		return true
	case r >= 0xFE00 && r <= 0xFE0F, r >= 0xE0100 && r <= 0xE01EF:
		return true
	}
	return unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Cc, r) && !unicode.IsSpace(r)
}

// lookup returns r's table entry.
func (n *normalizer) lookup(r rune) uint32 {
	if uint32(r) < tableEntries {
		return n.tab[r]
	}
	return n.lookupWide(r)
}

// lookupWide computes the entry of a character above plane 1, or of an invalid rune.
func (n *normalizer) lookupWide(r rune) uint32 {
	if r < 0 || r > unicode.MaxRune {
		return n.tab[utf8.RuneError]
	}
	m := fold(r)
	if v, ok := n.t2s[m]; ok {
		m = v
	}
	return uint32(m) | classify(r, m)<<classShift
}

// appendNorm appends the matching form of src to dst. Invisible characters are dropped (when
// configured), runs of whitespace become one space and spaces at either end go. When compact,
// whitespace and separators (punctuation and symbols) are dropped as well.
func (n *normalizer) appendNorm(dst, src []rune, compact bool) []rune {
	dst = slices.Grow(dst, len(src))
	j := len(dst)
	out := dst[:j+len(src)] // the form is never longer than src
	space := true           // drops leading whitespace
	for _, r := range src {
		e := n.lookup(r)
		switch e >> classShift {
		case classLetter:
		case classSpace:
			if !compact && !space {
				out[j], j, space = ' ', j+1, true
			}
			continue
		case classSep:
			if compact {
				continue
			}
		case classInvis:
			if n.stripInvisible {
				continue
			}
		}
		out[j], j, space = rune(e&runeMask), j+1, false
	}
	if space && !compact && j > len(dst) {
		j-- // a trailing space
	}
	return out[:j]
}

// matchForm appends the form keyword rules match: compact when separators are stripped.
func (n *normalizer) matchForm(dst, src []rune) []rune { return n.appendNorm(dst, src, n.stripSep) }

// parseVariants reads a character variants file: one mapping a line, "FROM<TAB>TO", where FROM
// is one character and TO is one or more space-separated characters of which the first is used
// (OpenCC's TSCharacters.txt has this format). Blank lines and lines starting with # are skipped.
func parseVariants(name string, data []byte) (map[rune]rune, error) {
	m := map[rune]rune{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		l := bytes.TrimRight(sc.Bytes(), "\r")
		if line == 1 {
			l = bytes.TrimPrefix(l, []byte("\uFEFF"))
		}
		if len(bytes.TrimSpace(l)) == 0 || l[0] == '#' {
			continue
		}
		from, to, ok := bytes.Cut(l, []byte("\t"))
		to = bytes.TrimSpace(to)
		if i := bytes.IndexByte(to, ' '); i >= 0 {
			to = to[:i]
		}
		if !ok || utf8.RuneCount(from) != 1 || utf8.RuneCount(to) != 1 {
			return nil, &ParseError{File: name, Line: line, Reason: "want one character, a tab, and the character it maps to"}
		}
		f, _ := utf8.DecodeRune(from)
		t, _ := utf8.DecodeRune(to)
		if f == utf8.RuneError || t == utf8.RuneError {
			return nil, &ParseError{File: name, Line: line, Reason: "not UTF-8"}
		}
		m[f] = t
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}
