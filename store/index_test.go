package store

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/FastFilter/xorfilter"
)

func TestKindMaskHas(t *testing.T) {
	m := KindMask(1<<KindBlock | 1<<KindOptOut)
	for _, c := range []struct {
		k    Kind
		want bool
	}{{KindBlock, true}, {KindComplaint, false}, {KindOptOut, true}, {0, false}, {8, false}, {200, false}} {
		if got := m.Has(c.k); got != c.want {
			t.Errorf("%08b.Has(%v) = %v, want %v", m, c.k, got, c.want)
		}
	}
	if KindMask(0).Has(KindBlock) {
		t.Error("empty mask has block")
	}
}

// The FSM hands its changes to an Index.
var _ Indexer = (*Index)(nil)

// newTestIndex returns an index that freezes d0 for a merge once it holds mergeMin numbers,
// whose d0 fills up (and is frozen) after min(mergeMin, 1024) numbers, and whose d0's bloom
// filter starts with 2 words (so it is replaced every few numbers).
func newTestIndex(t testing.TB, mergeMin int) *Index {
	x := NewIndex()
	x.mergeMin, x.deltaMax, x.bloomMin = mergeMin, min(mergeMin, 1<<10), 2
	x.snap.Store(newView(newDelta(x.d0Room(emptyBase, 0), x.bloomMin), nil, emptyBase))
	t.Cleanup(x.Close)
	return x
}

// freezeQuiet freezes d0 as the writer does, without waking the merger: the frozen deltas stay
// until a flush.
func freezeQuiet(x *Index) {
	x.mu.Lock()
	defer x.mu.Unlock()
	cur := x.snap.Load()
	x.snap.Store(newView(newDelta(4, 2), append([]*delta{cur.d0}, cur.frozen...), cur.base))
}

func ixEntry(n uint64, k Kind, account, sender string) Entry {
	return Entry{Key: Key{Number: n, Kind: k, Scope: Scope{Account: account, Sender: sender}}, Reason: "test"}
}

func ixMask(ks ...Kind) KindMask {
	var m KindMask
	for _, k := range ks {
		m |= 1 << k
	}
	return m
}

// ixLayouts builds an index holding entries in each place a number's state can live: the active
// delta, frozen deltas, the base after a merge, the base built by Reset (with and without its
// filter).
func ixLayouts(t *testing.T, entries []Entry) map[string]*Index {
	t.Helper()
	delta := newTestIndex(t, 1<<30)
	delta.Update(slices.Clone(entries), nil)

	frozen := newTestIndex(t, 1<<30)
	frozen.Update(slices.Clone(entries), nil)
	freezeQuiet(frozen)

	// Half the entries in an older frozen delta, half in a newer one.
	frozen2 := newTestIndex(t, 1<<30)
	frozen2.Update(slices.Clone(entries[:len(entries)/2]), nil)
	freezeQuiet(frozen2)
	frozen2.Update(slices.Clone(entries[len(entries)/2:]), nil)
	freezeQuiet(frozen2)
	if n := len(frozen2.snap.Load().frozen); n != 2 {
		t.Fatalf("%d frozen deltas, want 2", n)
	}

	merged := newTestIndex(t, 1<<30)
	merged.Update(slices.Clone(entries), nil)
	merged.flush()
	if s := merged.snap.Load(); len(s.frozen) != 0 || s.d0.count.Load() != 0 || s.base.n == 0 {
		t.Fatalf("flush left d0 %d, %d frozen, base %d", s.d0.count.Load(), len(s.frozen), s.base.n)
	}

	reset := newTestIndex(t, 1<<30)
	reset.Reset(slices.Values(entries))

	// A base whose filter failed to build looks every number up.
	noFilter := newTestIndex(t, 1<<30)
	noFilter.Reset(slices.Values(entries))
	s := noFilter.snap.Load()
	b := *s.base
	b.noFilter, b.filters, b.shift = true, []fuse{emptyFuse}, 64
	noFilter.snap.Store(newView(s.d0, nil, &b))
	return map[string]*Index{"delta": delta, "frozen": frozen, "frozen2": frozen2, "merged": merged, "reset": reset, "nofilter": noFilter}
}

