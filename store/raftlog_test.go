package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

func openRaftLog(t testing.TB, dir string) *RaftLog {
	t.Helper()
	s, err := OpenRaftLog(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testLog(index uint64) *raft.Log {
	return &raft.Log{Index: index, Term: index/10 + 1, Type: raft.LogCommand,
		Data: []byte(fmt.Sprintf("data-%d", index)), AppendedAt: time.Unix(1_700_000_000, int64(index))}
}

func storeRange(t testing.TB, s *RaftLog, from, to uint64) {
	t.Helper()
	var logs []*raft.Log
	for i := from; i <= to; i++ {
		logs = append(logs, testLog(i))
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
}

func sameLog(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type && bytes.Equal(a.Data, b.Data) &&
		bytes.Equal(a.Extensions, b.Extensions) && a.AppendedAt.Equal(b.AppendedAt)
}

func TestRaftLogRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  raft.Log
	}{
		{"command", raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("x"), AppendedAt: time.Unix(1_700_000_000, 123)}},
		{"zero time, no data", raft.Log{Index: 2, Term: 3, Type: raft.LogNoop}},
		{"extensions", raft.Log{Index: 3, Term: 3, Type: raft.LogCommand, Data: []byte{0, 1, 2}, Extensions: []byte("ext")}},
		{"only extensions", raft.Log{Index: 4, Term: 3, Type: raft.LogBarrier, Extensions: []byte("e")}},
		{"configuration", raft.Log{Index: 5, Term: 4, Type: raft.LogConfiguration, Data: bytes.Repeat([]byte("c"), 300)}},
		{"huge index and term", raft.Log{Index: 1<<64 - 1, Term: 1<<64 - 2, Type: raft.LogCommand, Data: []byte("m")}},
		{"before 1970", raft.Log{Index: 7, Term: 4, Type: raft.LogCommand, AppendedAt: time.Unix(-5, 7)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openRaftLog(t, t.TempDir())
			if err := s.StoreLog(&tc.log); err != nil {
				t.Fatal(err)
			}
			var got raft.Log
			if err := s.GetLog(tc.log.Index, &got); err != nil {
				t.Fatal(err)
			}
			if !sameLog(&got, &tc.log) {
				t.Fatalf("got %+v, want %+v", got, tc.log)
			}
			if enc := appendLog(nil, &tc.log); len(enc) != encodedLogLen(&tc.log) {
				t.Fatalf("encodedLogLen %d, encoding is %d bytes", encodedLogLen(&tc.log), len(enc))
			}
		})
	}
}

func TestRaftLogGetMissing(t *testing.T) {
	s := openRaftLog(t, t.TempDir())
	var l raft.Log
	if err := s.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("empty store: %v, want raft.ErrLogNotFound", err)
	}
	storeRange(t, s, 5, 9)
	for _, i := range []uint64{0, 4, 10, 1 << 63} {
		if err := s.GetLog(i, &l); !errors.Is(err, raft.ErrLogNotFound) {
			t.Errorf("GetLog(%d) = %v, want raft.ErrLogNotFound", i, err)
		}
	}
}

