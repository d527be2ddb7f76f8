package store

import (
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/FastFilter/xorfilter"
)

// KindMask has bit (1 << kind) set for each Kind present.
type KindMask uint8

// Has reports whether k is in the mask.
func (m KindMask) Has(k Kind) bool { return k < 8 && m&(1<<k) != 0 }

// Index is the hot-path view of the recipient-protection state: the router checks every
// destination against it, the FSM keeps it current (Update, Reset).
//
// Readers load one snapshot pointer (a view) and never lock, allocate or wait. A view has
// layers, newest first:
//
//	d0      active delta: the state of the numbers changed since it was started, written in
//	        place by the writer (each slot an atomic key and an atomic value: the number's
//	        kinds, or a reference to its immutable state if it has scoped entries; no kinds is
//	        a tombstone, hiding the older layers), with a blocked bloom filter in front so that
//	        a miss costs one word
//	frozen  deltas no longer written, waiting for or being merged into the base by the merger
//	        goroutine; none when no merge runs
//	base    immutable: binary fuse filters over its numbers, an open-addressing table of
//	        number<<8 | global kinds, and a side map holding the whole state of the (rare)
//	        numbers with scoped entries
//
// The first layer holding a number has its whole current state. A miss costs a bloom word and
// a fuse filter probe (plus a bloom word per frozen delta while a merge runs).
//
// Update applies each change to d0 (a number's state is replaced by one atomic store, so
// readers see it before or after, never half). Its cost is O(changes); it never copies the
// base or a delta. When d0 has grown past a threshold and no merge runs, or when it is full,
// Update freezes it and starts a new d0 (twice as large if it was full); the merger builds the
// base and all the frozen deltas into a new base and publishes it, d0 and the deltas frozen
// meanwhile staying in front.
//
// Ownership and locking: Update and Reset are the writer's, called from one goroutine (the
// FSM's); the merger goroutine is the Index's own (Close stops it and waits). Only the writer
// writes d0 and freezes; mu guards the read-modify-write of snap by the writer and the merger,
// gen and the setting of closed. Check never takes mu.
type Index struct {
	snap    atomic.Pointer[view]
	entries atomic.Int64          // Len; written by the writer
	merges  atomic.Int64          // merges published
	mergeNs atomic.Int64          // time they took, in total
	closed  atomic.Bool           // set under mu: no more merges
	spare   atomic.Pointer[delta] // an empty delta for the writer's next freeze, allocated by the merger

	mu     sync.Mutex
	gen    uint64        // under mu: bumped by Reset, so an older merge is not published
	merged chan struct{} // under mu: closed (and replaced) when a merge is published; tests wait on it

	kick      chan struct{} // buffered 1: frozen deltas wait for the merger
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	// Set before use (tests lower them).
	mergeMin int // d0 is frozen for a merge once it holds max(mergeMin, base/mergeDiv) numbers
	deltaMax int // most numbers a new d0 is given room for up front (a full one doubles)
	bloomMin int // words of a new d0's bloom filter (a power of two)
}

// Defaults of the merge policy. A merge costs O(base) (about 0.1 s per million numbers, most of
// it the filter construction), so d0 grows to at least base/mergeDiv numbers before one starts:
// amortised, each changed number costs mergeDiv base entries of background work. A new d0 has
// room for that many numbers (capped by deltaMax: 32 MB of slots, only touched as it fills), so
// that it fills up, is frozen and doubles only when a merge is slower than the updates.
// mergeDiv 4 (was 16): a 3-node bulk import on 2 cores spent 28 % of its CPU in merges; with 4,
// 14 %, and 300k -> 345k-356k numbers/s; a miss still costs one bloom word more (16 ns with 10M).
const (
	defaultMergeMin = 1 << 18
	mergeDiv        = 4
	defaultDeltaMax = 1 << 20
)

// d0Room is the room of a d0 started over base b: for b's merge threshold and for n numbers
// (what the last d0 took), at most deltaMax.
func (x *Index) d0Room(b *base, n int) int {
	return min(max(x.mergeMin, b.n/mergeDiv, n), x.deltaMax)
}

// fresh returns an empty delta with room for at least n numbers: the spare the merger
// allocated if it fits, else a new one. The writer thus seldom allocates tens of MB itself: a
// goroutine allocating that much while the garbage collector marks owes it more work than
// there is, and waits for the end of the cycle (a few hundred ms, measured here).
func (x *Index) fresh(n int) *delta {
	if d := x.spare.Swap(nil); d != nil && d.room() >= n && d.room() <= 4*max(n, 16) {
		return d
	}
	return newDelta(n, x.bloomMin)
}