func TestIndexScopes(t *testing.T) {
	const (
		global  = 33611111111
		acct    = 33622222222
		sender  = 33633333333
		both    = 33644444444
		mixed   = 33655555555
		absent  = 33666666666
		huge    = 1<<63 + 5 // beyond packLimit: side map only
		zero    = 0
		scopedZ = 1
	)
	entries := []Entry{
		ixEntry(global, KindBlock, "", ""),
		ixEntry(acct, KindComplaint, "acme", ""),
		ixEntry(sender, KindOptOut, "", "SHOP"),
		ixEntry(both, KindOptOut, "acme", "SHOP"),
		ixEntry(mixed, KindBlock, "", ""),
		ixEntry(mixed, KindOptOut, "acme", "SHOP"),
		ixEntry(mixed, KindOptOut, "", "NEWS"),
		ixEntry(mixed, KindComplaint, "beta", ""),
		ixEntry(huge, KindBlock, "", ""),
		ixEntry(huge, KindOptOut, "", "SHOP"),
		ixEntry(zero, KindComplaint, "", ""),
		ixEntry(scopedZ, KindOptOut, "acme", ""),
	}
	cases := []struct {
		number          uint64
		account, sender string
		want            KindMask
	}{
		{global, "", "", ixMask(KindBlock)},
		{global, "acme", "SHOP", ixMask(KindBlock)},
		{acct, "acme", "", ixMask(KindComplaint)},
		{acct, "acme", "SHOP", ixMask(KindComplaint)},
		{acct, "beta", "SHOP", 0},
		{acct, "", "", 0},
		{sender, "acme", "SHOP", ixMask(KindOptOut)},
		{sender, "beta", "SHOP", ixMask(KindOptOut)},
		{sender, "acme", "NEWS", 0},
		{both, "acme", "SHOP", ixMask(KindOptOut)},
		{both, "acme", "NEWS", 0},
		{both, "beta", "SHOP", 0},
		{mixed, "acme", "SHOP", ixMask(KindBlock, KindOptOut)},
		{mixed, "acme", "NEWS", ixMask(KindBlock, KindOptOut)},
		{mixed, "beta", "NEWS", ixMask(KindBlock, KindOptOut, KindComplaint)},
		{mixed, "beta", "SHOP", ixMask(KindBlock, KindComplaint)},
		{mixed, "gamma", "OTHER", ixMask(KindBlock)},
		{absent, "acme", "SHOP", 0},
		{absent + 1, "", "", 0},
		{huge, "x", "y", ixMask(KindBlock)},
		{huge, "x", "SHOP", ixMask(KindBlock, KindOptOut)},
		{huge - 1, "x", "SHOP", 0},
		{zero, "", "", ixMask(KindComplaint)},
		{scopedZ, "acme", "", ixMask(KindOptOut)},
		{scopedZ, "beta", "", 0},
	}
	for name, x := range ixLayouts(t, entries) {
		t.Run(name, func(t *testing.T) {
			for _, c := range cases {
				if got := x.Check(c.number, c.account, c.sender); got != c.want {
					t.Errorf("Check(%d, %q, %q) = %08b, want %08b", c.number, c.account, c.sender, got, c.want)
				}
			}
			if got := x.Len(); got != len(entries) {
				t.Errorf("Len = %d, want %d", got, len(entries))
			}
			if x.Bytes() <= 0 {
				t.Errorf("Bytes = %d", x.Bytes())
			}
		})
	}
}

