package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/hashicorp/raft"
	"github.com/zeebo/xxh3"
)

// FSMConfig configures an FSM.
type FSMConfig struct {
	Dir     string  // Pebble directory of the replicated state (data_dir/raft/fsm); created if missing
	Indexer Indexer // told every change; nil: nobody is
	// ComplaintBlocks: a complaint also adds a global block of its number (unless one exists).
	// It changes what Apply writes, so it must be the same on every node of a cluster.
	ComplaintBlocks bool
	Logger          *slog.Logger
}

// Validate reports the first invalid field.
func (c *FSMConfig) Validate() error {
	if c.Dir == "" {
		return errors.New("fsm: dir is required")
	}
	return nil
}

// Indexer receives the FSM's changes: the hot-path index (store.Index) implements it.
// Both methods are called on raft's FSM goroutine, one call at a time, after the change is
// committed to Pebble; they must not call back into the FSM's Apply or Restore.
type Indexer interface {
	// Update reports the net change of one applied batch (Apply or ApplyBatch): every key whose
	// entry was created, changed or removed, each key once, in either upserts (its entry as it
	// now is) or deletes, in the order the keys were first changed in the batch. A key created
	// and removed in the same batch is not reported. The slices are the Indexer's to keep.
	Update(upserts []Entry, deletes []Key)
	// Reset replaces the whole state, after OpenFSM and after Restore: all yields every entry
	// in key order (number, kind, scope). all is valid only during the call.
	Reset(all func(yield func(Entry) bool))
}

// ApplyResult is what Apply returns for a command (raft hands it to the proposer's future).
type ApplyResult struct {
	Added   int   // entries created (an entry replaced by a changed one is not counted)
	Removed int   // entries removed
	Err     error // the command decoded but was invalid (wraps ErrInvalidCommand); nothing changed
}

// ErrRestoreFailed: a snapshot restore failed after it had begun replacing the state; the FSM
// refuses reads and Apply until a Restore succeeds (raft retries it; a restart restores the
// latest snapshot).
var ErrRestoreFailed = errors.New("store: fsm state incomplete after a failed snapshot restore")

// FSM Pebble layout (integers big-endian so keys sort by them):
//
//	'e' number(u64) kind(1) len(account)(uvarint) account sender  -> entry value
//	'x' expires(u64) number(u64) kind(1) len(account) account sender -> ""   (expiry index)
//	'n' node_id                                                   -> release version
//	'c' bucket(u64) len(account)(uvarint) account len(channel)(uvarint) channel reporter
//	                                                              -> sent(uvarint)   (sent counters)
//	'a'                                                           -> applied index (u64)
//	'V'                                                           -> format version (fsmFormat)
//
// entry value: 0x01 expires(uvarint) created(uvarint) reason source upstream (strings as
// uvarint length then bytes; times as the uint64 bit pattern of unix ms).
const (
	fsmFormat         = 1
	fsmPrefixEntry    = 'e'
	fsmPrefixExpiry   = 'x'
	fsmPrefixNode     = 'n'
	fsmKeyApplied     = 'a'
	entryValueVersion = 1
	kindSlots         = int(KindOptOut) + 1
)

// FSM is smppd's replicated recipient-protection state (blocklist, complaints, opt-outs,
// node versions, sent counters) in Pebble: raft's FSM (and BatchingFSM).
//
// Ownership: Apply, ApplyBatch, Restore and Snapshot run on raft's FSM goroutine, one at a
// time; they alone write. The read methods are safe for concurrent use with them and each
// other: they read Pebble (a consistent view per call) under mu's read lock, which Restore
// holds for writing while it replaces the state, so a reader never sees half a restore.
type FSM struct {
	cfg     FSMConfig
	log     *slog.Logger
	db      *pebble.DB
	applied atomic.Uint64 // index of the last log reflected in the state (as stored under 'a')

	mu       sync.RWMutex
	counts   [kindSlots]int    // entries per kind; guarded by mu
	versions map[string]string // node id -> release; guarded by mu
	broken   error             // set by a failed Restore; guarded by mu (written on the FSM goroutine)
	closed   bool              // guarded by mu

	tx     applier   // the FSM goroutine's scratch
	filter keyFilter // every entry key stored (and some removed since); FSM goroutine only
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// OpenFSM opens (or creates) the state in cfg.Dir and hands it to cfg.Indexer (Reset).
func OpenFSM(cfg FSMConfig) (*FSM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "fsm")
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("fsm: %w", err)
	}
	cache := pebble.NewCache(32 << 20)
	defer cache.Unref()
	// A bulk import writes faster than a small machine compacts: let L0 and the memtable queue
	// grow further than Pebble's defaults (12 sublevels, 2 memtables) before writes stall; the
	// router never reads Pebble, and Apply reads it only past its key filter.
	// (BenchmarkApplyBlockAdd, 16 logs per batch, 2 vCPU: 250-300k numbers/s with the
	// defaults, 580-830k with these.)
	opts := &pebble.Options{Logger: pebbleLogger{log}, Cache: cache, L0StopWritesThreshold: 64, MemTableStopWritesThreshold: 4, MemTableSize: 64 << 20}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10) // reads of absent keys (Get, cursor misses)
	}
	db, err := pebble.Open(filepath.Clean(cfg.Dir), opts)
	if err != nil {
		return nil, fmt.Errorf("fsm: open %s: %w", cfg.Dir, err)
	}
	f := &FSM{cfg: cfg, log: log, db: db, versions: map[string]string{}}
	if err := f.load(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("fsm: %s: %w", cfg.Dir, err)
	}
	if err := f.resetIndexer(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return f, nil
}

