package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/zeebo/xxh3"
)

// recIndexer records what the FSM tells its Indexer and keeps the index those calls build.
type recIndexer struct {
	mu      sync.Mutex
	updates []indexUpdate
	resets  int
	state   map[Key]Entry
	notify  chan struct{} // a value after every call (buffer 1: "something happened")
}

type indexUpdate struct {
	Upserts []Entry
	Deletes []Key
}

func newRecIndexer() *recIndexer {
	return &recIndexer{state: map[Key]Entry{}, notify: make(chan struct{}, 1)}
}

func (r *recIndexer) Update(upserts []Entry, deletes []Key) {
	r.mu.Lock()
	r.updates = append(r.updates, indexUpdate{upserts, deletes})
	for _, e := range upserts {
		r.state[e.Key] = e
	}
	for _, k := range deletes {
		if _, ok := r.state[k]; !ok {
			panic(fmt.Sprintf("index told to delete %+v, which it was never given", k))
		}
		delete(r.state, k)
	}
	r.mu.Unlock()
	r.poke()
}

func (r *recIndexer) Reset(all func(yield func(Entry) bool)) {
	r.mu.Lock()
	r.resets++
	r.state = map[Key]Entry{}
	all(func(e Entry) bool { r.state[e.Key] = e; return true })
	r.mu.Unlock()
	r.poke()
}

func (r *recIndexer) resetCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resets
}

func (r *recIndexer) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recIndexer) takeUpdates() []indexUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.updates
	r.updates = nil
	return u
}

// checkMirror fails unless the index the Indexer calls built equals the FSM's state.
func (r *recIndexer) checkMirror(t testing.TB, f *FSM) {
	t.Helper()
	all := allEntries(t, f)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(all) != len(r.state) {
		t.Fatalf("index holds %d entries, fsm %d", len(r.state), len(all))
	}
	for _, e := range all {
		if got, ok := r.state[e.Key]; !ok || got != e {
			t.Fatalf("index has %+v (%t) for %+v", got, ok, e)
		}
	}
}