func TestIndexUpsertDelete(t *testing.T) {
	const n = 4471234567
	type step struct {
		upserts []Entry
		deletes []Key
		account string // checked with sender "S"
		want    KindMask
		len     int
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"upsert replaces same key", []step{
			{upserts: []Entry{ixEntry(n, KindBlock, "", "")}, want: ixMask(KindBlock), len: 1},
			{upserts: []Entry{{Key: Key{Number: n, Kind: KindBlock}, Reason: "other", Created: 7}}, want: ixMask(KindBlock), len: 1},
		}},
		{"kinds accumulate", []step{
			{upserts: []Entry{ixEntry(n, KindBlock, "", ""), ixEntry(n, KindComplaint, "", "")}, want: ixMask(KindBlock, KindComplaint), len: 2},
			{upserts: []Entry{ixEntry(n, KindOptOut, "", "S")}, want: ixMask(KindBlock, KindComplaint, KindOptOut), len: 3},
		}},
		{"same kind in two scopes", []step{
			{upserts: []Entry{ixEntry(n, KindOptOut, "", "S"), ixEntry(n, KindOptOut, "a", "S")}, account: "a", want: ixMask(KindOptOut), len: 2},
			{deletes: []Key{{Number: n, Kind: KindOptOut, Scope: Scope{Sender: "S"}}}, account: "a", want: ixMask(KindOptOut), len: 1},
			{deletes: []Key{{Number: n, Kind: KindOptOut, Scope: Scope{Sender: "S"}}}, account: "b", want: 0, len: 1},
			{deletes: []Key{{Number: n, Kind: KindOptOut, Scope: Scope{Account: "a", Sender: "S"}}}, account: "a", want: 0, len: 0},
		}},
		{"delete one kind keeps the others", []step{
			{upserts: []Entry{ixEntry(n, KindBlock, "", ""), ixEntry(n, KindComplaint, "", "")}, want: ixMask(KindBlock, KindComplaint), len: 2},
			{deletes: []Key{{Number: n, Kind: KindBlock}}, want: ixMask(KindComplaint), len: 1},
		}},
		{"delete global keeps scoped", []step{
			{upserts: []Entry{ixEntry(n, KindBlock, "", ""), ixEntry(n, KindBlock, "", "S")}, want: ixMask(KindBlock), len: 2},
			{deletes: []Key{{Number: n, Kind: KindBlock}}, want: ixMask(KindBlock), len: 1},
			{deletes: []Key{{Number: n, Kind: KindBlock, Scope: Scope{Sender: "S"}}}, want: 0, len: 0},
		}},
		{"delete of an absent key changes nothing", []step{
			{deletes: []Key{{Number: n, Kind: KindBlock}}, want: 0, len: 0},
			{upserts: []Entry{ixEntry(n, KindBlock, "", "")}, deletes: []Key{{Number: n, Kind: KindComplaint}, {Number: n + 1, Kind: KindBlock}}, want: ixMask(KindBlock), len: 1},
		}},
		{"upserts apply before deletes", []step{
			{upserts: []Entry{ixEntry(n, KindBlock, "", "")}, deletes: []Key{{Number: n, Kind: KindBlock}}, want: 0, len: 0},
		}},
	}
	for _, c := range cases {
		// Between steps the state is left in d0, in a stack of frozen deltas (one per step,
		// merged all at once at the end), or merged into the base, so every change also lands
		// over older layers.
		for _, between := range []string{"delta", "frozen", "merged"} {
			t.Run(c.name+"/"+between, func(t *testing.T) {
				x := newTestIndex(t, 1<<30)
				for i, s := range c.steps {
					x.Update(s.upserts, s.deletes)
					if got := x.Check(n, s.account, "S"); got != s.want {
						t.Errorf("step %d: Check = %08b, want %08b", i, got, s.want)
					}
					if got := x.Len(); got != s.len {
						t.Errorf("step %d: Len = %d, want %d", i, got, s.len)
					}
					switch between {
					case "frozen":
						freezeQuiet(x)
						if n := len(x.snap.Load().frozen); n != i+1 {
							t.Fatalf("step %d: %d frozen deltas", i, n)
						}
					case "merged":
						x.flush()
					}
					if got := x.Check(n, s.account, "S"); got != s.want {
						t.Errorf("step %d after %s: Check = %08b, want %08b", i, between, got, s.want)
					}
				}
				x.flush()
				last := c.steps[len(c.steps)-1]
				if got := x.Check(n, last.account, "S"); got != last.want || x.Len() != last.len {
					t.Errorf("after the final merge: Check = %08b, want %08b; Len %d, want %d", got, last.want, x.Len(), last.len)
				}
			})
		}
	}
}

