package router

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestIDGenUniqueConcurrent(t *testing.T) {
	g, err := NewIDGen(7, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const workers, per = 4, 20000 // 80k ids: more than 4096 per ms, so the counter rolls over
	out := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				id, err := g.Next()
				if err != nil {
					t.Error(err)
					return
				}
				out[w] = append(out[w], id)
			}
		}()
	}
	wg.Wait()
	seen := make(map[uint64]bool, workers*per)
	for _, ids := range out {
		for i, id := range ids {
			if seen[id] {
				t.Fatalf("duplicate id %016x", id)
			}
			seen[id] = true
			if i > 0 && id <= ids[i-1] {
				t.Fatalf("ids not increasing within one goroutine: %016x after %016x", id, ids[i-1])
			}
			if IDNode(id) != 7 {
				t.Fatalf("IDNode(%016x) = %d, want 7", id, IDNode(id))
			}
		}
	}
}

func TestIDGenRestartNeverRepeats(t *testing.T) {
	dir := t.TempDir()
	g, err := NewIDGen(1, dir)
	if err != nil {
		t.Fatal(err)
	}
	last, _ := g.Next()
	// Simulate a clock that stepped back: the restarted generator must still start above the
	// durable ceiling, i.e. above every id the first one could have issued.
	g2, err := NewIDGen(1, dir)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := g2.Next()
	if first <= last {
		t.Fatalf("after restart got %016x, not above %016x", first, last)
	}
	b, err := os.ReadFile(filepath.Join(dir, "msgid.lease"))
	if err != nil || len(b) != 8 {
		t.Fatalf("lease file: %v, %d bytes", err, len(b))
	}
	if ceil := binary.BigEndian.Uint64(b); first>>(nodeBits+counterBits) >= ceil {
		t.Fatalf("issued ms %d at or above durable ceiling %d", first>>(nodeBits+counterBits), ceil)
	}
}

func TestIDGenTimeAndFormat(t *testing.T) {
	g, _ := NewIDGen(MaxNodeID, "")
	before := time.Now().Add(-time.Millisecond)
	id, _ := g.Next()
	if at := IDTime(id); at.Before(before) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("IDTime = %v, want about now", at)
	}
	var buf [16]byte
	FormatID(&buf, id)
	back, err := ParseID(string(buf[:]))
	if err != nil || back != id {
		t.Fatalf("ParseID(FormatID(%x)) = %x, %v", id, back, err)
	}
	for _, bad := range []string{"", "123", "zzzzzzzzzzzzzzzz", "0123456789abcdef0"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
	if _, err := NewIDGen(MaxNodeID+1, ""); err == nil {
		t.Error("node id above MaxNodeID accepted")
	}
}

func TestIDGenCorruptLease(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "msgid.lease"), []byte("xyz"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewIDGen(1, dir); err == nil {
		t.Fatal("corrupt lease accepted")
	}
}

func TestMemIDMap(t *testing.T) {
	m := NewMemIDMap(time.Hour, 64*idMapShards)
	for i := uint64(0); i < 10; i++ {
		m.Put(i, "sim", []byte{'a' + byte(i)})
	}
	up, id, ok := m.Get(3)
	if !ok || up != "sim" || id != "d" {
		t.Fatalf("Get(3) = %q %q %v", up, id, ok)
	}
	if _, _, ok := m.Get(99); ok {
		t.Fatal("Get of an absent id succeeded")
	}
	// Bounded: far more puts than the limit keep at most the limit.
	for i := uint64(100); i < 100+100*idMapShards; i++ {
		m.Put(i, "other", []byte("x"))
	}
	if n := m.Len(); n > 64*idMapShards {
		t.Fatalf("Len = %d, above the limit %d", n, 64*idMapShards)
	}
	if _, _, ok := m.Get(100 + 100*idMapShards - 1); !ok {
		t.Fatal("the newest mapping was dropped")
	}
}
