package dedup

import (
	"math/bits"
	"unicode"

	"github.com/smppd/smppd/smpp"
)

// Fingerprints are 64-bit SimHashes (Charikar 2002) of the message text: decoded to runes,
// normalised (see normaliser), cut into overlapping 3-grams of runes, each 3-gram hashed to 64
// bits, and each fingerprint bit set where most 3-gram hashes have it set. Texts that share most
// of their 3-grams get fingerprints a small Hamming distance apart. Runes rather than words make
// it work for scripts without spaces (Chinese, Japanese, Thai) and for short texts.

// digitRun stands for a run of digits (any script's): "code 1234" and "code 98765" read alike.
// It is outside Unicode but fits the 21 bits a rune takes in a 3-gram.
const digitRun = 0x1FFFFE

// normaliser turns decoded runes into the stream fingerprints are taken of: letters lower-cased,
// every run of digits one digitRun, every run of white space one ' ', white space at either end
// dropped. Everything else (punctuation, CJK, emoji) is kept as is.
type normaliser struct {
	space bool // a space is pending: written before the next non-space rune
	digit bool // the last rune written was digitRun
	any   bool // a rune was written
}

// push returns the normalised rune for r, or -1 if r adds nothing (collapsed or pending).
// A pending space is returned as ' ' and r is then pushed again by the caller via pending.
func (n *normaliser) push(r rune) (out rune, pending rune) {
	switch {
	case r < 0x80:
		switch {
		case 'A' <= r && r <= 'Z':
			r += 'a' - 'A'
		case '0' <= r && r <= '9':
			r = digitRun
		case r == ' ' || r == '\n' || r == '\r' || r == '\t' || r == '\f' || r == '\v':
			n.space = n.any
			return -1, -1
		}
	case unicode.IsDigit(r):
		r = digitRun
	case unicode.IsSpace(r):
		n.space = n.any
		return -1, -1
	default:
		r = unicode.ToLower(r)
	}
	if r == digitRun {
		if n.digit && !n.space {
			return -1, -1
		}
		n.digit = true
	} else {
		n.digit = false
	}
	n.any = true
	if n.space {
		n.space = false
		return ' ', r
	}
	return r, -1
}

// simhasher accumulates 3-gram features into a 64-bit SimHash without allocating. Bit counts
// are kept in eight 64-bit words of eight 8-bit lanes (lane j of word k counts bit 8j+k), folded
// into wide counters every 255 features.
type simhasher struct {
	lanes   [8]uint64
	cnt     [64]int32
	inLanes int   // features in lanes since the last fold
	n       int32 // features in all
	w       [3]rune
	runes   int // runes seen
}

const laneMask = 0x0101010101010101

func (h *simhasher) add(r rune) {
	h.w[0], h.w[1], h.w[2] = h.w[1], h.w[2], r
	h.runes++
	if h.runes >= 3 {
		h.feature(uint64(h.w[0])<<42 | uint64(h.w[1])<<21 | uint64(h.w[2]))
	}
}

func (h *simhasher) feature(x uint64) {
	// murmur3 fmix64: every input bit affects every output bit.
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	h.lanes[0] += x & laneMask
	h.lanes[1] += x >> 1 & laneMask
	h.lanes[2] += x >> 2 & laneMask
	h.lanes[3] += x >> 3 & laneMask
	h.lanes[4] += x >> 4 & laneMask
	h.lanes[5] += x >> 5 & laneMask
	h.lanes[6] += x >> 6 & laneMask
	h.lanes[7] += x >> 7 & laneMask
	h.n++
	if h.inLanes++; h.inLanes == 255 {
		h.fold()
	}
}

func (h *simhasher) fold() {
	for k := range h.lanes {
		v := h.lanes[k]
		for j := 0; j < 8; j++ {
			h.cnt[8*j+k] += int32(v >> (8 * j) & 0xFF)
		}
		h.lanes[k] = 0
	}
	h.inLanes = 0
}

// sum returns the fingerprint; ok is false when there was no text at all.
func (h *simhasher) sum() (fp uint64, ok bool) {
	switch {
	case h.runes == 0:
		return 0, false
	case h.runes < 3: // too short for a 3-gram: the whole text is the one feature
		h.feature(uint64(h.w[0])<<42 | uint64(h.w[1])<<21 | uint64(h.w[2]))
	}
	h.fold()
	for i, c := range h.cnt {
		if 2*c > h.n {
			fp |= 1 << i
		}
	}
	return fp, true
}

// simhashText fingerprints the text in p (no user data header) read as coding c.
func simhashText(p []byte, c coding) (uint64, bool) {
	switch c {
	case codingGSM7, codingIA5, codingLatin1, codingUCS2:
	default:
		return 0, false
	}
	var (
		h  simhasher
		nz normaliser
	)
	t := textReader{p: p, c: c}
	for r := t.next(); r >= 0; r = t.next() {
		out, pending := nz.push(r)
		if out >= 0 {
			h.add(out)
		}
		if pending >= 0 {
			h.add(pending)
		}
	}
	return h.sum()
}

// Fingerprint returns the SimHash of s's text: the payload (short_message or message_payload)
// without its user data header, decoded per data_coding. ok is false for binary or undecoded
// alphabets and for empty texts: such messages are not near-duplicate checked.
func Fingerprint(s *smpp.Submit) (fp uint64, ok bool) {
	return simhashText(userData(s), codingOf(s.DataCoding))
}

// Distance is the Hamming distance between two fingerprints.
func Distance(a, b uint64) int { return bits.OnesCount64(a ^ b) }

// userData returns s's payload without the user data header (when UDHI is set and the header is
// well formed).
func userData(s *smpp.Submit) []byte {
	p := s.Payload()
	if s.ESMClass&0x40 != 0 && len(p) > 0 && int(p[0])+1 <= len(p) {
		return p[int(p[0])+1:]
	}
	return p
}