func TestIndexTombstoneOverBase(t *testing.T) {
	x := newTestIndex(t, 1<<30)
	var adds []Entry
	for i := range uint64(1000) {
		adds = append(adds, ixEntry(33700000000+i, KindBlock, "", ""))
	}
	adds = append(adds, ixEntry(33700000000, KindOptOut, "", "S"))
	x.Update(adds, nil)
	x.flush()
	if got := x.snap.Load().base.n; got != 1000 {
		t.Fatalf("base holds %d numbers, want 1000", got)
	}
	var dels []Key
	for i := uint64(0); i < 1000; i += 2 {
		dels = append(dels, Key{Number: 33700000000 + i, Kind: KindBlock})
	}
	dels = append(dels, Key{Number: 33700000000, Kind: KindOptOut, Scope: Scope{Sender: "S"}})
	x.Update(nil, dels)
	check := func(stage string) {
		t.Helper()
		for i := range uint64(1000) {
			want := ixMask(KindBlock)
			if i%2 == 0 {
				want = 0
			}
			if got := x.Check(33700000000+i, "a", "S"); got != want {
				t.Fatalf("%s: Check(%d) = %08b, want %08b", stage, 33700000000+i, got, want)
			}
		}
		if got := x.Len(); got != 500 {
			t.Fatalf("%s: Len = %d, want 500", stage, got)
		}
	}
	check("tombstones in d0")
	if s := x.snap.Load(); s.d0.count.Load() != 500 || s.base.n != 1000 {
		t.Fatalf("d0 %d numbers, base %d: want the tombstones in d0 over the full base", s.d0.count.Load(), s.base.n)
	}
	x.flush()
	check("merged")
	s := x.snap.Load()
	if s.base.n != 500 || s.base.packed != 500 || len(s.base.side) != 0 {
		t.Fatalf("base after merge: %d numbers, %d packed, %d side; want 500, 500, 0", s.base.n, s.base.packed, len(s.base.side))
	}
	// Re-adding a deleted number over the merged base.
	x.Update([]Entry{ixEntry(33700000000, KindComplaint, "", "")}, nil)
	if got := x.Check(33700000000, "", ""); got != ixMask(KindComplaint) {
		t.Fatalf("re-added: Check = %08b", got)
	}
}

func TestIndexReset(t *testing.T) {
	x := newTestIndex(t, 1<<30)
	x.Update([]Entry{ixEntry(1, KindBlock, "", ""), ixEntry(2, KindBlock, "", "")}, nil)
	x.flush()
	x.Update([]Entry{ixEntry(3, KindBlock, "", "")}, []Key{{Number: 1, Kind: KindBlock}})
	x.Reset(slices.Values([]Entry{
		ixEntry(2, KindComplaint, "", ""),
		ixEntry(4, KindBlock, "", ""),
		ixEntry(4, KindBlock, "", ""), // a repeated key is one entry
		ixEntry(4, KindOptOut, "a", ""),
		ixEntry(4, KindComplaint, "", ""),
	}))
	for _, c := range []struct {
		n    uint64
		want KindMask
	}{{1, 0}, {2, ixMask(KindComplaint)}, {3, 0}, {4, ixMask(KindBlock, KindOptOut, KindComplaint)}} {
		if got := x.Check(c.n, "a", ""); got != c.want {
			t.Errorf("Check(%d) = %08b, want %08b", c.n, got, c.want)
		}
	}
	if x.Len() != 4 {
		t.Errorf("Len = %d, want 4", x.Len())
	}
	if got := x.Check(4, "b", ""); got != ixMask(KindBlock, KindComplaint) {
		t.Errorf("Check(4, b) = %08b", got)
	}
	x.Reset(func(func(Entry) bool) {})
	if x.Len() != 0 || x.Check(4, "a", "") != 0 || x.Check(2, "", "") != 0 {
		t.Errorf("after an empty Reset: Len %d, Check(4) %08b", x.Len(), x.Check(4, "a", ""))
	}
	x.Update([]Entry{ixEntry(5, KindBlock, "", "")}, nil)
	x.flush()
	if x.Check(5, "", "") != ixMask(KindBlock) || x.Len() != 1 {
		t.Errorf("update after Reset: Check(5) %08b, Len %d", x.Check(5, "", ""), x.Len())
	}
}