// view is what a reader sees, the snapshot the writer and the merger swap: immutable except
// for d0's slots, which the writer writes in place.
type view struct {
	d0     *delta
	frozen []*delta // newest first; never modified (a new view gets a new slice)
	base   *base

	// Copies of what a miss reads, so that it follows fewer pointers.
	bloom     []atomic.Uint64 // d0's bloom words (a larger bloom comes with a new view)
	bloomMask uint64          // len(bloom) - 1
	filters   []fuse          // base.filters
	seed      uint64          // base.filters[0].seed
	shift     uint            // base.shift
	noFilter  bool            // base.noFilter
}

func newView(d0 *delta, frozen []*delta, b *base) *view {
	bl := d0.bloom.Load()
	return &view{d0: d0, frozen: frozen, base: b, bloom: bl.words, bloomMask: bl.mask,
		filters: b.filters, seed: b.filters[0].seed, shift: b.shift, noFilter: b.noFilter}
}

// NewIndex returns an empty index and starts its merger; Close stops it.
func NewIndex() *Index {
	x := &Index{
		merged:   make(chan struct{}),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		mergeMin: defaultMergeMin,
		deltaMax: defaultDeltaMax,
		bloomMin: bloomMinWords,
	}
	x.snap.Store(newView(newDelta(x.d0Room(emptyBase, 0), x.bloomMin), nil, emptyBase))
	go x.mergeLoop()
	return x
}

// Check returns the kinds of the entries of number whose scope matches a message of account
// from sender (Scope.Matches). Lock-free, 0 allocs.
func (x *Index) Check(number uint64, account, sender string) KindMask {
	s := x.snap.Load()
	h := mixNumber(number)
	m := bloomBits(h)
	if len(s.frozen) != 0 || s.bloom[(h>>32)&s.bloomMask].Load()&m == m {
		if st := s.deltaState(number, h); st != nil {
			return st.match(account, sender)
		}
	}
	// The fuse probe (fuse.contains, written out: too large to be inlined, and a call
	// costs as much again as the probe). The shards' seeds are usually all the same (the
	// builder starts from a fixed one), so g is computed before f is loaded.
	g := mixNumber(number + s.seed)
	f := &s.filters[h>>s.shift]
	if f.seed != s.seed {
		g = mixNumber(number + f.seed)
	}
	hi, _ := bits.Mul64(g, uint64(f.segCountLen))
	h0 := uint32(hi)
	h1 := h0 + f.segLen
	h2 := h1 + f.segLen
	h1 ^= uint32(g>>18) & f.segMask
	h2 ^= uint32(g) & f.segMask
	if uint8(g^g>>32)^f.fp[h0]^f.fp[h1]^f.fp[h2] != 0 && !s.noFilter {
		return 0
	}
	return s.base.find(number, h, account, sender)
}

// deltaState returns the state of number (h = mixNumber(number)) in the newest delta holding
// it, nil if none does.
func (s *view) deltaState(number, h uint64) *numState {
	if st := s.d0.get(number, h); st != nil {
		return st
	}
	for _, d := range s.frozen {
		if st := d.get(number, h); st != nil {
			return st
		}
	}
	return nil
}

// Update applies changes (upserts replace an entry with the same Key; deletes remove one) and
// publishes them before returning: a Check that starts after Update returned sees them.
// Upserts are applied first, then deletes. Each number's state changes atomically per key; a
// reader may see some keys of a call applied and not yet others. Writer only.
//
// Kinds must be 1..7 (KindMask has 8 bits and bit 0 is the index's own); the FSM rejects other
// kinds when it decodes a command, so one here is a broken invariant and panics.
func (x *Index) Update(upserts []Entry, deletes []Key) {
	s := x.reserve(len(upserts) + len(deletes))
	var added int
	for i := range upserts {
		added += x.apply(s, upserts[i].Key, true)
	}
	for i := range deletes {
		added += x.apply(s, deletes[i], false)
	}
	x.entries.Add(int64(added))
	if n := int(s.d0.count.Load()); len(s.frozen) == 0 && n >= max(x.mergeMin, s.base.n/mergeDiv) {
		// The next d0 gets room for as many numbers as this one took (what arrives during
		// the merge, at a steady rate), so that it does not fill up before the merge ends.
		x.freeze(x.d0Room(s.base, n), true)
	}
}

// apply changes one key in s.d0 and returns the change in the number of entries.
func (x *Index) apply(s *view, k Key, add bool) int {
	checkKind(k.Kind)
	h := mixNumber(k.Number)
	cur := s.deltaState(k.Number, h)
	if cur == nil {
		// The merger may have published a merge since s was loaded: s.base and s.frozen
		// hold the same state as the new base.
		cur = s.base.lookup(k.Number, h)
	}
	next := cur.with(k.Kind, k.Scope, add)
	if next == cur {
		return 0
	}
	s.d0.set(k.Number, h, next)
	return next.entries() - cur.entries()
}