// load reads the applied index, node versions and entry counts.
func (f *FSM) load() error {
	if err := checkFormat(f.db, f.cfg.Dir, fsmFormat); err != nil {
		return err
	}
	v, closer, err := f.db.Get([]byte{fsmKeyApplied})
	switch {
	case err == nil:
		if len(v) != 8 {
			closer.Close()
			return fmt.Errorf("applied index holds %d bytes", len(v))
		}
		f.applied.Store(binary.BigEndian.Uint64(v))
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return err
	}
	it, err := f.db.NewIter(prefixBounds(fsmPrefixNode))
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		f.versions[string(it.Key()[1:])] = string(it.Value())
	}
	if err := closeIter(it); err != nil {
		return err
	}
	if it, err = f.db.NewIter(prefixBounds(fsmPrefixEntry)); err != nil {
		return err
	}
	n := 0
	var keys []uint64
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) < 10 || k[9] == 0 || int(k[9]) >= kindSlots {
			_ = it.Close()
			return fmt.Errorf("corrupt entry key %x", k)
		}
		f.counts[k[9]]++
		keys = append(keys, xxh3.Hash(k))
		n++
	}
	f.filter.reset(len(keys))
	for _, h := range keys {
		f.filter.add(h)
	}
	if err := closeIter(it); err != nil {
		return err
	}
	if f.applied.Load() == 0 && n > 0 {
		f.log.Warn("state has entries but no applied index: a snapshot restore was interrupted; raft restores its latest snapshot at start",
			"entries", n)
	}
	f.log.Info("fsm opened", "applied_index", f.applied.Load(), "entries", n, "nodes", len(f.versions))
	return nil
}

func closeIter(it *pebble.Iterator) error {
	err := it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return err
}

func prefixBounds(p byte) *pebble.IterOptions {
	return &pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}}
}

// resetIndexer hands the whole state to the Indexer.
func (f *FSM) resetIndexer() error {
	if f.cfg.Indexer == nil {
		return nil
	}
	snap := f.db.NewSnapshot()
	defer snap.Close()
	var err error
	f.cfg.Indexer.Reset(func(yield func(Entry) bool) {
		if err != nil {
			return
		}
		err = scanEntries(snap, nil, nil, func(e Entry) bool { return yield(e) })
	})
	if err != nil {
		return fmt.Errorf("fsm: reset index: %w", err)
	}
	return nil
}

// reader is what scans read from: the DB, a snapshot or an indexed batch.
type reader interface {
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}

// scanEntries calls fn with the entries whose keys are in [lower, upper) (nil: all), in key
// order, until fn returns false.
func scanEntries(r reader, lower, upper []byte, fn func(Entry) bool) error {
	o := prefixBounds(fsmPrefixEntry)
	if lower != nil {
		o.LowerBound = lower
	}
	if upper != nil {
		o.UpperBound = upper
	}
	it, err := r.NewIter(o)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		e, err := decodeEntry(it.Key(), it.Value())
		if err != nil {
			_ = it.Close()
			return err
		}
		if !fn(e) {
			break
		}
	}
	return closeIter(it)
}

// Close closes the Pebble DB. Raft must be shut down first (no Apply may be running).
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return f.db.Close()
}