func TestIndexResetDiscardsRunningMerge(t *testing.T) {
	x := newTestIndex(t, 1<<30)
	x.Update([]Entry{ixEntry(1, KindBlock, "", "")}, nil)
	// Freeze d0 (without waking the merger) and start a merge of it.
	freezeQuiet(x)
	j := x.mergeJob()
	b := j.s.base.merge(j.s.frozen, &mergeBuffers{}, nil)
	if b.n != 1 {
		t.Fatalf("merged base holds %d numbers, want 1", b.n)
	}
	x.Reset(slices.Values([]Entry{ixEntry(2, KindBlock, "", "")}))
	after := x.snap.Load()
	if x.publishMerge(j, b) {
		t.Fatal("published a merge of the state Reset replaced")
	}
	if x.snap.Load() != after || x.Check(1, "", "") != 0 || x.Check(2, "", "") != ixMask(KindBlock) || x.Len() != 1 {
		t.Fatalf("Check(1) %08b, Check(2) %08b, Len %d", x.Check(1, "", ""), x.Check(2, "", ""), x.Len())
	}
	// Without a Reset in between, the same merge is published.
	x.Update([]Entry{ixEntry(3, KindBlock, "", "")}, nil)
	freezeQuiet(x)
	j = x.mergeJob()
	b = j.s.base.merge(j.s.frozen, &mergeBuffers{}, nil)
	// A delta frozen while the merge runs stays in front of the merged base.
	x.Update([]Entry{ixEntry(4, KindBlock, "", "")}, []Key{{Number: 3, Kind: KindBlock}})
	freezeQuiet(x)
	if !x.publishMerge(j, b) {
		t.Fatal("merge not published")
	}
	s := x.snap.Load()
	if len(s.frozen) != 1 || s.base.n != 2 || x.Check(3, "", "") != 0 || x.Check(4, "", "") != ixMask(KindBlock) {
		t.Fatalf("after merge: %d frozen, base %d numbers, Check(3) %08b, Check(4) %08b", len(s.frozen), s.base.n, x.Check(3, "", ""), x.Check(4, "", ""))
	}
}

func TestIndexKindOutOfRangePanics(t *testing.T) {
	for _, k := range []Kind{0, 8} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Update with kind %d did not panic", k)
				}
			}()
			x := newTestIndex(t, 1<<30)
			x.Update([]Entry{ixEntry(1, k, "", "")}, nil)
		}()
	}
}

func TestIndexCheckAllocs(t *testing.T) {
	x := newTestIndex(t, 1<<30)
	x.Update([]Entry{ixEntry(10, KindBlock, "", ""), ixEntry(11, KindOptOut, "a", "S")}, nil)
	x.flush()
	x.Update([]Entry{ixEntry(12, KindBlock, "", "")}, nil)
	for _, n := range []uint64{10, 11, 12, 13} {
		if a := testing.AllocsPerRun(100, func() { x.Check(n, "a", "S") }); a != 0 {
			t.Errorf("Check(%d): %v allocs", n, a)
		}
	}
	if a := testing.AllocsPerRun(100, func() {
		x.Update([]Entry{ixEntry(14, KindBlock, "", "")}, []Key{{Number: 14, Kind: KindBlock}})
	}); a != 0 {
		t.Errorf("Update of global entries: %v allocs", a)
	}
}

func TestIndexClose(t *testing.T) {
	x := newTestIndex(t, 2)
	x.deltaMax = 16
	x.Close()
	x.Close() // idempotent
	x.Update([]Entry{ixEntry(1, KindBlock, "", ""), ixEntry(2, KindBlock, "", ""), ixEntry(3, KindBlock, "", "")}, nil)
	if s := x.snap.Load(); len(s.frozen) != 0 {
		t.Fatal("froze d0 for a merge after Close")
	}
	// A full d0 is still frozen and replaced; nothing merges, nothing is lost.
	for i := range uint64(100) {
		x.Update([]Entry{ixEntry(100+i, KindComplaint, "", "")}, nil)
	}
	if n := len(x.snap.Load().frozen); n == 0 {
		t.Fatal("d0 never filled up")
	}
	if x.Check(3, "", "") != ixMask(KindBlock) || x.Check(100, "", "") != ixMask(KindComplaint) || x.Len() != 103 {
		t.Fatalf("after Close: Check %08b, Len %d", x.Check(3, "", ""), x.Len())
	}
}