// reserve makes room in d0 for n more numbers and returns the current view: when d0 is full
// it is frozen as it is (no copy) and a new one twice as large started; when its bloom filter
// is full, a larger one is built (from d0's key log) and published with a new view before any
// number is added to it, so that no reader sees a number with one view and misses it with a
// later one.
func (x *Index) reserve(n int) *view {
	s := x.snap.Load()
	need := int(s.d0.count.Load()) + n
	if need > s.d0.room() {
		return x.freeze(max(2*s.d0.room(), n), false)
	}
	if need <= s.d0.bloom.Load().room() {
		return s
	}
	s.d0.growBloom(need)
	x.mu.Lock()
	defer x.mu.Unlock()
	cur := x.snap.Load() // the merger may have replaced base and frozen, never d0
	s = newView(cur.d0, cur.frozen, cur.base)
	x.snap.Store(s)
	return s
}

// freeze publishes a view with a new d0 with room for n numbers and the current d0 as the
// newest frozen delta, and wakes the merger; forMerge: only if no merge is due and the index
// is not closed. It returns the current view. Writer only.
func (x *Index) freeze(n int, forMerge bool) *view {
	due := func(cur *view) bool { return forMerge && (x.closed.Load() || len(cur.frozen) != 0) }
	if cur := x.snap.Load(); due(cur) {
		return cur
	}
	next := x.fresh(n) // not under mu: the merger may be waiting for it
	x.mu.Lock()
	defer x.mu.Unlock()
	cur := x.snap.Load() // the merger may have replaced base and frozen, never d0
	if due(cur) {
		x.spare.CompareAndSwap(nil, next)
		return cur
	}
	frozen := make([]*delta, 0, len(cur.frozen)+1)
	frozen = append(append(frozen, cur.d0), cur.frozen...)
	s := newView(next, frozen, cur.base)
	x.snap.Store(s)
	select {
	case x.kick <- struct{}{}:
	default: // a merge is due already; it takes every frozen delta
	}
	return s
}