func openFSM(t testing.TB, dir string, idx Indexer, complaintBlocks bool) *FSM {
	t.Helper()
	f, err := OpenFSM(FSMConfig{Dir: dir, Indexer: idx, ComplaintBlocks: complaintBlocks, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func cmdLog(index uint64, c Command) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: c.Marshal()}
}

func applyCmd(t testing.TB, f *FSM, index uint64, c Command) ApplyResult {
	t.Helper()
	r, ok := f.Apply(cmdLog(index, c)).(ApplyResult)
	if !ok {
		t.Fatalf("Apply of a command returned %T", f.Apply(cmdLog(index, c)))
	}
	return r
}

func allEntries(t testing.TB, f *FSM) []Entry {
	t.Helper()
	es, err := f.List(0, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func stateHash(t testing.TB, f *FSM) ([32]byte, uint64) {
	t.Helper()
	h, i, err := f.StateHash()
	if err != nil {
		t.Fatal(err)
	}
	return h, i
}

const t0 = int64(1_764_115_200_000) // 2025-11-26 00:00 UTC, unix ms

func blk(n uint64, acct, reason string, expires int64) Entry {
	return Entry{Key: Key{Number: n, Kind: KindBlock, Scope: Scope{Account: acct}}, Reason: reason, Source: "admin", Created: t0, Expires: expires}
}

func cmpl(n uint64, acct string, expires int64) Entry {
	return Entry{Key: Key{Number: n, Kind: KindComplaint, Scope: Scope{Account: acct}}, Reason: "spam", Source: "mo",
		Upstream: "orange", Created: t0, Expires: expires}
}

func opt(n uint64, sender string) Entry {
	return Entry{Key: Key{Number: n, Kind: KindOptOut, Scope: Scope{Sender: sender}}, Reason: "STOP", Source: "mo", Created: t0}
}

func add(es ...Entry) Command      { return Command{Type: CmdBlockAdd, Time: t0, Entries: es} }
func complain(es ...Entry) Command { return Command{Type: CmdComplaint, Time: t0, Entries: es} }
func optOut(es ...Entry) Command   { return Command{Type: CmdOptOut, Time: t0, Entries: es} }
func unblock(ks ...Key) Command    { return Command{Type: CmdBlockRemove, Time: t0, Keys: ks} }
func optIn(ks ...Key) Command      { return Command{Type: CmdOptOutRemove, Time: t0, Keys: ks} }
func expire(cutoff int64) Command  { return Command{Type: CmdExpire, Time: cutoff, Cutoff: cutoff} }

func TestFSMCommands(t *testing.T) {
	a, b, c := blk(100, "", "fraud", 0), blk(100, "acme", "fraud", 0), blk(200, "", "", t0+10)
	a0 := a
	a0.Created = 0 // takes the command's time
	a2 := a
	a2.Reason = "fraud, confirmed"
	comp := cmpl(300, "acme", t0+50)
	compBlock := Entry{Key: Key{Number: 300, Kind: KindBlock}, Reason: "spam", Source: "complaint", Upstream: "orange", Created: t0, Expires: t0 + 50}
	adminBlock := blk(300, "", "admin says", 0)
	o := opt(400, "SHOP")
	x, y, z, w := blk(500, "", "", t0+10), blk(501, "", "", t0+20), blk(502, "", "", 0), cmpl(600, "", t0+10)
	x30 := x
	x30.Expires = t0 + 30
	for _, tc := range []struct {
		name            string
		complaintBlocks bool
		cmds            []Command
		results         []ApplyResult
		state           []Entry
		updates         []indexUpdate
		nodes           map[string]string
	}{
		{
			name:    "block add and remove",
			cmds:    []Command{add(a0, b, c), unblock(a.Key, Key{Number: 999, Kind: KindBlock})},
			results: []ApplyResult{{Added: 3}, {Removed: 1}},
			state:   []Entry{b, c},
			updates: []indexUpdate{{Upserts: []Entry{a, b, c}}, {Deletes: []Key{a.Key}}},
		},
		{
			name:    "re-adding the same entry changes nothing; a changed one is replaced",
			cmds:    []Command{add(a), add(a), add(a2)},
			results: []ApplyResult{{Added: 1}, {}, {}},
			state:   []Entry{a2},
			updates: []indexUpdate{{Upserts: []Entry{a}}, {Upserts: []Entry{a2}}},
		},
		{
			name:    "complaint without the policy",
			cmds:    []Command{complain(comp)},
			results: []ApplyResult{{Added: 1}},
			state:   []Entry{comp},
			updates: []indexUpdate{{Upserts: []Entry{comp}}},
		},
		{
			name:            "complaint with the policy also blocks globally",
			complaintBlocks: true,
			cmds:            []Command{complain(comp)},
			results:         []ApplyResult{{Added: 2}},
			state:           []Entry{compBlock, comp},
			updates:         []indexUpdate{{Upserts: []Entry{comp, compBlock}}},
		},
		{
			name:            "complaint keeps an existing global block",
			complaintBlocks: true,
			cmds:            []Command{add(adminBlock), complain(comp)},
			results:         []ApplyResult{{Added: 1}, {Added: 1}},
			state:           []Entry{adminBlock, comp},
			updates:         []indexUpdate{{Upserts: []Entry{adminBlock}}, {Upserts: []Entry{comp}}},
		},
		{
			name:    "opt-out and back in",
			cmds:    []Command{optOut(o), optIn(o.Key), optIn(o.Key)},
			results: []ApplyResult{{Added: 1}, {Removed: 1}, {}},
			state:   nil,
			updates: []indexUpdate{{Upserts: []Entry{o}}, {Deletes: []Key{o.Key}}},
		},
		{
			name:    "block remove clears a complaint",
			cmds:    []Command{complain(comp), unblock(comp.Key)},
			results: []ApplyResult{{Added: 1}, {Removed: 1}},
			updates: []indexUpdate{{Upserts: []Entry{comp}}, {Deletes: []Key{comp.Key}}},
		},
		{
			name:    "expire by the proposer's time",
			cmds:    []Command{add(x, y, z), complain(w), expire(t0 + 9), expire(t0 + 10)},
			results: []ApplyResult{{Added: 3}, {Added: 1}, {}, {Removed: 2}},
			state:   []Entry{y, z},
			updates: []indexUpdate{{Upserts: []Entry{x, y, z}}, {Upserts: []Entry{w}}, {Deletes: []Key{x.Key, w.Key}}},
		},
		{
			name:    "a changed expiry moves in the expiry index",
			cmds:    []Command{add(x), add(x30), expire(t0 + 20), expire(t0 + 30)},
			results: []ApplyResult{{Added: 1}, {}, {}, {Removed: 1}},
			updates: []indexUpdate{{Upserts: []Entry{x}}, {Upserts: []Entry{x30}}, {Deletes: []Key{x.Key}}},
		},
		{
			name:    "an entry made permanent is not expired",
			cmds:    []Command{add(x), add(blk(500, "", "", 0)), expire(t0 + 100)},
			results: []ApplyResult{{Added: 1}, {}, {}},
			state:   []Entry{blk(500, "", "", 0)},
			updates: []indexUpdate{{Upserts: []Entry{x}}, {Upserts: []Entry{blk(500, "", "", 0)}}},
		},
		{
			name: "an invalid command changes nothing",
			cmds: []Command{
				add(opt(1, "")),
				{Type: CmdBlockAdd, Entries: []Entry{a}},
				add(a),
			},
			results: []ApplyResult{{Err: ErrInvalidCommand}, {Err: ErrInvalidCommand}, {Added: 1}},
			state:   []Entry{a},
			updates: []indexUpdate{{Upserts: []Entry{a}}},
		},
		{
			name: "node versions",
			cmds: []Command{
				{Type: CmdNodeVersion, Time: t0, NodeID: "n1", Version: "v1.0.0"},
				{Type: CmdNodeVersion, Time: t0, NodeID: "n2", Version: "v1.0.0"},
				{Type: CmdNodeVersion, Time: t0 + 1, NodeID: "n1", Version: "v1.1.0"},
			},
			results: []ApplyResult{{}, {}, {}},
			nodes:   map[string]string{"n1": "v1.1.0", "n2": "v1.0.0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx := newRecIndexer()
			f := openFSM(t, t.TempDir(), idx, tc.complaintBlocks)
			idx.takeUpdates()
			for i, c := range tc.cmds {
				r := applyCmd(t, f, uint64(i+1), c)
				want := tc.results[i]
				if r.Added != want.Added || r.Removed != want.Removed || (want.Err == nil) != (r.Err == nil) ||
					want.Err != nil && !errors.Is(r.Err, want.Err) {
					t.Fatalf("command %d (%s): result %+v, want %+v", i, c.Type, r, want)
				}
			}
			if got := allEntries(t, f); !reflect.DeepEqual(got, tc.state) {
				t.Fatalf("state:\n got %+v\nwant %+v", got, tc.state)
			}
			if got := idx.takeUpdates(); !reflect.DeepEqual(got, tc.updates) {
				t.Fatalf("indexer updates:\n got %+v\nwant %+v", got, tc.updates)
			}
			idx.checkMirror(t, f)
			if got := f.AppliedIndex(); got != uint64(len(tc.cmds)) {
				t.Fatalf("AppliedIndex %d, want %d", got, len(tc.cmds))
			}
			counts, err := f.Count()
			if err != nil {
				t.Fatal(err)
			}
			want := map[Kind]int{KindBlock: 0, KindComplaint: 0, KindOptOut: 0}
			for _, e := range tc.state {
				want[e.Kind]++
			}
			if !reflect.DeepEqual(counts, want) {
				t.Fatalf("Count %v, want %v", counts, want)
			}
			if tc.nodes == nil {
				tc.nodes = map[string]string{}
			}
			if got := f.NodeVersions(); !reflect.DeepEqual(got, tc.nodes) {
				t.Fatalf("NodeVersions %v, want %v", got, tc.nodes)
			}
		})
	}
}

// TestFSMIdempotent: a log at or below AppliedIndex (raft replaying after a restart) changes
// nothing, alone or inside a batch.
func TestFSMIdempotent(t *testing.T) {
	idx := newRecIndexer()
	f := openFSM(t, t.TempDir(), idx, false)
	for i, c := range []Command{add(blk(1, "", "", 0)), add(blk(2, "", "", 0)), add(blk(3, "", "", 0))} {
		applyCmd(t, f, uint64(i+1), c)
	}
	before, _ := stateHash(t, f)
	idx.takeUpdates()
	if r := applyCmd(t, f, 2, unblock(Key{Number: 1, Kind: KindBlock})); r != (ApplyResult{}) {
		t.Fatalf("re-applied index 2: %+v", r)
	}
	if r := applyCmd(t, f, 3, add(blk(9, "", "", 0))); r != (ApplyResult{}) {
		t.Fatalf("re-applied index 3: %+v", r)
	}
	if h, applied := stateHash(t, f); h != before || applied != 3 {
		t.Fatalf("re-applied logs changed the state (applied %d)", applied)
	}
	out := f.ApplyBatch([]*raft.Log{
		cmdLog(2, unblock(Key{Number: 2, Kind: KindBlock})),
		cmdLog(3, unblock(Key{Number: 3, Kind: KindBlock})),
		cmdLog(4, unblock(Key{Number: 3, Kind: KindBlock})),
	})
	if !reflect.DeepEqual(out, []interface{}{ApplyResult{}, ApplyResult{}, ApplyResult{Removed: 1}}) {
		t.Fatalf("batch across the applied index: %+v", out)
	}
	if got := allEntries(t, f); len(got) != 2 || got[0].Number != 1 || got[1].Number != 2 {
		t.Fatalf("state %+v, want numbers 1 and 2", got)
	}
	if got := idx.takeUpdates(); !reflect.DeepEqual(got, []indexUpdate{{Deletes: []Key{{Number: 3, Kind: KindBlock}}}}) {
		t.Fatalf("updates %+v", got)
	}
	if f.AppliedIndex() != 4 {
		t.Fatalf("AppliedIndex %d, want 4", f.AppliedIndex())
	}
}

func TestFSMUnknownCommands(t *testing.T) {
	f := openFSM(t, t.TempDir(), newRecIndexer(), false)
	applyCmd(t, f, 1, add(blk(1, "", "", 0)))
	before, _ := stateHash(t, f)
	for _, tc := range []struct {
		name string
		data []byte
		msg  string // "" = skipped
	}{
		{"unknown required type", []byte{0x09, 1, 1, 2, 3}, "upgrade it"},
		{"required type, newer payload", []byte{byte(CmdBlockAdd), CommandVersion + 1, 1}, "newer than this release"},
		{"required type, garbage", []byte{byte(CmdBlockAdd), 1, 1, 5}, "malformed"},
		{"unknown optional type", []byte{0x87, 1, 1, 0xff, 0xff}, ""},
		{"optional type, newer payload", []byte{byte(CmdNodeVersion), CommandVersion + 1, 9}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			index := f.AppliedIndex() + 1
			var got any
			var panicked any
			func() {
				defer func() { panicked = recover() }()
				got = f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: tc.data})
			}()
			if tc.msg != "" {
				if panicked == nil || !strings.Contains(fmt.Sprint(panicked), tc.msg) {
					t.Fatalf("Apply did not panic saying %q: %v (result %v)", tc.msg, panicked, got)
				}
				if f.AppliedIndex() != index-1 {
					t.Fatalf("AppliedIndex moved to %d past a log that was not applied", f.AppliedIndex())
				}
				return
			}
			if panicked != nil {
				t.Fatalf("optional command panicked: %v", panicked)
			}
			if got != (ApplyResult{}) || f.AppliedIndex() != index {
				t.Fatalf("skipped optional command: result %+v, AppliedIndex %d (want %d)", got, f.AppliedIndex(), index)
			}
		})
	}
	if h, _ := stateHash(t, f); h != before {
		t.Fatal("unknown commands changed the state")
	}
	// A batch that panics part way commits nothing of itself, and the next one starts clean.
	index := f.AppliedIndex() + 1
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		f.ApplyBatch([]*raft.Log{cmdLog(index, add(blk(50, "", "", 0))), {Index: index + 1, Type: raft.LogCommand, Data: []byte{0x09, 1}}})
	}()
	applyCmd(t, f, index, add(blk(51, "", "", 0)))
	if _, ok, _ := f.Get(Key{Number: 50, Kind: KindBlock}); ok {
		t.Fatal("a write of the batch that panicked was committed")
	}
	if _, ok, _ := f.Get(Key{Number: 51, Kind: KindBlock}); !ok || f.AppliedIndex() != index {
		t.Fatalf("apply after a panicked batch: found %t, applied %d", ok, f.AppliedIndex())
	}
}