// AppliedIndex is the index of the last Raft log reflected in the state, as stored: it is
// committed in the same Pebble batch as the changes of that log.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM: the logs' changes and the new applied index go to
// Pebble in one batch (NoSync: the Raft log is the durable record; see DESIGN.md), then the
// Indexer gets the batch's net change.
//
// A log whose index is at most AppliedIndex is already in the state and is skipped (raft
// replays logs after a restart). The result of a command is an ApplyResult; of any other log,
// nil. Apply panics when this node cannot apply a log it must (an unknown required command
// type, a payload it cannot decode, a Pebble failure): going on would make its state differ
// from the other nodes'.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	if f.broken != nil { // written only on this goroutine
		panic(fmt.Sprintf("store: fsm: apply after a failed restore (%v): restart the node", f.broken))
	}
	a := &f.tx
	a.begin(f)
	for i, l := range logs {
		if l.Index <= a.index {
			if l.Type == raft.LogCommand {
				out[i] = ApplyResult{}
			}
			continue
		}
		a.index = l.Index
		if l.Type == raft.LogCommand {
			out[i] = a.command(l)
		}
		if a.b != nil && a.b.Len() >= applyBatchBytes {
			a.flush()
		}
	}
	a.flush()
	a.tell()
	return out
}

// applyBatchBytes bounds a Pebble batch of ApplyBatch: a larger one is committed after the log
// that filled it (with that log's index), and a new one started. Pebble turns a batch over half
// its memtable into a memtable of its own, flushed at once: many such batches stall writes.
// A variable for tests.
var applyBatchBytes = 512 << 10

// applier applies the logs of an ApplyBatch to an indexed Pebble batch (so each command reads
// the writes of the ones before it, whatever the batch boundaries; a new batch is started after
// applyBatchBytes) and collects the net change for the Indexer.
type applier struct {
	f         *FSM
	b         *pebble.Batch
	start     uint64 // applied index before the batch
	committed uint64 // applied index of the last Pebble batch committed
	index     uint64 // applied index after the logs seen so far
	changes   []change
	pos       map[Key]int // key -> changes index
	counts    [kindSlots]int
	nodes     [][2]string // node versions set, in order
	cmd       uint64      // commands applied by this applier, the current one included
	cur       *pebble.Iterator
	kb, vb    []byte
	keyBuf    []byte // a bulk command's encoded keys (sortKeys)
	keyOff    []int
	order     []int
	keys      []Key
	maybe     []bool // the filter may hold the key
}

// change is the state of one key after the batch's changes so far.
type change struct {
	e       Entry  // the entry (present) or just its key
	present bool   // the key has an entry now
	before  bool   // the key had an entry when the batch began
	cmd     uint64 // the command of the batch that changed it last (applier.cmd)
}

func (a *applier) begin(f *FSM) {
	// What a panicking Apply left (in tests, which recover) is dropped, never committed.
	if a.cur != nil {
		_ = a.cur.Close()
		a.cur = nil
	}
	if a.b != nil {
		_ = a.b.Close()
		a.b = nil
	}
	a.f, a.start = f, f.applied.Load()
	a.index, a.committed = a.start, a.start
	a.changes, a.nodes, a.counts = a.changes[:0], a.nodes[:0], [kindSlots]int{}
	if a.pos == nil || len(a.pos) > 1<<16 {
		a.pos = make(map[Key]int, 1024)
	} else {
		clear(a.pos)
	}
}

func (a *applier) batch() *pebble.Batch {
	if a.b == nil {
		a.b = a.f.db.NewIndexedBatch()
	}
	return a.b
}

func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("store: fsm: pebble write failed, the state cannot follow the log: %v", err))
	}
}