func TestRaftLogIndexesAndDeleteRange(t *testing.T) {
	for _, tc := range []struct {
		name          string
		del           [][2]uint64 // DeleteRange calls on logs 1..10
		first, last   uint64
		present, gone []uint64
	}{
		{"none", nil, 1, 10, []uint64{1, 10}, nil},
		{"prefix (compaction)", [][2]uint64{{1, 4}}, 5, 10, []uint64{5, 10}, []uint64{1, 4}},
		{"suffix (conflict)", [][2]uint64{{8, 10}}, 1, 7, []uint64{1, 7}, []uint64{8, 10}},
		{"middle leaves a gap", [][2]uint64{{4, 6}}, 1, 10, []uint64{3, 7}, []uint64{4, 5, 6}},
		{"everything", [][2]uint64{{1, 10}}, 0, 0, nil, []uint64{1, 10}},
		{"beyond both ends", [][2]uint64{{0, 1<<64 - 1}}, 0, 0, nil, []uint64{1, 10}},
		{"empty range", [][2]uint64{{6, 5}}, 1, 10, []uint64{5, 6}, nil},
		{"two prefixes", [][2]uint64{{1, 2}, {1, 5}}, 6, 10, []uint64{6}, []uint64{3, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openRaftLog(t, t.TempDir())
			for _, f := range []func() (uint64, error){s.FirstIndex, s.LastIndex} {
				if i, err := f(); err != nil || i != 0 {
					t.Fatalf("empty store: index %d, %v; want 0", i, err)
				}
			}
			storeRange(t, s, 1, 10)
			for _, d := range tc.del {
				if err := s.DeleteRange(d[0], d[1]); err != nil {
					t.Fatal(err)
				}
			}
			first, err := s.FirstIndex()
			if err != nil || first != tc.first {
				t.Errorf("FirstIndex = %d, %v; want %d", first, err, tc.first)
			}
			last, err := s.LastIndex()
			if err != nil || last != tc.last {
				t.Errorf("LastIndex = %d, %v; want %d", last, err, tc.last)
			}
			var l raft.Log
			for _, i := range tc.present {
				if err := s.GetLog(i, &l); err != nil || !sameLog(&l, testLog(i)) {
					t.Errorf("GetLog(%d) = %+v, %v", i, l, err)
				}
			}
			for _, i := range tc.gone {
				if err := s.GetLog(i, &l); !errors.Is(err, raft.ErrLogNotFound) {
					t.Errorf("GetLog(%d) after delete = %v", i, err)
				}
			}
		})
	}
}

// TestRaftLogOverwrite: a follower replaces a conflicting suffix (DeleteRange then StoreLogs of
// the leader's entries at the same indexes).
func TestRaftLogOverwrite(t *testing.T) {
	s := openRaftLog(t, t.TempDir())
	storeRange(t, s, 1, 5)
	if err := s.DeleteRange(4, 5); err != nil {
		t.Fatal(err)
	}
	repl := &raft.Log{Index: 4, Term: 9, Type: raft.LogCommand, Data: []byte("leader's")}
	if err := s.StoreLogs([]*raft.Log{repl}); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := s.GetLog(4, &l); err != nil || !sameLog(&l, repl) {
		t.Fatalf("GetLog(4) = %+v, %v", l, err)
	}
	if last, _ := s.LastIndex(); last != 4 {
		t.Fatalf("LastIndex = %d, want 4", last)
	}
	if err := s.StoreLogs(nil); err != nil {
		t.Fatalf("StoreLogs(nil) = %v", err)
	}
}

func TestRaftLogStable(t *testing.T) {
	s := openRaftLog(t, t.TempDir())
	for _, tc := range []struct {
		name string
		run  func() (any, error)
		want any
		err  string // "" = no error
	}{
		{"Get missing", func() (any, error) { return s.Get([]byte("LastVoteCand")) }, []byte(nil), "not found"},
		{"GetUint64 missing", func() (any, error) { return s.GetUint64([]byte("CurrentTerm")) }, uint64(0), "not found"},
		{"Set then Get", func() (any, error) {
			if err := s.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
				return nil, err
			}
			return s.Get([]byte("LastVoteCand"))
		}, []byte("node-2"), ""},
		{"Set empty", func() (any, error) {
			if err := s.Set([]byte("empty"), nil); err != nil {
				return nil, err
			}
			return s.Get([]byte("empty"))
		}, []byte{}, ""},
		{"SetUint64 then GetUint64", func() (any, error) {
			if err := s.SetUint64([]byte("CurrentTerm"), 1<<40+7); err != nil {
				return nil, err
			}
			return s.GetUint64([]byte("CurrentTerm"))
		}, uint64(1<<40 + 7), ""},
		{"GetUint64 of a non-uint64", func() (any, error) { return s.GetUint64([]byte("LastVoteCand")) }, uint64(0), "not a uint64"},
		{"stable keys do not collide with log keys", func() (any, error) {
			if err := s.Set([]byte{0, 0, 0, 0, 0, 0, 0, 1}, []byte("k")); err != nil {
				return nil, err
			}
			return s.LastIndex()
		}, uint64(0), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.run()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != "" && (err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.err))):
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
	// raft compares the text, not the value.
	if _, err := s.Get([]byte("nope")); err == nil || err.Error() != "not found" {
		t.Fatalf("missing key error %q, raft expects exactly \"not found\"", err)
	}
}

