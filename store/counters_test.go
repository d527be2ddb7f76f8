package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// reportedCount is a counter as SentCounts yields it.
type reportedCount struct {
	SentCount
	Reporter string
}

// sentCounts returns every counter of a bucket at or after from, checking that they come in
// strictly increasing key order.
func sentCounts(t testing.TB, f *FSM, from int64) []reportedCount {
	t.Helper()
	var out []reportedCount
	var prev []byte
	err := f.SentCounts(from, func(c SentCount, reporter string) bool {
		k := appendCounterKey(nil, &c, reporter)
		if prev != nil && bytes.Compare(k, prev) <= 0 {
			t.Fatalf("SentCounts yielded %+v (%s) out of key order", c, reporter)
		}
		if c.Bucket < from {
			t.Fatalf("SentCounts(%d) yielded bucket %d", from, c.Bucket)
		}
		prev = k
		out = append(out, reportedCount{c, reporter})
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func report(reporter string, cutoff int64, cs ...SentCount) Command {
	return Command{Type: CmdSentCounts, Time: t0 + 1000, NodeID: reporter, Cutoff: cutoff, Counts: cs}
}

func sent(bucket int64, account, channel string, n uint64) SentCount {
	return SentCount{Bucket: bucket, Account: account, Channel: channel, Sent: n}
}

func rc(c SentCount, reporter string) reportedCount { return reportedCount{c, reporter} }

const (
	b0 = t0
	b1 = t0 + 60_000
	b2 = t0 + 120_000
)

func TestFSMSentCounts(t *testing.T) {
	dir := t.TempDir()
	idx := newRecIndexer()
	f := openFSM(t, dir, idx, false)
	empty, _ := stateHash(t, f)
	idx.takeUpdates()
	var logs []*raft.Log
	step := func(c Command) {
		t.Helper()
		l := cmdLog(uint64(len(logs)+1), c)
		logs = append(logs, l)
		if r := f.Apply(l).(ApplyResult); r != (ApplyResult{}) {
			t.Fatalf("log %d: %+v", l.Index, r)
		}
	}
	check := func(what string, want ...reportedCount) {
		t.Helper()
		if got := sentCounts(t, f, 0); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
		}
	}

	step(report("n1@1", 0, sent(b0, "acme", "orange", 10), sent(b1, "acme", "orange", 4), sent(b1, "", "tmobile", 2)))
	// Key order: bucket, then account and channel by length first ("" before "acme").
	first := []reportedCount{rc(sent(b0, "acme", "orange", 10), "n1@1"), rc(sent(b1, "", "tmobile", 2), "n1@1"),
		rc(sent(b1, "acme", "orange", 4), "n1@1")}
	check("first report", first...)
	h1, _ := stateHash(t, f)
	if h1 == empty {
		t.Fatal("the state hash does not cover the sent counters")
	}

	step(report("n1@1", 0, sent(b0, "acme", "orange", 10), sent(b1, "acme", "orange", 4), sent(b1, "", "tmobile", 2)))
	step(report("n1@1", 0, sent(b0, "acme", "orange", 7))) // stale
	check("a repeated and a stale report", first...)
	if h, _ := stateHash(t, f); h != h1 {
		t.Fatal("a repeated or stale report changed the state")
	}

	step(report("n1@1", 0, sent(b0, "acme", "orange", 12), sent(b0, "acme", "orange", 11)))
	step(report("n2@5", 0, sent(b0, "acme", "orange", 5)))
	two := []reportedCount{rc(sent(b0, "acme", "orange", 12), "n1@1"), rc(sent(b0, "acme", "orange", 5), "n2@5"),
		rc(sent(b1, "", "tmobile", 2), "n1@1"), rc(sent(b1, "acme", "orange", 4), "n1@1")}
	check("raised, and a second reporter", two...)
	var total uint64
	for _, c := range sentCounts(t, f, b0) {
		if c.Bucket == b0 && c.Account == "acme" && c.Channel == "orange" {
			total += c.Sent
		}
	}
	if total != 17 {
		t.Fatalf("acme/orange sent in bucket b0: %d over the reporters, want 17", total)
	}
	if got := sentCounts(t, f, b0+1); !reflect.DeepEqual(got, two[2:]) {
		t.Fatalf("SentCounts(b0+1) = %+v", got)
	}
	if got := sentCounts(t, f, -5); !reflect.DeepEqual(got, two) {
		t.Fatalf("SentCounts(-5) = %+v", got)
	}
	if got := sentCounts(t, f, b2); got != nil {
		t.Fatalf("SentCounts(b2) = %+v", got)
	}
	calls := 0
	if err := f.SentCounts(0, func(SentCount, string) bool { calls++; return false }); err != nil || calls != 1 {
		t.Fatalf("fn returning false: %d calls, %v", calls, err)
	}

	// Pruning: counters of buckets before the cutoff go, those just reported included.
	step(report("n2@5", b1, sent(b0, "acme", "orange", 50), sent(b2, "beta", "orange", 1)))
	pruned := []reportedCount{rc(sent(b1, "", "tmobile", 2), "n1@1"), rc(sent(b1, "acme", "orange", 4), "n1@1"),
		rc(sent(b2, "beta", "orange", 1), "n2@5")}
	check("pruned before b1", pruned...)

	if u := idx.takeUpdates(); len(u) != 0 {
		t.Fatalf("the Indexer was told of counters: %+v", u)
	}
	idx.checkMirror(t, f)
	if c, _ := f.Count(); c[KindBlock]+c[KindComplaint]+c[KindOptOut] != 0 {
		t.Fatalf("Count %v", c)
	}
	h, applied := stateHash(t, f)
	if applied != uint64(len(logs)) {
		t.Fatalf("applied %d, want %d", applied, len(logs))
	}

	// Restart: counters and applied index kept; raft's replay changes nothing.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.SentCounts(0, func(SentCount, string) bool { return true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("SentCounts after Close = %v", err)
	}
	f = openFSM(t, dir, newRecIndexer(), false)
	if f.AppliedIndex() != applied {
		t.Fatalf("AppliedIndex after restart %d, want %d", f.AppliedIndex(), applied)
	}
	check("after a restart", pruned...)
	f.ApplyBatch(logs)
	if h2, applied2 := stateHash(t, f); h2 != h || applied2 != applied {
		t.Fatal("replaying the log after a restart changed the state")
	}
}

// TestFSMSentCountsInvalid: an invalid report changes nothing, not even the part of it that is
// valid, nor its prune.
func TestFSMSentCountsInvalid(t *testing.T) {
	f := openFSM(t, t.TempDir(), newRecIndexer(), false)
	applyCmd(t, f, 1, report("n1@1", 0, sent(b0, "acme", "orange", 10)))
	before, _ := stateHash(t, f)
	want := sentCounts(t, f, 0)
	long := strings.Repeat("x", MaxFieldLen+1)
	for i, c := range []Command{
		report("n1@1", b2, sent(b1, "acme", "orange", 99), sent(b1, "acme", "", 1)),
		report("n1@1", 0, sent(b0, "acme", "orange", 99), sent(-1, "acme", "orange", 1)),
		report("n1@1", -1, sent(b0, "acme", "orange", 99)),
		report("", 0, sent(b0, "acme", "orange", 99)),
		report(long, 0, sent(b0, "acme", "orange", 99)),
		report("n1@1", b2),
		report("n1@1", 0, sent(b0, long, "orange", 99)),
		{Type: CmdSentCounts, NodeID: "n1@1", Counts: []SentCount{sent(b0, "acme", "orange", 99)}},
	} {
		index := uint64(i + 2)
		if r := applyCmd(t, f, index, c); !errors.Is(r.Err, ErrInvalidCommand) || r.Added+r.Removed != 0 {
			t.Fatalf("invalid report %d: %+v", i, r)
		}
		if h, applied := stateHash(t, f); h != before || applied != index {
			t.Fatalf("invalid report %d changed the state (applied %d)", i, applied)
		}
	}
	if got := sentCounts(t, f, 0); !reflect.DeepEqual(got, want) {
		t.Fatalf("counters %+v, want %+v", got, want)
	}
}

// TestFSMSentCountsDeterministic: two FSMs given the same log agree, however it is batched (a
// report after a prune in the same batch must see the prune), and a counter changes the hash.
func TestFSMSentCountsDeterministic(t *testing.T) {
	logs := []*raft.Log{
		cmdLog(1, add(blk(1, "", "", 0))),
		cmdLog(2, report("n1@1", 0, sent(b0, "acme", "orange", 10), sent(b1, "acme", "orange", 10))),
		cmdLog(3, report("n2@1", b1, sent(b1, "acme", "orange", 1))),
		cmdLog(4, report("n1@1", 0, sent(b0, "acme", "orange", 3), sent(b1, "acme", "orange", 8))),
	}
	one := openFSM(t, t.TempDir(), nil, false)
	for _, l := range logs {
		one.ApplyBatch([]*raft.Log{l})
	}
	all := openFSM(t, t.TempDir(), nil, false)
	all.ApplyBatch(logs)
	want := []reportedCount{rc(sent(b0, "acme", "orange", 3), "n1@1"), rc(sent(b1, "acme", "orange", 10), "n1@1"),
		rc(sent(b1, "acme", "orange", 1), "n2@1")}
	for _, f := range []*FSM{one, all} {
		if got := sentCounts(t, f, 0); !reflect.DeepEqual(got, want) {
			t.Fatalf("counters:\n got %+v\nwant %+v", got, want)
		}
	}
	h1, _ := stateHash(t, one)
	if h2, _ := stateHash(t, all); h1 != h2 {
		t.Fatal("the same log, batched differently, gave different states")
	}
	none := openFSM(t, t.TempDir(), nil, false)
	none.ApplyBatch(logs[:1])
	if h, _ := stateHash(t, none); h == h1 {
		t.Fatal("the state hash does not change with the counters")
	}
}

func TestFSMSentCountsSnapshot(t *testing.T) {
	src := openFSM(t, t.TempDir(), nil, true)
	logs := fsmScript(21, 300)
	src.ApplyBatch(logs)
	want := sentCounts(t, src, 0)
	if len(want) == 0 {
		t.Fatal("the script left no counters")
	}
	hSrc, iSrc := stateHash(t, src)
	data := snapshotBytes(t, src)
	if data[len(snapMagic)] != snapFormat {
		t.Fatalf("a state with counters snapshotted in format %d, want %d", data[len(snapMagic)], snapFormat)
	}

	// Into a fresh FSM, and into one with counters of its own (replaced).
	for _, own := range []bool{false, true} {
		dst := openFSM(t, t.TempDir(), newRecIndexer(), true)
		if own {
			applyCmd(t, dst, 1, report("other@1", 0, sent(b0, "zz", "zz", 1), sent(t0+999_999_999, "", "x", 1)))
		}
		if err := restore(dst, data); err != nil {
			t.Fatal(err)
		}
		if h, i := stateHash(t, dst); h != hSrc || i != iSrc {
			t.Fatalf("own counters %t: restored state differs (applied %d, want %d)", own, i, iSrc)
		}
		if got := sentCounts(t, dst, 0); !reflect.DeepEqual(got, want) {
			t.Fatalf("own counters %t: restored counters:\n got %+v\nwant %+v", own, got, want)
		}
		if !bytes.Equal(snapshotBytes(t, dst), data) {
			t.Fatal("the restored state snapshots differently")
		}
	}

	// A state without counters is written in format 1 and, restored (src is at index 300, the
	// snapshot at 1000), clears the counters.
	plain := openFSM(t, t.TempDir(), nil, false)
	applyCmd(t, plain, 1000, add(blk(5, "", "", 0)))
	p := snapshotBytes(t, plain)
	if p[len(snapMagic)] != snapFormatV1 {
		t.Fatalf("a state without counters snapshotted in format %d, want 1", p[len(snapMagic)])
	}
	if err := restore(src, p); err != nil {
		t.Fatal(err)
	}
	if got := sentCounts(t, src, 0); got != nil {
		t.Fatalf("counters survived the restore of a snapshot without them: %+v", got)
	}
	hp, _ := stateHash(t, plain)
	if h, _ := stateHash(t, src); h != hp {
		t.Fatal("restored state differs")
	}
}

// snapStream builds a snapshot stream of the given records with a valid checksum.
func snapStream(format, applied, entries, counters uint64, recs ...[]byte) []byte {
	b := binary.AppendUvarint([]byte(snapMagic), format)
	b = binary.AppendUvarint(binary.AppendUvarint(b, applied), entries)
	if format >= 2 {
		b = binary.AppendUvarint(b, counters)
	}
	for _, r := range recs {
		b = append(b, r...)
	}
	b = append(b, snapRecEnd)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func counterRec(bucket int64, account, channel, reporter string, n uint64) []byte {
	b := binary.AppendUvarint([]byte{snapRecCounter}, uint64(bucket))
	b = appendString(appendString(appendString(b, account), channel), reporter)
	return binary.AppendUvarint(b, n)
}

func nodeRec(id, version string) []byte {
	return appendString(appendString([]byte{snapRecNode}, id), version)
}

func TestFSMSentCountsRestoreChecks(t *testing.T) {
	c1, c2 := counterRec(b0, "acme", "orange", "n1@1", 7), counterRec(b0, "acme", "orange", "n2@1", 3)
	good := snapStream(2, 50, 0, 2, nodeRec("n1", "v1"), c1, c2)
	f := openFSM(t, t.TempDir(), newRecIndexer(), false)
	if err := restore(f, good); err != nil {
		t.Fatal(err)
	}
	want := []reportedCount{rc(sent(b0, "acme", "orange", 7), "n1@1"), rc(sent(b0, "acme", "orange", 3), "n2@1")}
	if got := sentCounts(t, f, 0); !reflect.DeepEqual(got, want) || f.AppliedIndex() != 50 {
		t.Fatalf("restored %+v at %d", got, f.AppliedIndex())
	}
	if !bytes.Equal(snapshotBytes(t, f), good) {
		t.Fatal("the hand-built stream is not what Persist writes")
	}
	for _, tc := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"counter in format 1", snapStream(1, 60, 0, 0, c1), "a counter in a format 1 snapshot"},
		{"counters out of order", snapStream(2, 60, 0, 2, c2, c1), "counter 1 out of order"},
		{"repeated counter", snapStream(2, 60, 0, 2, c1, c1), "counter 1 out of order"},
		{"counter count", snapStream(2, 60, 0, 3, c1, c2), "2 counters, header says 3"},
		{"node after a counter", snapStream(2, 60, 0, 1, c1, nodeRec("n1", "v1")), "record type 0x2 after 0x3"},
		{"negative bucket", snapStream(2, 60, 0, 1, counterRec(-1, "", "c", "r", 1)), "bucket -1"},
		{"truncated counter", snapStream(2, 60, 0, 1, c1[:len(c1)-1]), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := openFSM(t, t.TempDir(), newRecIndexer(), false)
			applyCmd(t, f, 1, report("n1@1", 0, sent(b1, "x", "y", 1)))
			err := restore(f, tc.data)
			if !errors.Is(err, ErrSnapshotCorrupt) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Restore = %v, want ErrSnapshotCorrupt saying %q", err, tc.msg)
			}
			if err := f.SentCounts(0, func(SentCount, string) bool { return true }); !errors.Is(err, ErrRestoreFailed) {
				t.Fatalf("SentCounts after a failed restore = %v", err)
			}
			if err := restore(f, good); err != nil {
				t.Fatal(err)
			}
			if got := sentCounts(t, f, 0); !reflect.DeepEqual(got, want) {
				t.Fatalf("after a good restore: %+v", got)
			}
		})
	}
}

// TestFSMSentCountsConcurrent: readers run beside Apply and Restore (go test -race).
func TestFSMSentCountsConcurrent(t *testing.T) {
	f := openFSM(t, t.TempDir(), nil, false)
	data := func() []byte {
		s := openFSM(t, t.TempDir(), nil, false)
		applyCmd(t, s, 1_000_000, report("s@1", 0, sent(b0, "a", "c", 1)))
		return snapshotBytes(t, s)
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := f.SentCounts(0, func(c SentCount, _ string) bool { return true }); err != nil {
					t.Error(err)
					return
				}
				if _, _, err := f.StateHash(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range 300 {
		applyCmd(t, f, uint64(i+1), report("n1@1", b0+int64(i)-10, sent(b0+int64(i), "a", "c", uint64(i))))
	}
	if err := restore(f, data); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if got := sentCounts(t, f, 0); !reflect.DeepEqual(got, []reportedCount{rc(sent(b0, "a", "c", 1), "s@1")}) {
		t.Fatalf("after the restore: %+v", got)
	}
}