func (a *applier) command(l *raft.Log) ApplyResult {
	c, err := UnmarshalCommand(l.Data)
	if err != nil {
		if c.Type.Optional() {
			a.f.log.Warn("skipped an optional command this release cannot read", "index", l.Index, "type", c.Type, "err", err)
			return ApplyResult{}
		}
		panic(fmt.Sprintf("store: fsm: raft log %d: %v: this node cannot apply the replicated log; upgrade it to the release the other nodes run", l.Index, err))
	}
	if err := c.Validate(); err != nil {
		a.f.log.Debug("invalid command", "index", l.Index, "err", err)
		return ApplyResult{Err: err}
	}
	a.cmd++
	var r ApplyResult
	switch c.Type {
	case CmdBlockAdd, CmdOptOut, CmdComplaint:
		a.openCursor()
		for j, i := range a.sortKeys(len(c.Entries), func(i int) Key { return c.Entries[i].Key }) {
			e := c.Entries[i]
			if e.Created == 0 {
				e.Created = c.Time
			}
			a.vb = appendEntryValue(a.vb[:0], &e)
			if a.write(e, a.probe(j, a.vb)) {
				r.Added++
			}
			if c.Type == CmdComplaint && a.f.cfg.ComplaintBlocks {
				bk := Key{Number: e.Number, Kind: KindBlock}
				if !a.lookup(bk, nil).found {
					a.upsert(Entry{Key: bk, Reason: e.Reason, Source: "complaint", Upstream: e.Upstream, Created: e.Created, Expires: e.Expires})
					r.Added++
				}
			}
		}
		a.closeCursor()
	case CmdBlockRemove, CmdOptOutRemove:
		a.openCursor()
		for j, i := range a.sortKeys(len(c.Keys), func(i int) Key { return c.Keys[i] }) {
			if a.del(c.Keys[i], a.probe(j, nil)) {
				r.Removed++
			}
		}
		a.closeCursor()
	case CmdExpire:
		r.Removed = a.expire(c.Cutoff, 0)
	case CmdExpireSome:
		r.Removed = a.expire(c.Cutoff, c.Limit)
	case CmdNodeVersion:
		a.nodeVersion(c.NodeID, c.Version)
	case CmdSentCounts:
		a.sentCounts(c.NodeID, c.Counts, c.Cutoff)
	}
	return r
}

// sortKeys encodes the n keys of a bulk command, asks the key filter about each, and returns
// their indexes in key order (equal keys in command order, so the last one wins). A command's
// entries are applied in that order: Pebble inserts writes in key order into its memtable a
// little faster, ascending seeks of one iterator can step instead of seek, and equal keys are
// adjacent. Already sorted input (a sorted import) is not sorted again.
func (a *applier) sortKeys(n int, key func(int) Key) []int {
	a.keyBuf, a.keyOff, a.order, a.keys, a.maybe = a.keyBuf[:0], a.keyOff[:0], a.order[:0], a.keys[:0], a.maybe[:0]
	for i := range n {
		a.keyOff = append(a.keyOff, len(a.keyBuf))
		a.keyBuf = appendEntryKey(a.keyBuf, key(i))
		a.order = append(a.order, i)
		a.keys = append(a.keys, key(i))
	}
	a.keyOff = append(a.keyOff, len(a.keyBuf))
	// The filter probes are cache misses: made in a loop of their own, they overlap.
	for i := range n {
		a.maybe = append(a.maybe, a.f.filter.mayContain(xxh3.Hash(a.cmdKey(i))))
	}
	for i := 1; i < n; i++ {
		if bytes.Compare(a.cmdKey(i-1), a.cmdKey(i)) > 0 {
			slices.SortFunc(a.order, func(x, y int) int {
				if c := bytes.Compare(a.cmdKey(x), a.cmdKey(y)); c != 0 {
					return c
				}
				return x - y
			})
			break
		}
	}
	return a.order
}

func (a *applier) cmdKey(i int) []byte { return a.keyBuf[a.keyOff[i]:a.keyOff[i+1]] }

// prior is what a key held before a change.
type prior struct {
	found   bool  // it had an entry
	same    bool  // whose stored value equals the new one
	expires int64 // and this expiry
}

func (a *applier) prior(v, val []byte) prior {
	d := decoder{b: v}
	if d.byte() != entryValueVersion {
		panic(fmt.Sprintf("store: fsm: entry %x: corrupt value %x", a.kb, v))
	}
	return prior{found: true, same: bytes.Equal(v, val), expires: int64(d.uvarint())}
}

// lookup reads k's entry as of the batch so far (a point read); it leaves k's Pebble key in
// a.kb. val is the value about to be written (nil for a removal).
func (a *applier) lookup(k Key, val []byte) prior {
	a.kb = appendEntryKey(a.kb[:0], k)
	if !a.f.filter.mayContain(xxh3.Hash(a.kb)) {
		return prior{}
	}
	v, closer, err := a.batch().Get(a.kb)
	if errors.Is(err, pebble.ErrNotFound) {
		return prior{}
	}
	must(err)
	defer closer.Close()
	return a.prior(v, val)
}

// openCursor starts a bulk command: its keys that the filter does not rule out are read
// through one iterator (opened at the first such key) instead of a point read each, with
// bloom filters on every level. The iterator sees the batch as it was when opened.
func (a *applier) openCursor() { a.cur = nil }

func (a *applier) closeCursor() {
	if a.cur != nil {
		must(closeIter(a.cur))
		a.cur = nil
	}
}

