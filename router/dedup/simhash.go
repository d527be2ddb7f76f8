package dedup

import (
	"math/bits"
	"unicode"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/router/content"
	"github.com/smppd/smppd/smpp"
)

// Fingerprints are 64-bit SimHashes (Charikar 2002) of the message text: decoded to runes,
// normalised (see normaliser), cut into overlapping 3-grams of runes, each 3-gram hashed to 64
// bits, and each fingerprint bit set where most 3-gram hashes have it set. Texts that share most
// of their 3-grams get fingerprints a small Hamming distance apart. Runes rather than words make
// it work for scripts without spaces (Chinese, Japanese, Thai) and for short texts.

// Markers the normaliser writes for the variable parts of a template. They are outside Unicode
// but fit the 21 bits a rune takes in a 3-gram.
const (
	markNumber = 0x1FFFFE // a number: digits of any script, inner separators, a glued unit ("10:30", "12.50", "3pm")
	markName   = 0x1FFFFD // a capitalised word inside a sentence: a name, a weekday, a brand
)

// Rune classes for the normaliser.
const (
	cLetter  = 1 << iota // a letter of an alphabetic script (words separated by spaces)
	cUpper               // an upper-case letter
	cDigit               // a decimal digit of any script
	cSpace               // white space
	cNewline             // a line break: ends a sentence
	cEnd                 // punctuation that ends a sentence
	cSep                 // may separate the digits of one number: . , : / -
)

// classOf classifies r the slow way.
func classOf(r rune) uint8 {
	var c uint8
	switch r {
	case '.', '!', '?', '。', '！', '？', '¡', '¿':
		c |= cEnd
	case '\n':
		c |= cNewline
	}
	switch r {
	case '.', ',', ':', '/', '-':
		c |= cSep
	}
	switch {
	case unicode.IsDigit(r):
		c |= cDigit
	case unicode.IsSpace(r):
		c |= cSpace
	case r < 0x2E80 && unicode.IsLetter(r): // from U+2E80 on ideographs and syllabaries: no words
		c |= cLetter
		if unicode.IsUpper(r) {
			c |= cUpper
		}
	}
	return c
}

// bmpClass classifies the Basic Multilingual Plane, where nearly all SMS text lies (64 KiB).
var bmpClass = func() *[0x10000]uint8 {
	var t [0x10000]uint8
	for r := range t {
		t[r] = classOf(rune(r))
	}
	return &t
}()

// class classifies r.
func class(r rune) uint8 {
	if uint32(r) < 0x10000 {
		return bmpClass[r]
	}
	return classOf(r)
}

// normaliser turns decoded runes into the stream fingerprints are taken of, so that the variants
// of one template read alike: letters lower-cased; a number, digits with inner separators and any
// letters glued to them ("1234", "10:30", "1,000.50", "3pm"), one markNumber; a word that starts
// with a capital letter inside a sentence ("Dear Anna," "on Monday") one markName; every run of
// white space one ' ', none at either end. Everything else (punctuation, CJK, emoji) is kept.
// Scripts without case (Chinese) keep their words: only their numbers are masked.
type normaliser struct {
	word    uint8 // wordNone, wordPlain, wordNumber or wordName: the token being read
	sep     rune  // a separator read inside a number, written only if the number ends there; 0 none
	space   bool  // white space read after output: ' ' is written before the next rune
	started bool  // something was written
	open    bool  // a sentence is open: a capital letter now starts a name, not a sentence
}

const (
	wordNone uint8 = iota
	wordPlain
	wordNumber
	wordName
)

// run normalises in (cs: their classes) into out (which must hold 2·len(in)) and returns how
// many runes it wrote.
func (z *normaliser) run(in []rune, cs []uint8, out []rune) int {
	n := 0
	emit := func(r rune) {
		if z.space {
			z.space = false
			out[n] = ' '
			n++
		}
		out[n] = r
		n++
		z.started = true
	}
	cs = cs[:len(in)]
	for i, r := range in {
		c := cs[i]
		switch z.word {
		case wordNumber:
			if c&(cDigit|cLetter) != 0 {
				z.sep = 0
				continue
			}
			if z.sep == 0 && c&cSep != 0 {
				z.sep = r // 10:30, 1,000.50, 05/03, 2024-03-05: one number if a digit follows
				continue
			}
			z.word = wordNone
			if z.sep != 0 {
				emit(z.sep)
				z.open = class(z.sep)&cEnd == 0
				z.sep = 0
			}
		case wordName:
			if c&(cDigit|cLetter) != 0 {
				continue
			}
			z.word = wordNone
		case wordPlain:
			if c&cLetter != 0 {
				emit(lower(r))
				continue
			}
			z.word = wordNone
		}
		switch {
		case c&cDigit != 0:
			z.word = wordNumber
			emit(markNumber)
			z.open = true
		case c&cUpper != 0 && z.open:
			z.word = wordName
			emit(markName)
		case c&cLetter != 0:
			z.word = wordPlain
			emit(lower(r))
			z.open = true
		case c&cSpace != 0:
			z.space = z.started
			if c&cNewline != 0 {
				z.open = false
			}
		default:
			emit(r)
			z.open = c&cEnd == 0
		}
	}
	return n
}

// lower lower-cases a letter.
func lower(r rune) rune {
	if r < 0x80 {
		return r | 0x20
	}
	return unicode.ToLower(r)
}