// TestRaftLogHasExistingState: raft's own reading of a fresh store, then of one with a term.
func TestRaftLogHasExistingState(t *testing.T) {
	s := openRaftLog(t, t.TempDir())
	snaps := raft.NewInmemSnapshotStore()
	if has, err := raft.HasExistingState(s, s, snaps); err != nil || has {
		t.Fatalf("fresh store: HasExistingState = %v, %v; want false, nil", has, err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if has, err := raft.HasExistingState(s, s, snaps); err != nil || !has {
		t.Fatalf("with a term: HasExistingState = %v, %v; want true, nil", has, err)
	}
}

func TestRaftLogRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenRaftLog(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	storeRange(t, s, 1, 100)
	if err := s.DeleteRange(1, 40); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 12); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n3")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s = openRaftLog(t, dir)
	if first, _ := s.FirstIndex(); first != 41 {
		t.Errorf("FirstIndex after restart = %d, want 41", first)
	}
	if last, _ := s.LastIndex(); last != 100 {
		t.Errorf("LastIndex after restart = %d, want 100", last)
	}
	var l raft.Log
	if err := s.GetLog(77, &l); err != nil || !sameLog(&l, testLog(77)) {
		t.Errorf("GetLog(77) after restart = %+v, %v", l, err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 12 {
		t.Errorf("CurrentTerm after restart = %d, %v", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n3" {
		t.Errorf("LastVoteCand after restart = %q, %v", v, err)
	}
}

func TestRaftLogDecodeErrors(t *testing.T) {
	good := appendLog(nil, testLog(3))
	for _, tc := range []struct {
		name string
		v    []byte
		want string
	}{
		{"empty", nil, "corrupt"},
		{"newer encoding", append([]byte{2}, good[1:]...), "newer"},
		{"version 0", append([]byte{0}, good[1:]...), "corrupt"},
		{"truncated", good[:len(good)-3], "truncated"},
		{"trailing", append(append([]byte(nil), good...), 0), "trailing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l raft.Log
			err := decodeLog(tc.v, &l)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("decodeLog = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	var l raft.Log
	if err := decodeLog(good, &l); err != nil || !sameLog(&l, testLog(3)) {
		t.Fatalf("good value: %+v, %v", l, err)
	}
}

// TestRaftLogNewerFormat: a directory written by a newer release is refused with a message.
func TestRaftLogNewerFormat(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(filepath.Clean(dir), &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte(keyVersion), []byte{raftLogFormat + 1}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenRaftLog(dir, slog.New(slog.DiscardHandler)); err == nil || !bytes.Contains([]byte(err.Error()), []byte("newer smppd")) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("OpenRaftLog of a newer format = %v", err)
	}
}

// BenchmarkRaftLogStoreLogs: what the leader's log write costs per batch of 64 entries of
// 1 KiB (an fsync each), and the entries per second that gives.
func BenchmarkRaftLogStoreLogs(b *testing.B) {
	s := openRaftLog(b, b.TempDir())
	const batch = 64
	logs := make([]*raft.Log, batch)
	data := bytes.Repeat([]byte("n"), 1024)
	for i := range logs {
		logs[i] = &raft.Log{Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
	}
	b.SetBytes(batch * 1024)
	b.ReportAllocs()
	index := uint64(0)
	start := time.Now()
	for b.Loop() {
		for _, l := range logs {
			index++
			l.Index = index
		}
		if err := s.StoreLogs(logs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(index)/time.Since(start).Seconds(), "entries/s")
}