// probe is lookup for the j-th key of a bulk command in key order (sortKeys): through the
// cursor, except a key equal to the one before it (the cursor does not see that write), which
// is a point read.
func (a *applier) probe(j int, val []byte) prior {
	i := a.order[j]
	if j > 0 && bytes.Equal(a.cmdKey(a.order[j-1]), a.cmdKey(i)) {
		return a.lookup(a.keys[i], val)
	}
	a.kb = append(a.kb[:0], a.cmdKey(i)...)
	if !a.maybe[i] {
		return prior{}
	}
	if a.cur == nil {
		it, err := a.batch().NewIter(&pebble.IterOptions{LowerBound: []byte{fsmPrefixEntry}, UpperBound: []byte{fsmPrefixEntry + 1},
			UseL6Filters: true})
		must(err)
		a.cur = it
	}
	if !a.cur.SeekPrefixGE(a.kb) || !bytes.Equal(a.cur.Key(), a.kb) {
		must(a.cur.Error())
		return prior{}
	}
	v, err := a.cur.ValueAndErr()
	must(err)
	return a.prior(v, val)
}

// upsert writes e unless the same entry is stored; it reports whether the key was new.
func (a *applier) upsert(e Entry) bool {
	a.vb = appendEntryValue(a.vb[:0], &e)
	return a.write(e, a.lookup(e.Key, a.vb))
}

// write stores e (value a.vb, key a.kb) over what p says the key held; it reports whether the
// key was new.
func (a *applier) write(e Entry, p prior) bool {
	if p.same {
		return false
	}
	b := a.batch()
	if p.found && p.expires != 0 && p.expires != e.Expires {
		must(b.Delete(expiryKey(p.expires, a.kb), nil))
	}
	must(b.Set(a.kb, a.vb, nil))
	if !p.found {
		a.f.filter.add(xxh3.Hash(a.kb))
	}
	if e.Expires != 0 && (!p.found || p.expires != e.Expires) {
		must(b.Set(expiryKey(e.Expires, a.kb), nil, nil))
	}
	if !p.found {
		a.counts[e.Kind]++
	}
	a.record(e, true, p.found)
	return !p.found
}

// del deletes k's entry (key a.kb) if p says there is one.
func (a *applier) del(k Key, p prior) bool {
	if !p.found {
		return false
	}
	b := a.batch()
	if p.expires != 0 {
		must(b.Delete(expiryKey(p.expires, a.kb), nil))
	}
	must(b.Delete(a.kb, nil))
	a.counts[k.Kind]--
	a.record(Entry{Key: k}, false, true)
	return true
}

// expire removes every entry with 0 < Expires <= cutoff (at most limit of them, unless limit is
// 0), in expiry index order.
func (a *applier) expire(cutoff int64, limit int) int {
	upper := []byte{fsmPrefixExpiry + 1}
	if uint64(cutoff) < math.MaxUint64 {
		upper = binary.BigEndian.AppendUint64([]byte{fsmPrefixExpiry}, uint64(cutoff)+1)
	}
	it, err := a.batch().NewIter(&pebble.IterOptions{LowerBound: []byte{fsmPrefixExpiry}, UpperBound: upper})
	must(err)
	var keys []Key
	var last []byte
	for ok := it.First(); ok && (limit == 0 || len(keys) < limit); ok = it.Next() {
		xk := it.Key()
		k, err := parseEntryKey(append([]byte{fsmPrefixEntry}, xk[9:]...))
		if err != nil {
			panic(fmt.Sprintf("store: fsm: expiry key %x: %v", xk, err))
		}
		keys = append(keys, k)
		last = append(last[:0], xk...)
	}
	must(closeIter(it))
	if len(keys) == 0 {
		return 0
	}
	// The expiry keys taken are exactly those from the start of the index up to last: one range
	// deletion removes them. Iterators step over a range tombstone at once, whereas every later
	// expiry would step over point tombstones one by one until compaction (expiring a million
	// entries in steps took 24 µs an entry, and grew with each step).
	must(a.batch().DeleteRange([]byte{fsmPrefixExpiry}, append(last, 0), nil))
	// The entries are not read: the expiry index is written in the same batch as them, so an
	// expiry key names an entry stored with that expiry (reading each one cost a random read from
	// the tables: 14 µs an entry with a million of them).
	for _, k := range keys {
		a.kb = appendEntryKey(a.kb[:0], k)
		a.del(k, prior{found: true}) // no expiry: its key went with the range
	}
	return len(keys)
}

