package content

import (
	"maps"
	"slices"
)

// automaton is an Aho-Corasick automaton over runes: one pass over a text finds every pattern
// in it, however many patterns there are. Immutable once built; safe for concurrent use.
//
// Characters map to classes first (0: in no pattern, which sends the search back to the root).
// The root's transitions are a dense table; the other states keep their edges sorted by class,
// searched linearly when few, by bisection otherwise, and fall back along failure links.
type automaton struct {
	class []uint16        // rune (BMP) -> class
	wide  map[rune]uint16 // class of runes above the BMP
	root  []int32         // class -> state after the root
	start []uint32        // edges of state s: label/next[start[s]:start[s+1]]
	label []uint16
	next  []int32
	fail  []int32
	// report[s] is the first state on s's failure chain, s included, where a pattern ends (-1 none);
	// from a state where a pattern ends, dict leads to the next one.
	report, dict []int32
	// patterns ending at state s: pats[pstart[s]:pstart[s+1]]
	pstart []uint32
	pats   []int32
}

// maxClasses bounds the distinct characters in patterns (class ids are uint16, 0 reserved).
const maxClasses = 1<<16 - 1

type buildNode struct {
	edges map[uint16]int32
	pats  []int32
}

// buildAutomaton compiles patterns (non-empty, in matching form); a match reports the index of
// the pattern. It fails only when the patterns hold more than 65,535 distinct characters.
func buildAutomaton(patterns [][]rune) (*automaton, bool) {
	a := &automaton{class: make([]uint16, 0x10000), wide: map[rune]uint16{}}
	classes := 0
	classOf := func(r rune, add bool) uint16 {
		var c uint16
		if r < 0x10000 {
			c = a.class[r]
		} else {
			c = a.wide[r]
		}
		if c != 0 || !add {
			return c
		}
		classes++
		c = uint16(classes)
		if r < 0x10000 {
			a.class[r] = c
		} else {
			a.wide[r] = c
		}
		return c
	}
	nodes := []buildNode{{edges: map[uint16]int32{}}}
	for i, p := range patterns {
		s := int32(0)
		for _, r := range p {
			if classes == maxClasses && classOf(r, false) == 0 {
				return nil, false
			}
			c := classOf(r, true)
			n, ok := nodes[s].edges[c]
			if !ok {
				n = int32(len(nodes))
				nodes = append(nodes, buildNode{edges: map[uint16]int32{}})
				nodes[s].edges[c] = n
			}
			s = n
		}
		nodes[s].pats = append(nodes[s].pats, int32(i))
	}
	if len(a.wide) == 0 {
		a.wide = nil
	}

	n := len(nodes)
	a.fail = make([]int32, n)
	a.root = make([]int32, classes+1)
	for c, t := range nodes[0].edges {
		a.root[c] = t
	}
	// Failure links, breadth first: fail(t) for edge s -c-> t is where fail(s) goes on c.
	queue := make([]int32, 0, n)
	for _, t := range nodes[0].edges {
		queue = append(queue, t)
	}
	slices.Sort(queue) // deterministic order
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, c := range slices.Sorted(maps.Keys(nodes[s].edges)) {
			t := nodes[s].edges[c]
			f := a.fail[s]
			for f != 0 {
				if g, ok := nodes[f].edges[c]; ok {
					a.fail[t] = g
					break
				}
				f = a.fail[f]
			}
			if f == 0 {
				a.fail[t] = a.root[c] // t is two or more deep: never its own failure
			}
			queue = append(queue, t)
		}
	}
	// Output links, in BFS order so that a state's failure target is done before it.
	a.report, a.dict = make([]int32, n), make([]int32, n)
	order := []int32{0}
	for i := 0; i < len(order); i++ {
		for _, c := range slices.Sorted(maps.Keys(nodes[order[i]].edges)) {
			order = append(order, nodes[order[i]].edges[c])
		}
	}
	a.report[0], a.dict[0] = -1, -1
	for _, s := range order[1:] {
		f := a.fail[s]
		a.dict[s] = a.report[f]
		if len(nodes[s].pats) > 0 {
			a.report[s] = s
		} else {
			a.report[s] = a.report[f]
		}
	}
	// Flatten edges and pattern lists.
	a.start = make([]uint32, n+1)
	a.pstart = make([]uint32, n+1)
	for s := range nodes {
		a.start[s+1] = a.start[s]
		a.pstart[s+1] = a.pstart[s] + uint32(len(nodes[s].pats))
		a.pats = append(a.pats, nodes[s].pats...)
		if s == 0 {
			continue // the root's edges are in a.root
		}
		for _, c := range slices.Sorted(maps.Keys(nodes[s].edges)) {
			a.label = append(a.label, c)
			a.next = append(a.next, nodes[s].edges[c])
			a.start[s+1]++
		}
	}
	return a, true
}

func (a *automaton) classOf(r rune) uint16 {
	if uint32(r) < 0x10000 {
		return a.class[r]
	}
	return a.wide[r] // nil map: 0
}

// step returns the state after s on class c (not 0).
func (a *automaton) step(s int32, c uint16) int32 {
	for s != 0 {
		lo, hi := a.start[s], a.start[s+1]
		if hi-lo <= 8 {
			for i := lo; i < hi; i++ {
				if l := a.label[i]; l >= c {
					if l == c {
						return a.next[i]
					}
					break
				}
			}
		} else {
			for lo < hi {
				m := lo + (hi-lo)/2
				if a.label[m] < c {
					lo = m + 1
				} else {
					hi = m
				}
			}
			if lo < a.start[s+1] && a.label[lo] == c {
				return a.next[lo]
			}
		}
		s = a.fail[s]
	}
	return a.root[c]
}

// scan reports every occurrence of a pattern in text to match, in the order their ends appear,
// until match returns false. It allocates nothing.
func (a *automaton) scan(text []rune, match func(pattern int32) bool) {
	s := int32(0)
	for _, r := range text {
		c := a.classOf(r)
		if c == 0 {
			s = 0
			continue
		}
		s = a.step(s, c)
		for o := a.report[s]; o >= 0; o = a.dict[o] {
			for _, p := range a.pats[a.pstart[o]:a.pstart[o+1]] {
				if !match(p) {
					return
				}
			}
		}
	}
}