// end returns a separator held at the end of the text ("Total 5." keeps its full stop), or -1.
func (z *normaliser) end() rune {
	if z.word == wordNumber && z.sep != 0 {
		return z.sep
	}
	return -1
}

// simhasher accumulates 3-gram features into a 64-bit SimHash without allocating. Per-bit counts
// are carry-saved in SWAR lanes: four words of sixteen 4-bit lanes take 15 features, then spill
// into eight words of eight 8-bit lanes, which spill into wide counters every 255 features.
type simhasher struct {
	bytes [8]uint64 // word 2k: byte lane i counts bit 8i+k; word 2k+1: bit 8i+4+k
	cnt   [64]int32
	inB   int   // features in bytes since the last fold
	n     int32 // features in all
	w1    rune  // the last two runes
	w2    rune
	runes int // runes seen

	trace *[]rune // tests: the normalised runes
}

const (
	nib  = 0x1111111111111111
	lowN = 0x0F0F0F0F0F0F0F0F
)

// add adds the 3-grams ending in each of rs.
func (h *simhasher) add(rs []rune) {
	if h.trace != nil {
		*h.trace = append(*h.trace, rs...)
	}
	if h.runes < 2 { // the first 3-gram ends in the third rune
		k := min(2-h.runes, len(rs))
		for _, r := range rs[:k] {
			h.w1, h.w2 = h.w2, r
		}
		h.runes += k
		rs = rs[k:]
	}
	h.runes += len(rs)
	w1, w2 := h.w1, h.w2
	for len(rs) > 0 {
		m := min(len(rs), 15)     // 4-bit lanes hold 15
		var a0, a1, a2, a3 uint64 // nibble lane j of ak counts bit 4j+k
		for _, r := range rs[:m] {
			x := uint64(w1)<<42 | uint64(w2)<<21 | uint64(r)
			w1, w2 = w2, r
			// murmur3 fmix64: every input bit affects every output bit.
			x ^= x >> 33
			x *= 0xff51afd7ed558ccd
			x ^= x >> 33
			x *= 0xc4ceb9fe1a85ec53
			x ^= x >> 33
			a0 += x & nib
			a1 += x >> 1 & nib
			a2 += x >> 2 & nib
			a3 += x >> 3 & nib
		}
		rs = rs[m:]
		h.n += int32(m)
		if h.inB+m > 255 {
			h.fold()
		}
		h.inB += m
		h.bytes[0] += a0 & lowN
		h.bytes[1] += a0 >> 4 & lowN
		h.bytes[2] += a1 & lowN
		h.bytes[3] += a1 >> 4 & lowN
		h.bytes[4] += a2 & lowN
		h.bytes[5] += a2 >> 4 & lowN
		h.bytes[6] += a3 & lowN
		h.bytes[7] += a3 >> 4 & lowN
	}
	h.w1, h.w2 = w1, w2
}

func (h *simhasher) fold() {
	for w, v := range h.bytes {
		bit := w/2 + 4*(w%2) // bit of byte lane 0
		for i := 0; i < 8; i++ {
			h.cnt[bit+8*i] += int32(v >> (8 * i) & 0xFF)
		}
		h.bytes[w] = 0
	}
	h.inB = 0
}

// sum returns the fingerprint; ok is false when there was no text at all.
func (h *simhasher) sum() (fp uint64, ok bool) {
	switch h.runes {
	case 0:
		return 0, false
	case 1, 2: // too short for a 3-gram: the whole text is the one feature
		h.runes = 2
		h.add([]rune{0})
	}
	h.fold()
	for i, c := range h.cnt {
		if 2*c > h.n {
			fp |= 1 << i
		}
	}
	return fp, true
}

// chunk is how many runes are classified, normalised and hashed at a time, in stack buffers.
const chunk = 64

// simhashRunes fingerprints decoded text; trace, if not nil, receives the normalised stream.
func simhashRunes(rs []rune, trace *[]rune) (uint64, bool) {
	var (
		h   = simhasher{trace: trace}
		z   normaliser
		cs  [chunk]uint8
		out [2 * chunk]rune
	)
	for len(rs) > 0 {
		in := rs[:min(len(rs), chunk)]
		rs = rs[len(in):]
		for i, r := range in {
			cs[i] = class(r)
		}
		h.add(out[:z.run(in, cs[:len(in)], out[:])])
	}
	if r := z.end(); r >= 0 {
		out[0] = r
		h.add(out[:1])
	}
	return h.sum()
}

// Fingerprint returns the SimHash of s's text: the payload (short_message or message_payload)
// without its user data header, decoded per data_coding by the content package. ok is false for
// binary or undecoded alphabets and for empty texts: such messages are not near-duplicate checked.
func Fingerprint(s *smpp.Submit) (fp uint64, ok bool) {
	var buf [1024]rune // on the stack: an SMS, or a long message_payload, fits
	rs, c := content.AppendText(buf[:0], s, false)
	if !c.Text() {
		return 0, false
	}
	return simhashRunes(rs, nil)
}

// fingerprintOf is Fingerprint over the message's text as the pipeline decoded it once.
func fingerprintOf(m *router.Message) (uint64, bool) {
	rs, c := content.TextOf(m, false)
	if !c.Text() {
		return 0, false
	}
	return simhashRunes(rs, nil)
}

// Distance is the Hamming distance between two fingerprints.
func Distance(a, b uint64) int { return bits.OnesCount64(a ^ b) }