func (a *applier) nodeVersion(id, version string) {
	k := append([]byte{fsmPrefixNode}, id...)
	v, closer, err := a.batch().Get(k)
	if err == nil {
		same := string(v) == version
		closer.Close()
		if same {
			return
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		must(err)
	}
	must(a.batch().Set(k, []byte(version), nil))
	a.nodes = append(a.nodes, [2]string{id, version})
}

func (a *applier) record(e Entry, present, existed bool) {
	if i, ok := a.pos[e.Key]; ok {
		a.changes[i].e, a.changes[i].present, a.changes[i].cmd = e, present, a.cmd
		return
	}
	a.pos[e.Key] = len(a.changes)
	a.changes = append(a.changes, change{e: e, present: present, before: existed, cmd: a.cmd})
}

// flush commits the batch with the applied index of the last log in it (NoSync: see
// DESIGN.md) and publishes the counts, node versions and applied index.
func (a *applier) flush() {
	f := a.f
	if a.index == a.committed {
		if a.b != nil {
			_ = a.b.Close()
			a.b = nil
		}
		return
	}
	b := a.batch()
	must(b.Set([]byte{fsmKeyApplied}, binary.BigEndian.AppendUint64(nil, a.index), nil))
	must(b.Commit(pebble.NoSync))
	_ = b.Close()
	a.b, a.committed = nil, a.index
	f.mu.Lock()
	for k, d := range a.counts {
		f.counts[k] += d
	}
	for _, nv := range a.nodes {
		f.versions[nv[0]] = nv[1]
	}
	f.applied.Store(a.index)
	f.mu.Unlock()
	a.counts, a.nodes = [kindSlots]int{}, a.nodes[:0]
}

// tell gives the Indexer the net change of the whole ApplyBatch, once it is committed.
func (a *applier) tell() {
	f := a.f
	if f.cfg.Indexer == nil || len(a.changes) == 0 {
		return
	}
	nu, nd := 0, 0
	for _, c := range a.changes {
		switch {
		case c.present:
			nu++
		case c.before:
			nd++
		}
	}
	var upserts []Entry
	var deletes []Key
	if nu > 0 {
		upserts = make([]Entry, 0, nu)
	}
	if nd > 0 {
		deletes = make([]Key, 0, nd)
	}
	for _, c := range a.changes {
		switch {
		case c.present:
			upserts = append(upserts, c.e)
		case c.before:
			deletes = append(deletes, c.e.Key)
		}
	}
	if len(upserts) > 0 || len(deletes) > 0 {
		f.cfg.Indexer.Update(upserts, deletes)
	}
}

func appendEntryKey(dst []byte, k Key) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, fsmPrefixEntry), k.Number)
	dst = binary.AppendUvarint(append(dst, byte(k.Kind)), uint64(len(k.Scope.Account)))
	return append(append(dst, k.Scope.Account...), k.Scope.Sender...)
}

// expiryKey is the expiry index key of the entry stored under ek.
func expiryKey(expires int64, ek []byte) []byte {
	x := make([]byte, 0, 9+len(ek)-1)
	x = binary.BigEndian.AppendUint64(append(x, fsmPrefixExpiry), uint64(expires))
	return append(x, ek[1:]...)
}

func parseEntryKey(b []byte) (Key, error) {
	if len(b) < 11 || b[0] != fsmPrefixEntry {
		return Key{}, fmt.Errorf("corrupt entry key %x", b)
	}
	k := Key{Number: binary.BigEndian.Uint64(b[1:9]), Kind: Kind(b[9])}
	n, w := binary.Uvarint(b[10:])
	if w <= 0 || n > uint64(len(b)-10-w) {
		return Key{}, fmt.Errorf("corrupt entry key %x", b)
	}
	rest := b[10+w:]
	k.Scope.Account, k.Scope.Sender = string(rest[:n]), string(rest[n:])
	return k, nil
}

func appendEntryValue(dst []byte, e *Entry) []byte {
	dst = binary.AppendUvarint(append(dst, entryValueVersion), uint64(e.Expires))
	dst = binary.AppendUvarint(dst, uint64(e.Created))
	return appendString(appendString(appendString(dst, e.Reason), e.Source), e.Upstream)
}

func decodeEntry(k, v []byte) (Entry, error) {
	key, err := parseEntryKey(k)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Key: key}
	d := decoder{b: v}
	if ver := d.byte(); d.err == nil && ver != entryValueVersion {
		return Entry{}, fmt.Errorf("entry %x: value version %d, this release reads %d", k, ver, entryValueVersion)
	}
	e.Expires, e.Created = int64(d.uvarint()), int64(d.uvarint())
	e.Reason, e.Source, e.Upstream = d.str(""), d.str(""), d.str("")
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return Entry{}, fmt.Errorf("entry %x: corrupt value: %w", k, d.err)
	}
	return e, nil
}