// Reset replaces the whole content (after a snapshot restore or at startup), from an iterator.
// It builds the new base in the caller's goroutine (readers keep the old content meanwhile);
// a merge still running on the old content is discarded. Writer only.
func (x *Index) Reset(all func(yield func(Entry) bool)) {
	var t baseTable
	side := make(map[uint64]*numState)
	for e := range all {
		checkKind(e.Kind)
		if e.Scope.Global() && e.Number < packLimit {
			t.or(e.Number, byte(1)<<e.Kind)
			continue
		}
		st := side[e.Number]
		if st == nil {
			st = globalState(0)
		}
		side[e.Number] = st.with(e.Kind, e.Scope, true)
	}
	// Numbers with scoped entries keep their whole state in side, flagged in the table.
	for n, st := range side {
		if n >= packLimit {
			continue
		}
		if i := t.find(n); i >= 0 {
			if g := KindMask(t.slots[i]) &^ flagScoped; g&^st.global != 0 {
				st = &numState{global: st.global | g, scoped: st.scoped}
				side[n] = st
			}
		}
		t.put(n, byte(st.global)|flagScoped)
	}
	if t.n > 0 && float64(t.n) < minLoad*float64(len(t.slots)) {
		t.resize(slotsFor(t.n))
	}
	b := finishBase(t, side, &mergeBuffers{})
	var entries int
	for _, s := range t.slots {
		if s != 0 && s&flagScoped == 0 {
			entries += bits.OnesCount8(uint8(s))
		}
	}
	for _, st := range side {
		entries += st.entries()
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gen++
	x.snap.Store(newView(newDelta(x.d0Room(b, 0), x.bloomMin), nil, b))
	x.entries.Store(int64(entries))
}

// Len returns the number of entries.
func (x *Index) Len() int { return int(x.entries.Load()) }

// Bytes returns the approximate memory of the current snapshot (base and deltas; not the
// merger's build buffers, a base being built, nor the spare d0).
func (x *Index) Bytes() int {
	s := x.snap.Load()
	n := s.base.bytes + s.d0.bytes()
	for _, d := range s.frozen {
		n += d.bytes()
	}
	return n
}

// Close stops the background merger and waits for it (a merge under way is abandoned at its
// next step). The index stays usable, but frozen deltas are no longer merged.
func (x *Index) Close() {
	x.closeOnce.Do(func() {
		x.mu.Lock()
		x.closed.Store(true)
		x.mu.Unlock()
		close(x.stop)
		<-x.done
	})
}

// mergeLoop is the merger goroutine: it merges the frozen deltas into the base when kicked.
func (x *Index) mergeLoop() {
	defer close(x.done)
	var m mergeBuffers
	for {
		select {
		case <-x.stop:
			return
		case <-x.kick:
			x.mergeOnce(&m)
		}
	}
}

// mergeBuffers are the buffers a base build reuses (a few MB: the filter is built by shards of
// at most fuseShardKeys numbers).
type mergeBuffers struct {
	fb   xorfilter.BinaryFuseBuilder
	keys []uint64
}

// mergeOnce builds the base and the frozen deltas into a new base and publishes it, unless
// Reset ran meanwhile.
func (x *Index) mergeOnce(m *mergeBuffers) {
	start := time.Now()
	j := x.mergeJob()
	if len(j.s.frozen) == 0 {
		return
	}
	if b := j.s.base.merge(j.s.frozen, m, x.stop); b != nil && x.publishMerge(j, b) {
		x.mergeNs.Add(int64(time.Since(start)))
		// The writer's next d0, allocated here rather than by the writer (see fresh).
		if n := x.d0Room(b, int(x.snap.Load().d0.count.Load())); x.spare.Load() == nil {
			x.spare.CompareAndSwap(nil, newDelta(n, x.bloomMin))
		}
	}
}

// mergeJob is the view a merge starts from.
type mergeJob struct {
	s   *view
	gen uint64
}

func (x *Index) mergeJob() mergeJob {
	x.mu.Lock()
	defer x.mu.Unlock()
	return mergeJob{x.snap.Load(), x.gen}
}

// publishMerge replaces the base and the frozen deltas of j by b, their merge, unless Reset ran
// since j. Deltas frozen since j (the newest ones) stay.
func (x *Index) publishMerge(j mergeJob, b *base) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	cur := x.snap.Load()
	keep := len(cur.frozen) - len(j.s.frozen)
	if x.gen != j.gen || x.closed.Load() {
		return false
	}
	if keep < 0 || cur.frozen[keep] != j.s.frozen[0] {
		panic("store: index: frozen deltas changed under a merge")
	}
	x.snap.Store(newView(cur.d0, cur.frozen[:keep:keep], b))
	x.merges.Add(1)
	close(x.merged)
	x.merged = make(chan struct{})
	return true
}

// flush freezes d0 and waits until everything is merged into the base (tests).
func (x *Index) flush() {
	if x.snap.Load().d0.count.Load() != 0 {
		x.freeze(x.d0Room(x.snap.Load().base, 0), false)
	}
	for {
		x.mu.Lock()
		if len(x.snap.Load().frozen) == 0 {
			x.mu.Unlock()
			return
		}
		select {
		case x.kick <- struct{}{}:
		default:
		}
		ch := x.merged
		x.mu.Unlock()
		<-ch
	}
}

func checkKind(k Kind) {
	if k < 1 || k > 7 {
		panic(fmt.Sprintf("store: index: kind %d out of range 1..7: the FSM must reject it", k))
	}
}