// TestDeltaStates checks a delta's slots against a map through the state changes a number can
// go through (global to scoped and back, scoped replaced), with enough scoped numbers to need
// several chunks of states.
func TestDeltaStates(t *testing.T) {
	d := newDelta(2000, 2)
	want := map[uint64]*numState{}
	r := rand.New(rand.NewPCG(5, 6))
	for step := range 20000 {
		n := 1000 + uint64(r.IntN(1500))
		cur := want[n]
		if cur == nil {
			cur = globalState(0)
		}
		k, sc := Kind(1+r.IntN(3)), Scope{}
		if r.IntN(2) == 0 {
			sc.Sender = fmt.Sprint("S", r.IntN(3))
		}
		next := cur.with(k, sc, r.IntN(3) > 0)
		d.set(n, mixNumber(n), next)
		want[n] = next
		if step%1000 == 0 || step == 19999 {
			for n, st := range want {
				if got := d.get(n, mixNumber(n)); got == nil || got.global != st.global || !slices.Equal(got.scoped, st.scoped) {
					t.Fatalf("step %d: number %d: %+v, want %+v", step, n, got, st)
				}
			}
			if got := d.get(999, mixNumber(999)); got != nil {
				t.Fatalf("absent number: %+v", got)
			}
		}
	}
	seen := 0
	d.each(func(n uint64, st *numState) {
		seen++
		if want[n] != st {
			t.Fatalf("each: number %d: %+v, want %+v", n, st, want[n])
		}
	})
	if seen != len(want) || int(d.count.Load()) != len(want) {
		t.Fatalf("each saw %d, count %d, want %d", seen, d.count.Load(), len(want))
	}
	if d.nstates <= stateChunkLen {
		t.Fatalf("%d scoped states used: want more than a chunk", d.nstates)
	}
}

// TestTable exercises the base table's deletion (backward shift, wrapping around the end)
// against a map, in tables small enough that runs wrap.
func TestTable(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for round := range 200 {
		tb := baseTable{slots: make([]uint64, 8+round%13)}
		want := map[uint64]byte{}
		for range 2000 {
			n := r.Uint64N(40)
			if r.IntN(2) == 0 {
				low := byte(2 << r.IntN(3))
				tb.put(n, low)
				want[n] = low
			} else {
				tb.del(n)
				delete(want, n)
			}
			if tb.n != len(want) {
				t.Fatalf("round %d: table holds %d, want %d", round, tb.n, len(want))
			}
		}
		for n := range uint64(40) {
			i := tb.find(n)
			low, ok := want[n]
			if (i >= 0) != ok || ok && byte(tb.slots[i]) != low {
				t.Fatalf("round %d: number %d: slot %d, want %v %v", round, n, i, low, ok)
			}
		}
	}
}

// indexModel is the reference for TestIndexModel: the keys of each number.
type indexModel map[uint64]map[Key]bool

func (m indexModel) check(n uint64, account, sender string) KindMask {
	var r KindMask
	for k := range m[n] {
		if k.Scope.Matches(account, sender) {
			r |= 1 << k.Kind
		}
	}
	return r
}

func (m indexModel) add(k Key) {
	if m[k.Number] == nil {
		m[k.Number] = map[Key]bool{}
	}
	m[k.Number][k] = true
}

func (m indexModel) del(k Key) { delete(m[k.Number], k) }

func (m indexModel) len() int {
	n := 0
	for _, ks := range m {
		n += len(ks)
	}
	return n
}