// fsmScript is a deterministic mix of every command (seeded), with configuration logs
// between, for tests that compare states reached in different ways.
func fsmScript(seed uint64, n int) []*raft.Log {
	rng := rand.New(rand.NewPCG(seed, 1))
	num := func() uint64 { return 49_151_000_0000 + uint64(rng.IntN(300)) }
	exp := func() int64 {
		if rng.IntN(2) == 0 {
			return 0
		}
		return t0 + int64(rng.IntN(1000))
	}
	accts := []string{"", "", "acme", "beta"}
	var logs []*raft.Log
	now := t0
	for i := range n {
		now += int64(rng.IntN(20))
		var c Command
		switch r := rng.IntN(22); {
		case r < 6:
			c = Command{Type: CmdBlockAdd, Time: now}
			for range 1 + rng.IntN(30) {
				c.Entries = append(c.Entries, Entry{Key: Key{Number: num(), Kind: KindBlock, Scope: Scope{Account: accts[rng.IntN(4)]}},
					Reason: fmt.Sprintf("r%d", rng.IntN(3)), Expires: exp()})
			}
		case r < 9:
			c = Command{Type: CmdComplaint, Time: now}
			for range 1 + rng.IntN(5) {
				c.Entries = append(c.Entries, Entry{Key: Key{Number: num(), Kind: KindComplaint, Scope: Scope{Account: accts[rng.IntN(4)]}},
					Upstream: "op", Expires: exp()})
			}
		case r < 11:
			c = Command{Type: CmdOptOut, Time: now}
			for range 1 + rng.IntN(5) {
				c.Entries = append(c.Entries, Entry{Key: Key{Number: num(), Kind: KindOptOut, Scope: Scope{Sender: "S" + accts[rng.IntN(4)]}}})
			}
		case r < 14:
			c = Command{Type: CmdBlockRemove, Time: now}
			for range 1 + rng.IntN(20) {
				c.Keys = append(c.Keys, Key{Number: num(), Kind: KindBlock + Kind(rng.IntN(2)), Scope: Scope{Account: accts[rng.IntN(4)]}})
			}
		case r < 15:
			c = Command{Type: CmdOptOutRemove, Time: now}
			for range 1 + rng.IntN(5) {
				c.Keys = append(c.Keys, Key{Number: num(), Kind: KindOptOut, Scope: Scope{Sender: "S" + accts[rng.IntN(4)]}})
			}
		case r < 16:
			c = Command{Type: CmdExpire, Time: now, Cutoff: t0 + int64(rng.IntN(1000))}
		case r < 17:
			c = Command{Type: CmdExpireSome, Time: now, Cutoff: t0 + int64(rng.IntN(1000)), Limit: 1 + rng.IntN(8)}
		case r < 18:
			c = Command{Type: CmdNodeVersion, Time: now, NodeID: fmt.Sprintf("n%d", rng.IntN(3)), Version: fmt.Sprintf("v1.%d", rng.IntN(5))}
		case r < 19:
			c = Command{Type: CmdBlockAdd, Time: now, Entries: []Entry{{Key: Key{Number: 0, Kind: KindBlock}}}} // invalid
		case r < 21:
			c = sentCountsScript(rng, now)
		default:
			logs = append(logs, &raft.Log{Index: uint64(len(logs) + 1), Term: 1, Type: raft.LogConfiguration, Data: []byte{byte(i)}})
			continue
		}
		logs = append(logs, cmdLog(uint64(len(logs)+1), c))
	}
	return logs
}

// sentCountsScript is a random CmdSentCounts of fsmScript: few buckets, accounts, channels and
// reporters, so that reports meet (repeated, stale, raised) and prunes remove some; a few are
// invalid (no channel).
func sentCountsScript(rng *rand.Rand, now int64) Command {
	c := Command{Type: CmdSentCounts, Time: now, NodeID: fmt.Sprintf("n%d@%d", rng.IntN(3), t0-int64(rng.IntN(2)))}
	if rng.IntN(4) == 0 {
		c.Cutoff = t0 + int64(rng.IntN(8))*10_000
	}
	for range 1 + rng.IntN(6) {
		s := SentCount{Bucket: t0 + int64(rng.IntN(10))*10_000, Account: []string{"", "acme", "beta"}[rng.IntN(3)],
			Channel: []string{"orange", "tmobile", "vodafone"}[rng.IntN(3)], Sent: uint64(rng.IntN(50))}
		if rng.IntN(40) == 0 {
			s.Channel = "" // invalid
		}
		c.Counts = append(c.Counts, s)
	}
	return c
}

// TestFSMBatchBoundaries: the state depends on the log only, not on how raft batches it (a
// follower's batches differ from the leader's): one at a time, all at once and in uneven
// batches give the same StateHash, and each Indexer ends up with the state.
func TestFSMBatchBoundaries(t *testing.T) {
	for _, complaintBlocks := range []bool{false, true} {
		t.Run(fmt.Sprintf("complaintBlocks=%t", complaintBlocks), func(t *testing.T) {
			logs := fsmScript(7, 400)
			var hashes [][32]byte
			for _, sizes := range [][]int{{1}, {len(logs)}, {3, 7, 1, 50}} {
				idx := newRecIndexer()
				f := openFSM(t, t.TempDir(), idx, complaintBlocks)
				for i, k := 0, 0; i < len(logs); k++ {
					n := min(sizes[k%len(sizes)], len(logs)-i)
					out := f.ApplyBatch(logs[i : i+n])
					for j, r := range out {
						if (logs[i+j].Type == raft.LogCommand) != (r != nil) {
							t.Fatalf("log %d (%s): result %v", logs[i+j].Index, logs[i+j].Type, r)
						}
					}
					i += n
				}
				h, applied := stateHash(t, f)
				if applied != uint64(len(logs)) {
					t.Fatalf("batches %v: applied %d, want %d", sizes, applied, len(logs))
				}
				idx.checkMirror(t, f)
				hashes = append(hashes, h)
				if len(allEntries(t, f)) == 0 {
					t.Fatal("the script left no state: the comparison proves nothing")
				}
			}
			if hashes[0] != hashes[1] || hashes[0] != hashes[2] {
				t.Fatalf("batching changed the state: %x %x %x", hashes[0][:4], hashes[1][:4], hashes[2][:4])
			}
		})
	}
}

