package number

import "slices"

// MaxDigits is the longest E.164 number: 15 digits, country code included.
const MaxDigits = 15

// entry is a prefix (country code first, never a leading zero, so its value fixes its digits)
// and what it maps to.
type entry struct {
	prefix uint64
	digits uint8
	val    uint16
}

// padded returns n (d digits) left-aligned in the 15-digit space: every number starting with a
// prefix lands in [padded(prefix), padded(prefix+1)), whatever its length.
func padded(n uint64, d int) uint64 { return n * pow10[MaxDigits-d] }

const (
	buckets     = 10000                          // the first 4 digits of a number pick a bucket
	bucketWidth = uint64(1e15) / uint64(buckets) // padded numbers per bucket
)

// lpm is a longest-prefix-match table over E.164 numbers. The prefixes, nested or disjoint
// intervals of the padded space, are flattened into disjoint segments, each naming the longest
// prefix covering it; a lookup is a binary search among the segments of one bucket. A number
// shorter than that prefix (its padding zeros looked like the prefix's digits) takes the
// closest enclosing prefix no longer than itself. Immutable once built; lookups allocate
// nothing.
type lpm struct {
	segs []segment // ascending; segs[0].start == 0
	// bucket[b] is the segment holding the start of bucket b; bucket[buckets] the last segment.
	bucket   []uint32
	prefixes []prefixNode // [0] is the empty prefix
}

// segment is a run of the padded space with the same longest prefix, whose value and length it
// carries so that the common lookup reads one cache line.
type segment struct {
	start  uint64
	node   uint32 // the prefix, an index into prefixes; 0: none
	val    uint16 // prefixes[node].val
	digits uint8  // prefixes[node].digits
}

type prefixNode struct {
	parent uint32 // the enclosing prefix
	digits uint8
	val    uint16
}

// buildLPM builds the table; of entries with the same prefix the last wins.
func buildLPM(entries []entry) lpm {
	es := slices.Clone(entries)
	// Stable: among equal prefixes the original order survives, so the last one can win.
	slices.SortStableFunc(es, func(a, b entry) int {
		pa, pb := padded(a.prefix, int(a.digits)), padded(b.prefix, int(b.digits))
		switch {
		case pa != pb:
			if pa < pb {
				return -1
			}
			return 1
		default:
			return int(a.digits) - int(b.digits) // the outer (shorter) prefix first
		}
	})
	dedup := es[:0]
	for _, e := range es {
		if n := len(dedup); n > 0 && dedup[n-1].prefix == e.prefix && dedup[n-1].digits == e.digits {
			dedup[n-1] = e
			continue
		}
		dedup = append(dedup, e)
	}
	es = dedup

	t := lpm{segs: []segment{{}}, prefixes: make([]prefixNode, 1, len(es)+1)}
	emit := func(at uint64, node uint32) {
		p := t.prefixes[node]
		seg := segment{start: at, node: node, val: p.val, digits: p.digits}
		n := len(t.segs) - 1
		switch {
		case t.segs[n].start == at:
			t.segs[n] = seg
			if n > 0 && t.segs[n-1].node == node { // merged back into its predecessor
				t.segs = t.segs[:n]
			}
		case t.segs[n].node != node:
			t.segs = append(t.segs, seg)
		}
	}
	type open struct {
		end  uint64
		node uint32
	}
	var stack []open
	closeUntil := func(at uint64) {
		for len(stack) > 0 && stack[len(stack)-1].end <= at {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			emit(top.end, t.prefixes[top.node].parent)
		}
	}
	for _, e := range es {
		start := padded(e.prefix, int(e.digits))
		closeUntil(start)
		parent := uint32(0)
		if len(stack) > 0 {
			parent = stack[len(stack)-1].node
		}
		node := uint32(len(t.prefixes))
		t.prefixes = append(t.prefixes, prefixNode{parent: parent, digits: e.digits, val: e.val})
		emit(start, node)
		stack = append(stack, open{start + pow10[MaxDigits-int(e.digits)], node})
	}
	closeUntil(^uint64(0))

	t.bucket = make([]uint32, buckets+1)
	seg := 0
	for b := 0; b < buckets; b++ {
		at := uint64(b) * bucketWidth
		for seg+1 < len(t.segs) && t.segs[seg+1].start <= at {
			seg++
		}
		t.bucket[b] = uint32(seg)
	}
	t.bucket[buckets] = uint32(len(t.segs) - 1)
	return t
}

// lookup returns the value of the longest prefix of n (d digits, 1 ≤ d ≤ 15), 0 if none.
func (t *lpm) lookup(n uint64, d int) uint16 {
	if len(t.segs) <= 1 {
		return 0
	}
	x := padded(n, d)
	b := x / bucketWidth
	lo, hi := int(t.bucket[b]), int(t.bucket[b+1])
	// The last segment starting at or before x is in [lo, hi].
	for n := hi - lo + 1; n > 1; {
		half := n / 2
		if t.segs[lo+half].start <= x {
			lo += half
		}
		n -= half
	}
	s := &t.segs[lo]
	if int(s.digits) <= d {
		return s.val
	}
	p := &t.prefixes[s.node]
	for int(p.digits) > d {
		p = &t.prefixes[p.parent]
	}
	return p.val
}