// readable takes the read lock for a read method; release with f.mu.RUnlock.
func (f *FSM) readable() error {
	f.mu.RLock()
	switch {
	case f.closed:
		f.mu.RUnlock()
		return ErrClosed
	case f.broken != nil:
		f.mu.RUnlock()
		return ErrRestoreFailed
	}
	return nil
}

// Get returns k's entry.
func (f *FSM) Get(k Key) (Entry, bool, error) {
	if err := f.readable(); err != nil {
		return Entry{}, false, err
	}
	defer f.mu.RUnlock()
	ek := appendEntryKey(nil, k)
	v, closer, err := f.db.Get(ek)
	if errors.Is(err, pebble.ErrNotFound) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("fsm: get: %w", err)
	}
	defer closer.Close()
	e, err := decodeEntry(ek, v)
	return e, err == nil, err
}

// Lookup returns every entry of number, in key order (kind, scope): one prefix scan.
func (f *FSM) Lookup(number uint64) ([]Entry, error) {
	if err := f.readable(); err != nil {
		return nil, err
	}
	defer f.mu.RUnlock()
	lower := binary.BigEndian.AppendUint64([]byte{fsmPrefixEntry}, number)
	upper := []byte{fsmPrefixEntry + 1}
	if number < math.MaxUint64 {
		upper = binary.BigEndian.AppendUint64([]byte{fsmPrefixEntry}, number+1)
	}
	var out []Entry
	err := scanEntries(f.db, lower, upper, func(e Entry) bool { out = append(out, e); return true })
	return out, err
}

// List returns entries of kind (0: every kind) with numbers above after, in number order, for
// paging: at least limit entries if there are that many, and never a number's entries split
// over two pages (the last number is completed, so a page may hold more than limit); the next
// page starts after the last entry's number.
func (f *FSM) List(kind Kind, after uint64, limit int) ([]Entry, error) {
	if limit <= 0 || after == math.MaxUint64 {
		return nil, nil
	}
	if err := f.readable(); err != nil {
		return nil, err
	}
	defer f.mu.RUnlock()
	var out []Entry
	err := scanEntries(f.db, binary.BigEndian.AppendUint64([]byte{fsmPrefixEntry}, after+1), nil, func(e Entry) bool {
		if len(out) >= limit && e.Number != out[len(out)-1].Number {
			return false
		}
		if kind == 0 || e.Kind == kind {
			out = append(out, e)
		}
		return true
	})
	return out, err
}

// Export writes every entry as CSV, in key order, with a header line:
// number,kind,account,sender,reason,source,upstream,created,expires (times in unix ms, 0 for
// none; kind by name).
func (f *FSM) Export(w io.Writer) error {
	if err := f.readable(); err != nil {
		return err
	}
	snap := f.db.NewSnapshot()
	f.mu.RUnlock() // the snapshot is the consistent view; a long export does not hold up a restore
	defer snap.Close()
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"number", "kind", "account", "sender", "reason", "source", "upstream", "created", "expires"})
	rec := make([]string, 9)
	err := scanEntries(snap, nil, nil, func(e Entry) bool {
		rec[0], rec[1] = strconv.FormatUint(e.Number, 10), e.Kind.String()
		rec[2], rec[3], rec[4], rec[5], rec[6] = e.Scope.Account, e.Scope.Sender, e.Reason, e.Source, e.Upstream
		rec[7], rec[8] = strconv.FormatInt(e.Created, 10), strconv.FormatInt(e.Expires, 10)
		return cw.Write(rec) == nil
	})
	cw.Flush()
	if err == nil {
		err = cw.Error()
	}
	if err != nil {
		return fmt.Errorf("fsm: export: %w", err)
	}
	return nil
}

// Count returns the number of entries of each kind (every kind present, zeros included).
func (f *FSM) Count() (map[Kind]int, error) {
	if err := f.readable(); err != nil {
		return nil, err
	}
	defer f.mu.RUnlock()
	out := make(map[Kind]int, kindSlots-1)
	for k := KindBlock; int(k) < kindSlots; k++ {
		out[k] = f.counts[k]
	}
	return out, nil
}