// TestFSMBatchNetChange: within one batch the Indexer gets each key once, as it ends up.
func TestFSMBatchNetChange(t *testing.T) {
	idx := newRecIndexer()
	f := openFSM(t, t.TempDir(), idx, false)
	keep, gone, both := blk(1, "", "", 0), blk(2, "", "", 0), blk(3, "", "", t0+5)
	applyCmd(t, f, 1, add(gone))
	idx.takeUpdates()
	keep2 := keep
	keep2.Reason = "second"
	f.ApplyBatch([]*raft.Log{
		cmdLog(2, add(keep, both)),
		cmdLog(3, unblock(gone.Key)),
		cmdLog(4, add(keep2)),
		cmdLog(5, expire(t0+5)), // removes both, added in this batch
	})
	want := []indexUpdate{{Upserts: []Entry{keep2}, Deletes: []Key{gone.Key}}}
	if got := idx.takeUpdates(); !reflect.DeepEqual(got, want) {
		t.Fatalf("updates\n got %+v\nwant %+v", got, want)
	}
	idx.checkMirror(t, f)
}

// model is the FSM's semantics written as plainly as possible, to check Apply against.
type model struct {
	entries         map[Key]Entry
	nodes           map[string]string
	counters        map[reportedCount]uint64 // Sent 0 in the key
	complaintBlocks bool
}

func (m *model) apply(l *raft.Log) {
	if l.Type != raft.LogCommand {
		return
	}
	c, err := UnmarshalCommand(l.Data)
	if err != nil || c.Validate() != nil {
		return
	}
	// A command's entries apply in key order, equal keys in command order.
	ek := func(k Key) string { return string(appendEntryKey(nil, k)) }
	switch c.Type {
	case CmdBlockAdd, CmdComplaint, CmdOptOut:
		es := slices.Clone(c.Entries)
		slices.SortStableFunc(es, func(a, b Entry) int { return strings.Compare(ek(a.Key), ek(b.Key)) })
		for _, e := range es {
			if e.Created == 0 {
				e.Created = c.Time
			}
			m.entries[e.Key] = e
			bk := Key{Number: e.Number, Kind: KindBlock}
			if _, ok := m.entries[bk]; c.Type == CmdComplaint && m.complaintBlocks && !ok {
				m.entries[bk] = Entry{Key: bk, Reason: e.Reason, Source: "complaint", Upstream: e.Upstream, Created: e.Created, Expires: e.Expires}
			}
		}
	case CmdBlockRemove, CmdOptOutRemove:
		for _, k := range c.Keys {
			delete(m.entries, k)
		}
	case CmdExpire:
		for k, e := range m.entries {
			if e.Expires != 0 && e.Expires <= c.Cutoff {
				delete(m.entries, k)
			}
		}
	case CmdExpireSome: // the Limit first in expiry index order: expiry time, then entry key
		var due []Entry
		for _, e := range m.entries {
			if e.Expires != 0 && e.Expires <= c.Cutoff {
				due = append(due, e)
			}
		}
		slices.SortFunc(due, func(a, b Entry) int {
			if a.Expires != b.Expires {
				return cmp.Compare(a.Expires, b.Expires)
			}
			return bytes.Compare(appendEntryKey(nil, a.Key), appendEntryKey(nil, b.Key))
		})
		for _, e := range due[:min(len(due), c.Limit)] {
			delete(m.entries, e.Key)
		}
	case CmdNodeVersion:
		m.nodes[c.NodeID] = c.Version
	case CmdSentCounts:
		for _, s := range c.Counts {
			k := reportedCount{SentCount{Bucket: s.Bucket, Account: s.Account, Channel: s.Channel}, c.NodeID}
			if v, ok := m.counters[k]; !ok || s.Sent > v {
				m.counters[k] = s.Sent
			}
		}
		for k := range m.counters {
			if k.Bucket < c.Cutoff {
				delete(m.counters, k)
			}
		}
	}
}

func (m *model) check(t testing.TB, f *FSM) {
	t.Helper()
	got := allEntries(t, f)
	if len(got) != len(m.entries) {
		t.Fatalf("fsm has %d entries, the model %d", len(got), len(m.entries))
	}
	for _, e := range got {
		if want, ok := m.entries[e.Key]; !ok || want != e {
			t.Fatalf("fsm has %+v, the model %+v (%t)", e, want, ok)
		}
	}
	if !reflect.DeepEqual(f.NodeVersions(), m.nodes) {
		t.Fatalf("node versions %v, the model's %v", f.NodeVersions(), m.nodes)
	}
	counts, _ := f.Count()
	want := map[Kind]int{KindBlock: 0, KindComplaint: 0, KindOptOut: 0}
	for _, e := range m.entries {
		want[e.Kind]++
	}
	if !reflect.DeepEqual(counts, want) {
		t.Fatalf("Count %v, the model's %v", counts, want)
	}
	got2 := sentCounts(t, f, 0)
	if len(got2) != len(m.counters) {
		t.Fatalf("fsm has %d sent counters, the model %d", len(got2), len(m.counters))
	}
	for _, c := range got2 {
		sent := c.Sent
		c.Sent = 0
		if want, ok := m.counters[c]; !ok || want != sent {
			t.Fatalf("fsm has counter %+v = %d, the model %d (%t)", c, sent, want, ok)
		}
	}
}

// TestFSMModel: the FSM agrees with the model over a long script (duplicates within and across
// commands, every command type), applied in uneven batches, across a restart and a snapshot
// restore into a fresh directory (so the key filter is rebuilt both ways).
func TestFSMModel(t *testing.T) {
	for _, complaintBlocks := range []bool{false, true} {
		t.Run(fmt.Sprintf("complaintBlocks=%t", complaintBlocks), func(t *testing.T) {
			if complaintBlocks { // also commit an ApplyBatch in several Pebble batches
				defer func(n int) { applyBatchBytes = n }(applyBatchBytes)
				applyBatchBytes = 512
			}
			m := &model{entries: map[Key]Entry{}, nodes: map[string]string{}, counters: map[reportedCount]uint64{}, complaintBlocks: complaintBlocks}
			logs := fsmScript(uint64(99+len(fmt.Sprint(complaintBlocks))), 1500)
			dir := t.TempDir()
			idx := newRecIndexer()
			f := openFSM(t, dir, idx, complaintBlocks)
			sizes := []int{1, 5, 2, 40, 3}
			for i, k := 0, 0; i < len(logs); k++ {
				n := min(sizes[k%len(sizes)], len(logs)-i)
				f.ApplyBatch(logs[i : i+n])
				for _, l := range logs[i : i+n] {
					m.apply(l)
				}
				i += n
				switch k {
				case 60: // restart
					if err := f.Close(); err != nil {
						t.Fatal(err)
					}
					idx = newRecIndexer()
					f = openFSM(t, dir, idx, complaintBlocks)
				case 120: // move to a fresh directory by snapshot
					data := snapshotBytes(t, f)
					idx = newRecIndexer()
					f = openFSM(t, t.TempDir(), idx, complaintBlocks)
					if err := restore(f, data); err != nil {
						t.Fatal(err)
					}
				}
				if k%20 == 0 {
					m.check(t, f)
					idx.checkMirror(t, f)
				}
			}
			m.check(t, f)
			idx.checkMirror(t, f)
			if len(m.entries) == 0 || len(m.counters) == 0 {
				t.Fatal("the script left no state")
			}
		})
	}
}