// mixNumber is the murmur3 64-bit finaliser: the hash of a number for the tables and the blooms.
func mixNumber(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// numState is everything the index knows of one number: the kinds of its global entries and its
// scoped entries. Immutable once stored in a layer. The states without scoped entries are the
// shared values of globalStates, so the common case allocates nothing. An empty state is a
// tombstone: the number has no entries (it hides the number's state in older layers).
type numState struct {
	global KindMask
	scoped []scopedEntry // unordered, each (kind, scope) once
}

type scopedEntry struct {
	kind  Kind
	scope Scope
}

var globalStates [256]numState

func init() {
	for i := range globalStates {
		globalStates[i].global = KindMask(i)
	}
}

func globalState(m KindMask) *numState { return &globalStates[m] }

func (s *numState) match(account, sender string) KindMask {
	m := s.global
	for i := range s.scoped {
		if s.scoped[i].scope.Matches(account, sender) {
			m |= 1 << s.scoped[i].kind
		}
	}
	return m
}

func (s *numState) entries() int { return bits.OnesCount8(uint8(s.global)) + len(s.scoped) }

func (s *numState) empty() bool { return s.global == 0 && len(s.scoped) == 0 }

// with returns the state with the entry (k, sc) added or removed: s itself when that changes
// nothing, else a new (or shared) state.
func (s *numState) with(k Kind, sc Scope, add bool) *numState {
	if sc.Global() {
		g := s.global &^ (1 << k)
		if add {
			g = s.global | 1<<k
		}
		switch {
		case g == s.global:
			return s
		case len(s.scoped) == 0:
			return globalState(g)
		}
		return &numState{global: g, scoped: s.scoped}
	}
	i := slices.IndexFunc(s.scoped, func(e scopedEntry) bool { return e.kind == k && e.scope == sc })
	switch {
	case add == (i >= 0):
		return s
	case add:
		scoped := make([]scopedEntry, len(s.scoped), len(s.scoped)+1)
		copy(scoped, s.scoped)
		return &numState{global: s.global, scoped: append(scoped, scopedEntry{k, sc})}
	case len(s.scoped) == 1:
		return globalState(s.global)
	}
	return &numState{global: s.global, scoped: slices.Delete(slices.Clone(s.scoped), i, i+1)}
}

// bytes approximates the memory of a state with scoped entries.
func (s *numState) bytes() int {
	n := 32 + 40*len(s.scoped)
	for _, e := range s.scoped {
		n += len(e.scope.Account) + len(e.scope.Sender)
	}
	return n
}

// delta is a change layer: open addressing with linear probing over a power-of-two number of
// slots, at most half of them used, and a blocked bloom filter (one word, four bits, per
// number) over its numbers, sized for 16 bits per number and replaced by one twice as large
// when that fills up, so that a mostly empty delta costs readers a few cache lines only. Only
// the writer writes a delta, in place, while readers read it.
//
// A slot holds a number and its state: a global-only state inline (its KindMask), else the
// index of a pointer in states, so that the slots hold no pointers and the garbage collector
// does not scan them. A new number's key is stored before its value, and a reader loads the
// value first (0: empty slot), so a non-zero value always comes with its key; a scoped state is
// stored in states before the value that refers to it. Keys never move or go; bloom bits are
// set before the slot is written. A number keeps its index in states once it has one: a new
// state replaces the pointer there.
type delta struct {
	slots   []deltaSlot
	bloom   atomic.Pointer[deltaBloom]
	keys    []uint64                     // writer only: the numbers, in the order they came (to fill a larger bloom)
	states  []atomic.Pointer[stateChunk] // scoped states, allocated by chunks
	nstates int                          // writer only: indexes of states used
	count   atomic.Int64                 // numbers; written by the writer
	extra   atomic.Int64                 // approximate bytes of the scoped states (replaced ones included)
}

type deltaSlot struct {
	key atomic.Uint64
	val atomic.Uint64 // 0: empty; else slotUsed | global KindMask, or slotUsed | slotScoped | index in states
}

const (
	slotUsed   = 1 << 63
	slotScoped = 1 << 62

	stateChunkLen = 256
	bloomMinWords = 1 << 10 // 8 KB, for 4096 numbers
)

type stateChunk [stateChunkLen]atomic.Pointer[numState]

// deltaBloom is a blocked bloom filter: a power-of-two number of words, four bits set in one word
// per number.
type deltaBloom struct {
	words []atomic.Uint64
	mask  uint64 // len(words) - 1
}

func newBloom(words int) *deltaBloom {
	return &deltaBloom{words: make([]atomic.Uint64, words), mask: uint64(words - 1)}
}

// room is the number of numbers b is sized for.
func (b *deltaBloom) room() int { return 4 * len(b.words) }

func (b *deltaBloom) add(h uint64) { b.words[(h>>32)&b.mask].Or(bloomBits(h)) }

func (b *deltaBloom) mayHold(h uint64) bool {
	m := bloomBits(h)
	return b.words[(h>>32)&b.mask].Load()&m == m
}

func bloomBits(h uint64) uint64 {
	g := h * 0x9e3779b97f4a7c15
	return 1<<(g>>58) | 1<<(g>>52&63) | 1<<(g>>46&63) | 1<<(g>>40&63)
}

// newDelta returns a delta with room for n numbers, its bloom filter with bloomWords words.
func newDelta(n, bloomWords int) *delta {
	slots := 1 << bits.Len(uint(max(2*n, 16)-1))
	d := &delta{slots: make([]deltaSlot, slots),
		states: make([]atomic.Pointer[stateChunk], (slots/2+stateChunkLen-1)/stateChunkLen)}
	d.bloom.Store(newBloom(min(bloomWords, slots/8)))
	return d
}

// growBloom replaces d's bloom by one with room for at least n numbers (writer only; the caller
// publishes it to the readers' views).
func (d *delta) growBloom(n int) {
	words := 1 << bits.Len(uint((n+3)/4-1))
	b := newBloom(min(words, len(d.slots)/8))
	for _, k := range d.keys {
		b.add(mixNumber(k))
	}
	d.bloom.Store(b)
}

// room is the number of numbers d can hold.
func (d *delta) room() int { return len(d.slots) / 2 }

func (d *delta) bytes() int {
	return len(d.slots)*16 + len(d.bloom.Load().words)*8 + cap(d.keys)*8 + len(d.states)*8 + int(d.extra.Load())
}

// get returns the state of number (h = mixNumber(number)) or nil if d does not hold it.
func (d *delta) get(number, h uint64) *numState {
	if !d.bloom.Load().mayHold(h) {
		return nil
	}
	mask := uint64(len(d.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		sl := &d.slots[i]
		v := sl.val.Load()
		if v == 0 {
			return nil
		}
		if sl.key.Load() == number {
			return d.state(v)
		}
	}
}

// state returns the state a slot value refers to.
func (d *delta) state(v uint64) *numState {
	if v&slotScoped == 0 {
		return globalState(KindMask(v))
	}
	i := uint32(v)
	return d.states[i/stateChunkLen].Load()[i%stateChunkLen].Load()
}

// set stores the state of number (writer only; d has room).
func (d *delta) set(number, h uint64, st *numState) {
	mask := uint64(len(d.slots) - 1)
	i := h & mask
	for {
		v := d.slots[i].val.Load()
		if v == 0 {
			d.bloom.Load().add(h)
			d.keys = append(d.keys, number)
			d.slots[i].key.Store(number)
			d.count.Add(1)
			break
		}
		if d.slots[i].key.Load() == number {
			break
		}
		i = (i + 1) & mask
	}
	sl := &d.slots[i]
	if len(st.scoped) == 0 {
		sl.val.Store(slotUsed | uint64(st.global))
		return
	}
	d.extra.Add(int64(st.bytes()))
	if v := sl.val.Load(); v&slotScoped != 0 {
		j := uint32(v)
		d.states[j/stateChunkLen].Load()[j%stateChunkLen].Store(st)
		return
	}
	j := d.nstates
	d.nstates++
	c := d.states[j/stateChunkLen].Load()
	if c == nil {
		c = new(stateChunk)
		d.states[j/stateChunkLen].Store(c)
		d.extra.Add(int64(len(c) * 8))
	}
	c[j%stateChunkLen].Store(st)
	sl.val.Store(slotUsed | slotScoped | uint64(j))
}

// each calls f with every number d holds and its state.
func (d *delta) each(f func(number uint64, st *numState)) {
	for i := range d.slots {
		if v := d.slots[i].val.Load(); v != 0 {
			f(d.slots[i].key.Load(), d.state(v))
		}
	}
}

// Base layout.
const (
	// packLimit: numbers below it (all E.164 numbers) are packed in the table as
	// number<<8 | low byte; the state of others is in side.
	packLimit = 1 << 56
	// flagScoped in a table slot's low byte: the number has scoped entries; its whole state is
	// in side. The other bits of the low byte are its global KindMask (Kind 0 does not exist).
	flagScoped = 1
	// Table load after it is sized, the most it grows to before it is resized, and the least
	// it keeps before it is shrunk.
	baseLoad = 0.75
	maxLoad  = 0.875
	minLoad  = 0.5
)

// base is an immutable merged layer.
type base struct {
	filters  []fuse               // over the numbers of the base: filters[mixNumber(number)>>shift]
	shift    uint                 // 64 - log2(len(filters)) (a shift by 64 gives 0)
	noFilter bool                 // a filter failed to build: every number is looked up
	slots    []uint64             // packed table (see baseTable); nil if empty
	side     map[uint64]*numState // whole state of the numbers with scoped entries or >= packLimit
	packed   int                  // numbers in slots
	n        int                  // numbers: packed + those only in side
	bytes    int
}

// find is the lookup past the filter.
func (b *base) find(number, h uint64, account, sender string) KindMask {
	slots := b.slots
	if number >= packLimit || len(slots) == 0 {
		return b.sideMatch(number, account, sender)
	}
	i := home(h, len(slots))
	for {
		s := slots[i]
		if s == 0 {
			return 0
		}
		if s>>8 == number {
			if s&flagScoped != 0 {
				return b.sideMatch(number, account, sender)
			}
			return KindMask(s)
		}
		if i++; i == len(slots) {
			i = 0
		}
	}
}

func (b *base) sideMatch(number uint64, account, sender string) KindMask {
	if st := b.side[number]; st != nil {
		return st.match(account, sender)
	}
	return 0
}

// lookup returns the state of number, an empty one if the base does not hold it.
func (b *base) lookup(number, h uint64) *numState {
	if b.n == 0 || !b.filters[h>>b.shift].contains(number) && !b.noFilter {
		return globalState(0)
	}
	if number < packLimit {
		if i := findSlot(b.slots, number, h); i < 0 {
			return globalState(0)
		} else if s := b.slots[i]; s&flagScoped == 0 {
			return globalState(KindMask(s))
		}
	}
	if st := b.side[number]; st != nil {
		return st
	}
	return globalState(0)
}

// merge returns a new base holding b with the states of the frozen deltas applied (newest
// first, as in a view); nil if stop closed first.
func (b *base) merge(frozen []*delta, m *mergeBuffers, stop <-chan struct{}) *base {
	t := baseTable{slots: make([]uint64, len(b.slots)), n: b.packed}
	for i := 0; i < len(b.slots); i += 1 << 16 {
		// By chunks: a goroutine in one long memmove cannot be preempted, and the garbage
		// collector (so every goroutine allocating meanwhile) would wait for it.
		copy(t.slots[i:], b.slots[i:min(i+1<<16, len(b.slots))])
	}
	need := t.n
	for _, d := range frozen {
		need += int(d.count.Load())
	}
	if need > int(maxLoad*float64(len(t.slots))) {
		t.resize(slotsFor(need))
	}
	side := maps.Clone(b.side)
	if side == nil {
		side = make(map[uint64]*numState)
	}
	for k := len(frozen) - 1; k >= 0; k-- { // oldest first: newer states replace older ones
		frozen[k].each(func(n uint64, st *numState) {
			switch {
			case st.empty():
				if n < packLimit {
					t.del(n)
				}
				delete(side, n)
			case n >= packLimit:
				side[n] = st
			case len(st.scoped) > 0:
				t.put(n, byte(st.global)|flagScoped)
				side[n] = st
			default:
				t.put(n, byte(st.global))
				delete(side, n)
			}
		})
	}
	if t.n > 0 && float64(t.n) < minLoad*float64(len(t.slots)) {
		t.resize(slotsFor(t.n))
	}
	select {
	case <-stop:
		return nil
	default:
	}
	return finishBase(t, side, m)
}

// fuseShardKeys bounds the numbers per filter shard: a shard's build then works in a few MB
// (fast, cache-resident) instead of about 25 bytes per number of the whole base.
const fuseShardKeys = 1 << 17

// finishBase builds the filters over the numbers of t and side and returns the base.
//
// The filter is sharded by the top bits of mixNumber(number), which also order the table (home is
// monotonic in the hash): the keys of shard s are in the slots from home(s<<shift) up to the
// first empty slot at or after the next shard's first home (cyclically).
func finishBase(t baseTable, side map[uint64]*numState, m *mergeBuffers) *base {
	b := &base{slots: t.slots, side: side, packed: t.n, n: t.n}
	if t.n == 0 {
		b.slots = nil
	}
	var big []uint64 // numbers >= packLimit, only in side
	sideBytes := 0
	for n, st := range side {
		if n >= packLimit {
			big = append(big, n)
		}
		sideBytes += 48 + st.bytes()
	}
	b.n += len(big)
	shards := 1
	for shards*fuseShardKeys < b.n {
		shards *= 2
	}
	b.shift = uint(64 - bits.TrailingZeros(uint(shards)))
	b.filters = make([]fuse, shards)
	fp := make([]uint8, 0, b.n+b.n/4+64*shards) // all the shards' fingerprints
	ends := make([]int, shards)
	slots := b.slots
	keys := 0
	for sh := range shards {
		ks := m.keys[:0]
		if len(slots) > 0 {
			lo, hi := home(uint64(sh)<<b.shift, len(slots)), len(slots)
			if sh+1 < shards {
				hi = home(uint64(sh+1)<<b.shift, len(slots))
			}
			for i, j := lo, lo; j < hi || j < lo+len(slots) && slots[i] != 0; j++ {
				if s := slots[i]; s != 0 && mixNumber(s>>8)>>b.shift == uint64(sh) {
					ks = append(ks, s>>8)
				}
				if i++; i == len(slots) {
					i = 0
				}
			}
		}
		for _, n := range big {
			if mixNumber(n)>>b.shift == uint64(sh) {
				ks = append(ks, n)
			}
		}
		m.keys = ks
		keys += len(ks)
		b.filters[sh] = emptyFuse
		if len(ks) > 0 {
			// The keys are distinct, as the builder wants. It fails (too many iterations) with
			// a probability below that of a cosmic ray; the base then works without filters.
			if f, err := xorfilter.BuildBinaryFuse[uint8](&m.fb, ks); err == nil {
				b.filters[sh] = fuse{seed: f.Seed, segLen: f.SegmentLength, segMask: f.SegmentLengthMask, segCountLen: f.SegmentCountLength}
				fp = append(fp, f.Fingerprints...) // the builder owns f's
			} else {
				b.noFilter = true
			}
		}
		ends[sh] = len(fp)
	}
	if keys != b.n {
		panic(fmt.Sprintf("store: index: filter shards hold %d numbers, the base %d", keys, b.n))
	}
	start := 0
	for sh, end := range ends {
		if end > start {
			b.filters[sh].fp = fp[start:end:end]
		}
		start = end
	}
	b.bytes = 8*len(slots) + cap(fp) + 48*shards + sideBytes + 64
	return b
}

// emptyBase is the base of a new index.
var emptyBase = &base{filters: []fuse{emptyFuse}, shift: 64}

// fuse is a xorfilter.BinaryFuse8 and its Contains, written here so that Check calls it
// directly (the library's is generic, called through a dictionary). It follows the hashing of
// the version in go.mod; TestFuseMatchesLibrary fails if an upgrade changes it.
type fuse struct {
	seed                         uint64
	segLen, segMask, segCountLen uint32
	fp                           []uint8
}

// emptyFuse holds nothing: a probe returns true for 1 number in 256 (fingerprint 0), which
// the empty table then rejects.
var emptyFuse = fuse{segLen: 1, segCountLen: 1, fp: make([]uint8, 3)}

func (f *fuse) contains(key uint64) bool {
	h := mixNumber(key + f.seed)
	hi, _ := bits.Mul64(h, uint64(f.segCountLen))
	h0 := uint32(hi)
	h1 := h0 + f.segLen
	h2 := h1 + f.segLen
	h1 ^= uint32(h>>18) & f.segMask
	h2 ^= uint32(h) & f.segMask
	return uint8(h^h>>32)^f.fp[h0]^f.fp[h1]^f.fp[h2] == 0
}

// baseTable is a base table being built (never written once published): open addressing with
// linear probing over slots of number<<8 | low byte (0: empty; a stored low byte is never 0),
// the home slot of a number being home(mixNumber(number)). Deletion shifts the following slots back
// (no tombstones).
type baseTable struct {
	slots []uint64
	n     int
}

// home maps a hash to a slot in [0, n) (Lemire's multiply-shift).
func home(h uint64, n int) int {
	hi, _ := bits.Mul64(h, uint64(n))
	return int(hi)
}

func slotsFor(n int) int { return int(float64(n)/baseLoad) + 8 }

func findSlot(slots []uint64, number, h uint64) int {
	if len(slots) == 0 {
		return -1
	}
	for i := home(h, len(slots)); ; {
		s := slots[i]
		if s == 0 {
			return -1
		}
		if s>>8 == number {
			return i
		}
		if i++; i == len(slots) {
			i = 0
		}
	}
}

func (t *baseTable) find(number uint64) int { return findSlot(t.slots, number, mixNumber(number)) }

// upsert sets the low byte of number, or ors it into the existing one when or is set.
func (t *baseTable) upsert(number uint64, low byte, or bool) {
	if t.n+1 > int(maxLoad*float64(len(t.slots))) {
		t.resize(slotsFor(2 * (t.n + 1)))
	}
	for i := home(mixNumber(number), len(t.slots)); ; {
		s := t.slots[i]
		if s == 0 {
			t.slots[i] = number<<8 | uint64(low)
			t.n++
			return
		}
		if s>>8 == number {
			if or {
				low |= byte(s)
			}
			t.slots[i] = number<<8 | uint64(low)
			return
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

func (t *baseTable) put(number uint64, low byte) { t.upsert(number, low, false) }
func (t *baseTable) or(number uint64, low byte)  { t.upsert(number, low, true) }

func (t *baseTable) del(number uint64) {
	i := t.find(number)
	if i < 0 {
		return
	}
	t.n--
	n := len(t.slots)
	for j := i; ; {
		if j++; j == n {
			j = 0
		}
		s := t.slots[j]
		if s == 0 {
			break
		}
		// Move s into the hole at i unless its home lies cyclically in (i, j].
		k := home(mixNumber(s>>8), n)
		if i <= j && (k <= i || k > j) || i > j && k <= i && k > j {
			t.slots[i] = s
			i = j
		}
	}
	t.slots[i] = 0
}

func (t *baseTable) resize(n int) {
	old := t.slots
	t.slots = make([]uint64, n)
	for _, s := range old {
		if s == 0 {
			continue
		}
		for i := home(mixNumber(s>>8), n); ; {
			if t.slots[i] == 0 {
				t.slots[i] = s
				break
			}
			if i++; i == n {
				i = 0
			}
		}
	}
}