// TestIndexModel applies random batches (with small merge thresholds, so that merges, delta
// growth, tombstones over the base and Resets all happen) and compares every number with a map.
func TestIndexModel(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	x := newTestIndex(t, 32)
	m := indexModel{}
	numbers := []uint64{0, 1, 2, 1<<56 - 1, 1 << 56, 1<<64 - 1}
	for i := range uint64(150) {
		numbers = append(numbers, 33600000000+i*7919)
	}
	scopes := []Scope{{}, {}, {}, {Account: "a"}, {Sender: "S"}, {Account: "a", Sender: "S"}, {Account: "b"}}
	randKey := func() Key {
		return Key{Number: numbers[r.IntN(len(numbers))], Kind: Kind(1 + r.IntN(3)), Scope: scopes[r.IntN(len(scopes))]}
	}
	probes := []Scope{{}, {Account: "a"}, {Sender: "S"}, {Account: "a", Sender: "S"}, {Account: "b", Sender: "T"}}
	maxFrozen := 0
	verify := func(step int) {
		t.Helper()
		for _, n := range numbers {
			for _, p := range probes {
				if got, want := x.Check(n, p.Account, p.Sender), m.check(n, p.Account, p.Sender); got != want {
					t.Fatalf("step %d: Check(%d, %q, %q) = %08b, want %08b", step, n, p.Account, p.Sender, got, want)
				}
			}
		}
		if x.Len() != m.len() {
			t.Fatalf("step %d: Len = %d, want %d", step, x.Len(), m.len())
		}
		maxFrozen = max(maxFrozen, len(x.snap.Load().frozen))
	}
	for step := range 3000 {
		switch r.IntN(100) {
		case 0:
			// Reset to a random subset of the model, yielded with repeats.
			keep := indexModel{}
			var all []Entry
			for _, ks := range m {
				for k := range ks {
					if r.IntN(3) > 0 {
						keep.add(k)
						all = append(all, Entry{Key: k}, Entry{Key: k})
					}
				}
			}
			r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
			m = keep
			x.Reset(slices.Values(all))
		case 1:
			x.flush()
		case 2, 3, 4:
			freezeQuiet(x) // frozen deltas pile up until a merge takes them all
		default:
			var ups []Entry
			var dels []Key
			for range r.IntN(20) {
				k := randKey()
				if r.IntN(3) == 0 {
					dels = append(dels, k)
				} else {
					ups = append(ups, Entry{Key: k, Created: int64(step)})
				}
			}
			for _, e := range ups {
				m.add(e.Key)
			}
			for _, k := range dels {
				m.del(k)
			}
			x.Update(ups, dels)
		}
		verify(step)
	}
	t.Logf("%d merges, at most %d frozen deltas", x.merges.Load(), maxFrozen)
	if x.merges.Load() == 0 || maxFrozen < 2 {
		t.Fatal("no merge ran, or never of several frozen deltas")
	}
}

// TestIndexConcurrentMonotonic runs readers against a writer whose every Update changes one key
// of some numbers (so each number only ever is in one of the states of its history) while
// merges run. A reader's Check must return a state the number had at some point between the
// Check's start and end, never older than one this reader already saw.
func TestIndexConcurrentMonotonic(t *testing.T) {
	const (
		numbers = 200
		updates = 3000
		readers = 2
	)
	number := func(i int) uint64 { return 33612340000 + uint64(i)*101 }
	// history[i] lists (update, mask) for number i, starting with (0, 0).
	type version struct {
		update int
		mask   KindMask
	}
	history := make([][]version, numbers)
	batches := make([][2][]Key, updates+1)
	r := rand.New(rand.NewPCG(3, 4))
	cur := make([]KindMask, numbers)
	for i := range history {
		history[i] = []version{{0, 0}}
	}
	for u := 1; u <= updates; u++ {
		for i := range numbers {
			if r.IntN(8) != 0 {
				continue
			}
			k := Kind(1 + r.IntN(3))
			key := Key{Number: number(i), Kind: k}
			if cur[i].Has(k) {
				batches[u][1] = append(batches[u][1], key)
			} else {
				batches[u][0] = append(batches[u][0], key)
			}
			cur[i] ^= 1 << k
			history[i] = append(history[i], version{u, cur[i]})
		}
	}
	// at returns the index in h of the version current after update u.
	at := func(h []version, u int) int {
		j, _ := slices.BinarySearchFunc(h, u+1, func(v version, u int) int { return v.update - u })
		return j - 1
	}

	x := newTestIndex(t, 64)
	var progress atomic.Int64
	var done atomic.Bool
	var checks atomic.Int64
	var wg sync.WaitGroup
	for w := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := make([]int, numbers)
			rr := rand.New(rand.NewPCG(uint64(w), 1))
			for n := 0; !done.Load() || n < 1000; n++ {
				i := rr.IntN(numbers)
				p0 := int(progress.Load())
				got := x.Check(number(i), "", "")
				p1 := int(progress.Load())
				h := history[i]
				lo, hi := max(at(h, p0), seen[i]), at(h, min(p1+1, updates))
				j := lo
				for j <= hi && h[j].mask != got {
					j++
				}
				if j > hi {
					t.Errorf("reader %d: number %d: got %08b between updates %d and %d; versions %v, last seen %d",
						w, i, got, p0, p1+1, h[at(h, p0):hi+1], seen[i])
					return
				}
				seen[i] = j
				checks.Add(1)
			}
		}()
	}
	for u := 1; u <= updates; u++ {
		ups := make([]Entry, len(batches[u][0]))
		for j, k := range batches[u][0] {
			ups[j] = Entry{Key: k}
		}
		x.Update(ups, batches[u][1])
		progress.Store(int64(u))
		switch {
		case u%250 == 0:
			x.flush() // a merge at least every 250 updates, whatever the scheduler does
		case u%50 == 0:
			freezeQuiet(x) // and several frozen deltas at once
		}
	}
	done.Store(true)
	wg.Wait()
	x.flush()
	for i := range numbers {
		if got, want := x.Check(number(i), "", ""), cur[i]; got != want {
			t.Errorf("final: number %d: %08b, want %08b", i, got, want)
		}
	}
	t.Logf("%d checks, %d merges", checks.Load(), x.merges.Load())
	if x.merges.Load() == 0 {
		t.Error("no merge ran during the test")
	}
}