func TestKeyFilter(t *testing.T) {
	var f keyFilter
	f.grow(4096) // a small first layer (reset's is 1M keys): layers of 4k, 16k, 64k, 256k keys
	const n = 100_000
	for i := range uint64(n) {
		f.add(xxh3.Hash(binary.BigEndian.AppendUint64(nil, i)))
	}
	if len(f.layers) != 4 {
		t.Fatalf("%d layers for %d keys, want 4", len(f.layers), n)
	}
	for i := range uint64(n) {
		if !f.mayContain(xxh3.Hash(binary.BigEndian.AppendUint64(nil, i))) {
			t.Fatalf("key %d added but not found: a false negative would skip a read Apply needs", i)
		}
	}
	fp := 0
	for i := range uint64(100_000) {
		if f.mayContain(xxh3.Hash(binary.BigEndian.AppendUint64(nil, n+i))) {
			fp++
		}
	}
	if fp > 8_000 { // four layers of ~1-2% each
		t.Fatalf("%d false positives in 100000 absent keys", fp)
	}
	t.Logf("false positives: %.2f%% over %d layers", float64(fp)/1000, len(f.layers))
}

type bufSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *bufSink) ID() string    { return "test" }
func (s *bufSink) Cancel() error { s.cancelled = true; return nil }
func (s *bufSink) Close() error  { s.closed = true; return nil }

func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("Persist left the sink closed=%t cancelled=%t", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func restore(f *FSM, b []byte) error { return f.Restore(io.NopCloser(bytes.NewReader(b))) }

func TestFSMSnapshotRestore(t *testing.T) {
	src := openFSM(t, t.TempDir(), nil, true)
	logs := fsmScript(11, 300)
	src.ApplyBatch(logs)
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Apply after Snapshot: Persist still writes the state as of Snapshot.
	hSnap, iSnap := stateHash(t, src)
	applyCmd(t, src, uint64(len(logs)+1), add(blk(12345, "", "after", 0)))
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	data := sink.Bytes()

	idx := newRecIndexer()
	dst := openFSM(t, t.TempDir(), idx, true)
	applyCmd(t, dst, 1, add(blk(777, "", "to be replaced", 0)))
	if err := restore(dst, data); err != nil {
		t.Fatal(err)
	}
	if h, i := stateHash(t, dst); h != hSnap || i != iSnap {
		t.Fatalf("restored state differs: applied %d, want %d", i, iSnap)
	}
	if idx.resetCount() != 2 {
		t.Fatalf("Indexer reset %d times, want 2 (open, restore)", idx.resetCount())
	}
	idx.checkMirror(t, dst)
	if _, ok, _ := dst.Get(Key{Number: 777, Kind: KindBlock}); ok {
		t.Fatal("an entry from before the restore survived it")
	}
	srcCounts, _ := src.Count()
	srcCounts[KindBlock]-- // the entry added after the snapshot
	if c, _ := dst.Count(); !reflect.DeepEqual(c, srcCounts) {
		t.Fatalf("Count after restore %v, want %v", c, srcCounts)
	}
	if !reflect.DeepEqual(dst.NodeVersions(), src.NodeVersions()) || len(dst.NodeVersions()) == 0 {
		t.Fatalf("node versions %v, want %v", dst.NodeVersions(), src.NodeVersions())
	}
	// The restored expiry index works: expiring everything leaves only permanent entries.
	applyCmd(t, dst, iSnap+1, expire(t0+10_000))
	for _, e := range allEntries(t, dst) {
		if e.Expires != 0 {
			t.Fatalf("entry %+v survived expiry after restore", e)
		}
	}
	// A snapshot at or below the applied index is already in the state: kept, not reread.
	hBefore, iBefore := stateHash(t, dst)
	if err := restore(dst, data); err != nil {
		t.Fatal(err)
	}
	if h, i := stateHash(t, dst); h != hBefore || i != iBefore || idx.resetCount() != 2 {
		t.Fatalf("an older snapshot replaced the state (resets %d)", idx.resetCount())
	}
}

func TestFSMRestoreCorrupt(t *testing.T) {
	src := openFSM(t, t.TempDir(), nil, false)
	src.ApplyBatch(fsmScript(3, 200))
	good := snapshotBytes(t, src)
	want, _ := stateHash(t, src)
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x40; return b }
	for _, tc := range []struct {
		name    string
		data    []byte
		touched bool // the state was being replaced when the error was found
		msg     string
	}{
		{"bad magic", flip(0), false, "not an smppd fsm snapshot"},
		{"newer format", append(append([]byte(snapMagic), 9), good[len(snapMagic)+1:]...), false, "newer than this release"},
		{"empty", nil, false, "truncated"},
		{"flipped byte in an entry", flip(len(good) / 2), true, ""},
		{"flipped checksum", flip(len(good) - 1), true, "checksum mismatch"},
		{"truncated", good[:len(good)-10], true, ""},
		{"trailing bytes", append(bytes.Clone(good), 0), true, "after the checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := openFSM(t, t.TempDir(), newRecIndexer(), false)
			applyCmd(t, f, 1, add(blk(42, "", "", 0)))
			err := restore(f, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Restore = %v, want an error saying %q", err, tc.msg)
			}
			if tc.touched {
				if !errors.Is(err, ErrSnapshotCorrupt) {
					t.Fatalf("Restore = %v, want ErrSnapshotCorrupt", err)
				}
				if _, _, err := f.Get(Key{Number: 42, Kind: KindBlock}); !errors.Is(err, ErrRestoreFailed) {
					t.Fatalf("Get after a failed restore = %v, want ErrRestoreFailed", err)
				}
				func() {
					defer func() {
						if recover() == nil {
							t.Fatal("Apply after a failed restore did not panic")
						}
					}()
					f.Apply(cmdLog(2, add(blk(43, "", "", 0))))
				}()
			} else if _, ok, err := f.Get(Key{Number: 42, Kind: KindBlock}); !ok || err != nil {
				t.Fatalf("a snapshot refused at its header changed the state: %v", err)
			}
			if err := restore(f, good); err != nil {
				t.Fatalf("a good snapshot after a failed one: %v", err)
			}
			if h, _ := stateHash(t, f); h != want {
				t.Fatal("state after the good restore differs")
			}
		})
	}
}

func TestFSMRestart(t *testing.T) {
	dir := t.TempDir()
	f, err := OpenFSM(FSMConfig{Dir: dir, Logger: slog.New(slog.DiscardHandler), ComplaintBlocks: true})
	if err != nil {
		t.Fatal(err)
	}
	logs := fsmScript(5, 200)
	f.ApplyBatch(logs)
	h, applied := stateHash(t, f)
	counts, _ := f.Count()
	nodes := f.NodeVersions()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Get(Key{Number: 1, Kind: KindBlock}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v", err)
	}

	idx := newRecIndexer()
	f = openFSM(t, dir, idx, true)
	if f.AppliedIndex() != applied || applied != uint64(len(logs)) {
		t.Fatalf("AppliedIndex after restart %d, want %d", f.AppliedIndex(), applied)
	}
	if h2, _ := stateHash(t, f); h2 != h {
		t.Fatal("state changed across the restart")
	}
	if c, _ := f.Count(); !reflect.DeepEqual(c, counts) {
		t.Fatalf("Count after restart %v, want %v", c, counts)
	}
	if !reflect.DeepEqual(f.NodeVersions(), nodes) {
		t.Fatalf("NodeVersions after restart %v, want %v", f.NodeVersions(), nodes)
	}
	if idx.resetCount() != 1 {
		t.Fatalf("Indexer reset %d times at open, want 1", idx.resetCount())
	}
	idx.checkMirror(t, f)
	// raft replays the log from its last snapshot: nothing is applied twice.
	f.ApplyBatch(logs)
	if h2, _ := stateHash(t, f); h2 != h || len(idx.takeUpdates()) != 0 {
		t.Fatal("replaying the log after a restart changed the state")
	}
}