// NextExpiry returns the earliest expiry time (unix ms) of an entry with a TTL, false if none
// has one: a leader proposes expiry only when something is due.
func (f *FSM) NextExpiry() (int64, bool, error) {
	if err := f.readable(); err != nil {
		return 0, false, err
	}
	defer f.mu.RUnlock()
	it, err := f.db.NewIter(prefixBounds(fsmPrefixExpiry))
	if err != nil {
		return 0, false, err
	}
	var at int64
	ok := it.First()
	if ok {
		at = int64(binary.BigEndian.Uint64(it.Key()[1:9]))
	}
	return at, ok, closeIter(it)
}

// NodeVersions returns the release each node last announced (CmdNodeVersion).
func (f *FSM) NodeVersions() map[string]string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]string, len(f.versions))
	for k, v := range f.versions {
		out[k] = v
	}
	return out
}

// StateHash returns a SHA-256 of the whole replicated state (entries, node versions, expiry
// index, sent counters: every key and value, in key order) and the applied index it reflects,
// both read from one Pebble snapshot. Two nodes at the same applied index must have the same
// hash.
func (f *FSM) StateHash() ([32]byte, uint64, error) {
	if err := f.readable(); err != nil {
		return [32]byte{}, 0, err
	}
	snap := f.db.NewSnapshot()
	f.mu.RUnlock()
	defer snap.Close()
	var applied uint64
	v, closer, err := snap.Get([]byte{fsmKeyApplied})
	switch {
	case err == nil:
		if len(v) == 8 {
			applied = binary.BigEndian.Uint64(v)
		}
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return [32]byte{}, 0, err
	}
	h := sha256.New()
	var buf []byte
	for _, p := range []byte{fsmPrefixEntry, fsmPrefixNode, fsmPrefixExpiry, fsmPrefixCounter} {
		it, err := snap.NewIter(prefixBounds(p))
		if err != nil {
			return [32]byte{}, 0, err
		}
		for ok := it.First(); ok; ok = it.Next() {
			buf = binary.AppendUvarint(buf[:0], uint64(len(it.Key())))
			buf = append(buf, it.Key()...)
			buf = binary.AppendUvarint(buf, uint64(len(it.Value())))
			h.Write(append(buf, it.Value()...))
		}
		if err := closeIter(it); err != nil {
			return [32]byte{}, 0, err
		}
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, applied, nil
}

// keyFilter is a Bloom filter of the entry keys in the state, so that Apply reads Pebble only
// for keys that may exist: a bulk add of new numbers then costs no read at all. A key removed
// from the state stays in the filter (a false positive costs one read); the filter is rebuilt
// at open and by Restore. It only saves reads: what Apply does never depends on it, since a
// key it does not contain is certainly absent.
//
// Layers: blocked Bloom filters (one 512-bit block, a cache line, per key; 6 bits set; about 10
// bits per key, ~1% false positives). The first holds twice the keys found at open (at least
// 1M: 1.25 MB); when the newest is full a new one four times its size is added; a lookup checks
// every layer, newest first.
type keyFilter struct {
	layers []filterLayer
}

type filterLayer struct {
	blocks    [][8]uint64
	n, capKey int
}

const filterBitsPerKey = 10

func (f *keyFilter) reset(keys int) {
	f.layers = f.layers[:0]
	f.grow(max(2*keys, 1<<20))
}

func (f *keyFilter) grow(capKeys int) {
	nb := max(1, capKeys*filterBitsPerKey/512)
	f.layers = append(f.layers, filterLayer{blocks: make([][8]uint64, nb), capKey: nb * 512 / filterBitsPerKey})
}

func (l *filterLayer) block(h uint64) *[8]uint64 {
	return &l.blocks[(h>>32)*uint64(len(l.blocks))>>32]
}

// bits are the six bit positions (9 bits each) in the block, from a second mix of h.
func filterBits(h uint64) uint64 { return h * 0x9e3779b97f4a7c15 }

func (f *keyFilter) add(h uint64) {
	if len(f.layers) == 0 {
		f.reset(0)
	}
	l := &f.layers[len(f.layers)-1]
	if l.n >= l.capKey {
		f.grow(4 * l.capKey)
		l = &f.layers[len(f.layers)-1]
	}
	b, bits := l.block(h), filterBits(h)
	for range 6 {
		b[bits>>6&7] |= 1 << (bits & 63)
		bits >>= 9
	}
	l.n++
}

func (f *keyFilter) mayContain(h uint64) bool {
	bits := filterBits(h)
	for i := len(f.layers) - 1; i >= 0; i-- {
		b := f.layers[i].block(h)
		ok, x := true, bits
		for range 6 {
			if b[x>>6&7]&(1<<(x&63)) == 0 {
				ok = false
				break
			}
			x >>= 9
		}
		if ok {
			return true
		}
	}
	return false
}