// Example of the intended use, also a compile check of the API's shape.
func ExampleIndex() {
	x := NewIndex()
	defer x.Close()
	x.Update([]Entry{{Key: Key{Number: 33612345678, Kind: KindOptOut, Scope: Scope{Sender: "SHOP"}}}}, nil)
	m := x.Check(33612345678, "acme", "SHOP")
	fmt.Println(m.Has(KindOptOut), m.Has(KindBlock), x.Check(33612345678, "acme", "NEWS"), x.Len())
	// Output: true false 0 1
}

// TestFuseMatchesLibrary checks the index's copy of the binary fuse probe against the library's
// Contains on the same filter, for members (always true) and other numbers.
func TestFuseMatchesLibrary(t *testing.T) {
	for _, n := range []int{1, 2, 3, 100, 5000, 3*fuseShardKeys + 5} {
		var tb baseTable
		for i := range n {
			tb.put(33600000000+uint64(i)*37, 1<<KindBlock)
		}
		b := finishBase(tb, map[uint64]*numState{1<<60 + 3: globalState(ixMask(KindBlock))}, &mergeBuffers{})
		if b.noFilter || b.n != n+1 {
			t.Fatalf("%d keys: noFilter %v, n %d", n, b.noFilter, b.n)
		}
		if want := max(1, 1<<bits.Len(uint((n)/fuseShardKeys))); len(b.filters) != want {
			t.Errorf("%d keys: %d filter shards, want %d", n, len(b.filters), want)
		}
		contains := func(k uint64) (bool, bool) {
			f := &b.filters[mixNumber(k)>>b.shift]
			lib := xorfilter.BinaryFuse8{Seed: f.seed, SegmentLength: f.segLen, SegmentLengthMask: f.segMask,
				SegmentCountLength: f.segCountLen, Fingerprints: f.fp}
			return f.contains(k), lib.Contains(k)
		}
		if got, _ := contains(1<<60 + 3); !got {
			t.Fatalf("%d keys: side-only number not in the filter", n)
		}
		r := rand.New(rand.NewPCG(uint64(n), 2))
		positives := 0
		for i := range 3 * n {
			k := 33600000000 + uint64(i)*37 // the first n are the members
			if i >= n {
				k = r.Uint64()
			}
			got, want := contains(k)
			if got != want || i < n && !got {
				t.Fatalf("%d keys: contains(%d) = %v, library %v", n, k, got, want)
			}
			if got && i >= n {
				positives++
			}
		}
		if fp := float64(positives) / float64(2*n); n >= 5000 && fp > 0.01 {
			t.Errorf("%d keys: false positive rate %.4f", n, fp)
		}
	}
	// The empty base: a few numbers in 256 get past its filter, and none is found.
	x := newTestIndex(t, 1<<30)
	passed := 0
	for i := range uint64(10000) {
		if emptyBase.filters[0].contains(i) {
			passed++
		}
		if x.Check(i, "", "") != 0 {
			t.Fatalf("empty index: Check(%d) != 0", i)
		}
	}
	if passed > 100 {
		t.Errorf("empty filter passed %d of 10000", passed)
	}
}