func TestFSMReads(t *testing.T) {
	f := openFSM(t, t.TempDir(), nil, false)
	e1 := blk(4915100000001, "", "fraud", 0)
	e2 := blk(4915100000001, "acme", "a, \"quoted\" reason", t0+99)
	e3 := opt(4915100000001, "SHOP")
	e4 := cmpl(4915100000002, "", 0)
	e5 := blk(4915100000003, "", "", 0)
	applyCmd(t, f, 1, add(e1, e2, e5))
	applyCmd(t, f, 2, optOut(e3))
	applyCmd(t, f, 3, complain(e4))

	if got, ok, err := f.Get(e2.Key); err != nil || !ok || got != e2 {
		t.Fatalf("Get = %+v, %t, %v", got, ok, err)
	}
	if _, ok, err := f.Get(Key{Number: 4915100000001, Kind: KindBlock, Scope: Scope{Account: "other"}}); ok || err != nil {
		t.Fatalf("Get of a missing key = %t, %v", ok, err)
	}
	if got, err := f.Lookup(4915100000001); err != nil || !reflect.DeepEqual(got, []Entry{e1, e2, e3}) {
		t.Fatalf("Lookup = %+v, %v", got, err)
	}
	if got, err := f.Lookup(4915100000004); err != nil || got != nil {
		t.Fatalf("Lookup of an unknown number = %+v, %v", got, err)
	}
	for _, tc := range []struct {
		kind  Kind
		after uint64
		limit int
		want  []Entry
	}{
		{0, 0, 100, []Entry{e1, e2, e3, e4, e5}},
		{0, 0, 1, []Entry{e1, e2, e3}}, // a number's entries are not split
		{0, 4915100000001, 1, []Entry{e4}},
		{KindBlock, 0, 100, []Entry{e1, e2, e5}},
		{KindBlock, 0, 2, []Entry{e1, e2}},
		{KindComplaint, 0, 100, []Entry{e4}},
		{KindOptOut, 4915100000001, 100, nil},
		{0, 4915100000003, 100, nil},
		{0, 0, 0, nil},
	} {
		if got, err := f.List(tc.kind, tc.after, tc.limit); err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("List(%v, %d, %d) = %+v, %v; want %+v", tc.kind, tc.after, tc.limit, got, err, tc.want)
		}
	}
	var buf bytes.Buffer
	if err := f.Export(&buf); err != nil {
		t.Fatal(err)
	}
	want := `number,kind,account,sender,reason,source,upstream,created,expires
4915100000001,block,,,fraud,admin,,1764115200000,0
4915100000001,block,acme,,"a, ""quoted"" reason",admin,,1764115200000,1764115200099
4915100000001,optout,,SHOP,STOP,mo,,1764115200000,0
4915100000002,complaint,,,spam,mo,orange,1764115200000,0
4915100000003,block,,,,admin,,1764115200000,0
`
	if buf.String() != want {
		t.Fatalf("Export:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// goldenSnapshotLogs builds the state of a golden snapshot: fsm.v1.snap (format 1, no sent
// counters) is the state of the golden commands before the first sent_counts, fsm.v2.snap
// (format 2) that of them all but expire_some (added after the snapshots were written).
func goldenSnapshotLogs(counters bool) []*raft.Log {
	var logs []*raft.Log
	for _, g := range goldenCommands {
		if g.cmd.Type == CmdSentCounts && !counters {
			break
		}
		if g.cmd.Type == CmdExpireSome {
			continue
		}
		logs = append(logs, cmdLog(uint64(len(logs)+1), g.cmd))
	}
	return logs
}

// TestFSMGoldenSnapshot: this release restores the snapshots earlier releases wrote (the files
// are kept forever), and still writes each format byte for byte (format 1 for a state without
// sent counters, so releases before them can read it).
func TestFSMGoldenSnapshot(t *testing.T) {
	for _, g := range []struct {
		file     string
		counters bool
		format   byte
	}{{"fsm.v1.snap", false, 1}, {"fsm.v2.snap", true, 2}} {
		t.Run(g.file, func(t *testing.T) {
			path := filepath.Join("testdata", "snapshots", g.file)
			logs := goldenSnapshotLogs(g.counters)
			src := openFSM(t, t.TempDir(), nil, true)
			src.ApplyBatch(logs)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, snapshotBytes(t, src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./store/ -run TestFSMGoldenSnapshot -update to write it)", err)
			}
			if len(data) <= len(snapMagic) || data[len(snapMagic)] != g.format {
				t.Fatalf("%s is not a format %d snapshot", g.file, g.format)
			}
			dst := openFSM(t, t.TempDir(), nil, false)
			if err := restore(dst, data); err != nil {
				t.Fatal(err)
			}
			if got, want := allEntries(t, dst), allEntries(t, src); !reflect.DeepEqual(got, want) || len(got) == 0 {
				t.Fatalf("restored golden snapshot:\n got %+v\nwant %+v", got, want)
			}
			if dst.AppliedIndex() != uint64(len(logs)) || !reflect.DeepEqual(dst.NodeVersions(), map[string]string{"node-1": "v0.9.0"}) {
				t.Fatalf("applied %d, nodes %v", dst.AppliedIndex(), dst.NodeVersions())
			}
			got, want := sentCounts(t, dst, 0), sentCounts(t, src, 0)
			if !reflect.DeepEqual(got, want) || (len(got) > 0) != g.counters {
				t.Fatalf("restored sent counters:\n got %+v\nwant %+v", got, want)
			}
			hSrc, _ := stateHash(t, src)
			if hDst, _ := stateHash(t, dst); hDst != hSrc {
				t.Fatal("restored golden snapshot: state hash differs")
			}
			if !bytes.Equal(snapshotBytes(t, dst), data) {
				t.Fatalf("Persist no longer writes %s: the snapshot format changed without a new format version", g.file)
			}
		})
	}
}

func TestFSMConfigValidate(t *testing.T) {
	if _, err := OpenFSM(FSMConfig{}); err == nil || !strings.Contains(err.Error(), "dir is required") {
		t.Fatalf("OpenFSM without a dir = %v", err)
	}
}

// BenchmarkApplyBlockAdd: raft logs each holding a CmdBlockAdd of 1000 new random numbers,
// applied one log per ApplyBatch or 16 (decode, validate, key filter, writes, one Pebble commit,
// the Indexer update), into a state growing by b.N*1000 numbers (with Pebble's flushes and
// compactions running beside, as in production). The logs are built before the timer starts.
func BenchmarkApplyBlockAdd(b *testing.B) {
	for _, batch := range []int{1, 16} {
		b.Run(fmt.Sprintf("logs_per_batch=%d", batch), func(b *testing.B) {
			f := openFSM(b, b.TempDir(), nopIndexer{}, false)
			rng := rand.New(rand.NewPCG(1, 2))
			logs := make([]*raft.Log, b.N)
			for i := range logs {
				c := Command{Type: CmdBlockAdd, Time: t0}
				for range MaxCommandItems {
					c.Entries = append(c.Entries, Entry{Key: Key{Number: 4_900_000_000_000 + rng.Uint64N(100_000_000_000), Kind: KindBlock},
						Reason: "import", Source: "admin"})
				}
				logs[i] = cmdLog(uint64(i+1), c)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < len(logs); i += batch {
				f.ApplyBatch(logs[i:min(i+batch, len(logs))])
			}
			b.ReportMetric(float64(b.N*MaxCommandItems)/b.Elapsed().Seconds(), "numbers/s")
		})
	}
}

type nopIndexer struct{}

func (nopIndexer) Update([]Entry, []Key)              {}
func (nopIndexer) Reset(func(yield func(Entry) bool)) {}

// testNode is one member of an in-process raft cluster over RaftLog and FSM in temp dirs.
type testNode struct {
	id    raft.ServerID
	addr  raft.ServerAddress
	dir   string
	trans *raft.InmemTransport
	logs  *RaftLog
	fsm   *FSM
	idx   *recIndexer
	r     *raft.Raft
}

type testCluster struct {
	t       testing.TB
	timeout time.Duration // raft's heartbeat, election and lease timeouts
	nodes   []*testNode
	obs     chan raft.Observation // leader and state changes of every node
}

func newTestCluster(t testing.TB, n int, timeout time.Duration) *testCluster {
	c := &testCluster{t: t, timeout: timeout, obs: make(chan raft.Observation, 4096)}
	var servers []raft.Server
	for i := range n {
		addr, _ := raft.NewInmemTransport("")
		node := &testNode{id: raft.ServerID(fmt.Sprintf("n%d", i+1)), addr: addr, dir: t.TempDir()}
		c.nodes = append(c.nodes, node)
		servers = append(servers, raft.Server{ID: node.id, Address: node.addr})
	}
	for _, node := range c.nodes {
		c.start(node)
		if err := node.r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, node := range c.nodes {
			if node.r != nil {
				c.stop(node)
			}
		}
	})
	return c
}

// start opens the node's stores (the same directories after a stop) and starts raft.
func (c *testCluster) start(n *testNode) {
	t := c.t
	var err error
	if n.logs, err = OpenRaftLog(filepath.Join(n.dir, "log"), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	n.idx = newRecIndexer()
	if n.fsm, err = OpenFSM(FSMConfig{Dir: filepath.Join(n.dir, "fsm"), Indexer: n.idx, ComplaintBlocks: true,
		Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(n.dir, "snapshots"), 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	_, n.trans = raft.NewInmemTransport(n.addr)
	for _, o := range c.nodes {
		if o != n && o.r != nil {
			o.trans.Connect(n.addr, n.trans)
			n.trans.Connect(o.addr, o.trans)
		}
	}
	rc := raft.DefaultConfig()
	rc.LocalID = n.id
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = c.timeout, c.timeout, c.timeout
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold, rc.SnapshotInterval = 1<<40, time.Hour // only the snapshots the test asks for
	rc.TrailingLogs = 4
	rc.BatchApplyCh, rc.MaxAppendEntries = true, 64
	rc.Logger = hclog.NewNullLogger()
	if n.r, err = raft.NewRaft(rc, n.fsm, n.logs, n.logs, snaps, n.trans); err != nil {
		t.Fatal(err)
	}
	// Registered before the node can campaign (an election timeout away).
	n.r.RegisterObserver(raft.NewObserver(c.obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	}))
}

func (c *testCluster) stop(n *testNode) {
	for _, o := range c.nodes {
		if o != n && o.r != nil {
			o.trans.Disconnect(n.addr)
		}
	}
	if err := n.r.Shutdown().Error(); err != nil {
		c.t.Error(err)
	}
	n.r = nil
	_ = n.trans.Close()
	if err := n.fsm.Close(); err != nil {
		c.t.Error(err)
	}
	if err := n.logs.Close(); err != nil {
		c.t.Error(err)
	}
}

func (c *testCluster) leader() *testNode {
	deadline := time.After(10 * time.Second)
	for {
		for _, n := range c.nodes {
			if n.r != nil && n.r.State() == raft.Leader {
				return n
			}
		}
		select {
		case <-c.obs:
		case <-deadline:
			c.t.Fatal("no leader within 10s")
		}
	}
}

// apply proposes cmd on the leader and returns the leader FSM's result.
func (c *testCluster) apply(cmd Command) ApplyResult {
	for range 10 {
		l := c.leader()
		f := l.r.Apply(cmd.Marshal(), 5*time.Second)
		if err := f.Error(); err != nil {
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
				continue
			}
			c.t.Fatal(err)
		}
		return f.Response().(ApplyResult)
	}
	c.t.Fatal("leadership kept changing")
	return ApplyResult{}
}

// converge applies a marker entry, waits until every running node has applied it and checks
// that all have the same state at the same index, which it returns.
func (c *testCluster) converge(marker uint64) ([32]byte, uint64) {
	want := c.waitMarker(marker)
	t := c.t
	var hash [32]byte
	for i, n := range c.nodes {
		if n.r == nil {
			continue
		}
		h, applied := stateHash(t, n.fsm)
		if applied != want {
			t.Fatalf("%s at index %d, want %d", n.id, applied, want)
		}
		if i > 0 && h != hash {
			t.Fatalf("%s state differs from n1's", n.id)
		}
		hash = h
		n.idx.checkMirror(t, n.fsm)
	}
	return hash, want
}

// waitMarker applies a marker entry and waits until every running node has applied it; it
// returns the marker's index (the leader FSM's applied index).
func (c *testCluster) waitMarker(marker uint64) uint64 {
	t := c.t
	if r := c.apply(add(blk(marker, "", "marker", 0))); r.Added != 1 {
		t.Fatalf("marker: %+v", r)
	}
	want := c.leader().fsm.AppliedIndex()
	for _, n := range c.nodes {
		if n.r == nil {
			continue
		}
		deadline := time.After(30 * time.Second)
		for n.fsm.AppliedIndex() < want {
			select {
			case <-n.idx.notify: // every applied batch with a change (the marker is one)
			case <-deadline:
				t.Fatalf("%s applied %d, want %d", n.id, n.fsm.AppliedIndex(), want)
			}
		}
	}
	return want
}

// TestFSMRaftCluster: three raft nodes, each with its RaftLog and FSM in Pebble, reach the same
// state; a follower restarted after the leader compacted its log catches up by snapshot.
func TestFSMRaftCluster(t *testing.T) {
	c := newTestCluster(t, 3, 50*time.Millisecond)
	bulk := Command{Type: CmdBlockAdd, Time: t0}
	for i := range MaxCommandItems {
		bulk.Entries = append(bulk.Entries, blk(4_917_000_000_000+uint64(i)*7, "", "import", t0+int64(i%3)*100))
	}
	if r := c.apply(bulk); r.Added != MaxCommandItems {
		t.Fatalf("bulk add: %+v", r)
	}
	for _, cmd := range []Command{
		complain(cmpl(4_917_000_000_007, "acme", 0), cmpl(33_600_000_001, "", t0+50)),
		optOut(opt(4_915_000_000_001, "SHOP")),
		unblock(Key{Number: 4_917_000_000_000, Kind: KindBlock}),
		expire(t0 + 100),
	} {
		if r := c.apply(cmd); r.Err != nil || r.Added+r.Removed == 0 {
			t.Fatalf("%s: %+v", cmd.Type, r)
		}
	}
	for _, n := range c.nodes {
		c.apply(Command{Type: CmdNodeVersion, Time: t0, NodeID: string(n.id), Version: "v1.0.0"})
	}
	c.converge(1)
	for _, n := range c.nodes {
		if len(n.fsm.NodeVersions()) != 3 {
			t.Fatalf("%s knows %d node versions", n.id, len(n.fsm.NodeVersions()))
		}
	}
	// Blocks: the bulk entries expiring after t0+100 (i%3 == 2) and the marker; the complaint
	// that expired took its block along, the other's number was already blocked (and expired).
	if cnt, _ := c.nodes[0].fsm.Count(); cnt[KindBlock] != 333+1 || cnt[KindComplaint] != 1 || cnt[KindOptOut] != 1 {
		t.Fatalf("counts %v", cnt)
	}

	// A follower takes a snapshot (restored again at its restart: already in its state, so
	// kept) and stops; the leader moves on and compacts its log past the follower's last entry.
	var f *testNode
	for _, n := range c.nodes {
		if n != c.leader() {
			f = n
			break
		}
	}
	if err := f.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	c.stop(f)
	for i := range 20 {
		c.apply(add(blk(4_918_000_000_000+uint64(i), "", "while down", 0)))
	}
	c.apply(expire(t0 + 300))
	if err := c.leader().r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	c.start(f)
	_, applied := c.converge(2)
	if f.idx.resetCount() != 2 {
		t.Fatalf("restarted follower's index was reset %d times, want 2 (open, the leader's snapshot)", f.idx.resetCount())
	}
	if f.fsm.AppliedIndex() != applied {
		t.Fatalf("restarted follower at %d, want %d", f.fsm.AppliedIndex(), applied)
	}
}

// BenchmarkReplicated: CmdBlockAdds of 1000 new numbers proposed on the leader of an in-process
// 3-node cluster (RaftLog with fsync and FSM on each node, inmem transport, all on this one
// machine), until every node has applied them. numbers/s is the replicated throughput.
func BenchmarkReplicated(b *testing.B) {
	c := newTestCluster(b, 3, time.Second) // saturated on a small machine: no elections
	c.leader()
	rng := rand.New(rand.NewPCG(3, 4))
	cmds := make([][]byte, b.N)
	for i := range cmds {
		cmd := Command{Type: CmdBlockAdd, Time: t0}
		for range MaxCommandItems {
			cmd.Entries = append(cmd.Entries, Entry{Key: Key{Number: 4_900_000_000_000 + rng.Uint64N(100_000_000_000), Kind: KindBlock},
				Reason: "import", Source: "admin"})
		}
		cmds[i] = cmd.Marshal()
	}
	b.ResetTimer()
	l := c.leader()
	futures := make([]raft.ApplyFuture, 0, b.N)
	for _, cmd := range cmds {
		futures = append(futures, l.r.Apply(cmd, 30*time.Second))
	}
	for _, f := range futures {
		if err := f.Error(); err != nil {
			b.Fatal(err)
		}
	}
	c.waitMarker(1)
	b.StopTimer()
	b.ReportMetric(float64(b.N*MaxCommandItems)/b.Elapsed().Seconds(), "numbers/s")
	c.converge(2)
}

// TestFSMExpireSome: CmdExpireSome removes at most Limit of the due entries, earliest expiry
// first, so a leader expires a large set in bounded steps; entries not yet due stay.
func TestFSMExpireSome(t *testing.T) {
	x := NewIndex()
	defer x.Close()
	f := openFSM(t, t.TempDir(), x, false)
	var es []Entry
	for i := range 25 {
		es = append(es, blk(uint64(4915100000000+i), "", "", t0+int64(25-i))) // later numbers expire first
	}
	es = append(es, blk(4915100009999, "", "", t0+1000)) // not due
	f.Apply(cmdLog(1, add(es...)))
	some := func(index uint64) ApplyResult {
		res, _ := f.Apply(cmdLog(index, Command{Type: CmdExpireSome, Time: t0 + 100, Cutoff: t0 + 100, Limit: 10})).(ApplyResult)
		return res
	}
	if r := some(2); r.Removed != 10 || r.Err != nil {
		t.Fatalf("first step: %+v, want 10 removed", r)
	}
	// The earliest expiries went first: numbers 15..24 (expiring at t0+1..t0+10).
	for i := range 25 {
		_, found, err := f.Get(Key{Number: uint64(4915100000000 + i), Kind: KindBlock})
		if err != nil {
			t.Fatal(err)
		}
		if want := i < 15; found != want {
			t.Fatalf("number %d present %v after the first step, want %v", i, found, want)
		}
	}
	if r := some(3); r.Removed != 10 {
		t.Fatalf("second step: %+v", r)
	}
	if r := some(4); r.Removed != 5 {
		t.Fatalf("third step: %+v, want the last 5", r)
	}
	if r := some(5); r.Removed != 0 {
		t.Fatalf("nothing left due: %+v", r)
	}
	if x.Len() != 1 || !x.Check(4915100009999, "", "").Has(KindBlock) {
		t.Fatalf("index holds %d, want only the entry not yet due", x.Len())
	}
}

func TestFSMNextExpiry(t *testing.T) {
	f := openFSM(t, t.TempDir(), nil, false)
	if _, ok, err := f.NextExpiry(); ok || err != nil {
		t.Fatalf("empty state: %v %v", ok, err)
	}
	f.Apply(cmdLog(1, add(blk(100, "", "", 0), blk(200, "", "", t0+50), blk(300, "", "", t0+20))))
	if at, ok, err := f.NextExpiry(); !ok || err != nil || at != t0+20 {
		t.Fatalf("NextExpiry = %d %v %v, want %d", at, ok, err, t0+20)
	}
	f.Apply(cmdLog(2, expire(t0+30)))
	if at, ok, _ := f.NextExpiry(); !ok || at != t0+50 {
		t.Fatalf("after expiring the first: %d %v", at, ok)
	}
}

// BenchmarkExpireSome: 1M entries that expire together are removed as the leader does it, in
// CmdExpireSome steps of MaxExpireItems. Reported: entries/s and the slowest step (one Apply,
// during which this node applies nothing else).
func BenchmarkExpireSome(b *testing.B) {
	const n = 1_000_000
	f := openFSM(b, b.TempDir(), NewIndex(), false)
	index := uint64(0)
	var worst time.Duration
	var total int
	var spent time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer() // the entries are added outside the measured time
		for j := 0; j < n; j += MaxCommandItems {
			c := Command{Type: CmdBlockAdd, Time: t0}
			for k := j; k < j+MaxCommandItems; k++ {
				c.Entries = append(c.Entries, Entry{Key: Key{Number: 4915000000000 + uint64(k), Kind: KindBlock}, Created: t0, Expires: t0 + 1})
			}
			index++
			f.Apply(cmdLog(index, c))
		}
		b.StartTimer()
		start := time.Now()
		for {
			index++
			s := time.Now()
			r, _ := f.Apply(cmdLog(index, Command{Type: CmdExpireSome, Time: t0 + 2, Cutoff: t0 + 2, Limit: MaxExpireItems})).(ApplyResult)
			worst = max(worst, time.Since(s))
			total += r.Removed
			if r.Removed < MaxExpireItems {
				break
			}
		}
		spent += time.Since(start)
	}
	if total != n*b.N {
		b.Fatalf("expired %d, want %d", total, n*b.N)
	}
	b.ReportMetric(float64(total)/spent.Seconds(), "entries/s")
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst_step_ms")
}
