package content

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/smpp"
)

// part is what a test holds: the name of a segment.
type part = string

type drop struct {
	key   Key
	parts []part
	why   DropReason
}

type harness struct {
	r     *Reassembler[part]
	drops []drop
	set   *metrics.Set
}

func newHarness(t *testing.T, edit func(*ReassemblerConfig[part])) *harness {
	t.Helper()
	h := &harness{set: metrics.NewSet()}
	cfg := DefaultReassemblerConfig[part]()
	cfg.Metrics = h.set
	cfg.Drop = func(k Key, parts []part, why DropReason) { h.drops = append(h.drops, drop{k, parts, why}) }
	if edit != nil {
		edit(&cfg)
	}
	r, err := NewReassembler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.r = r
	return h
}

func key(ref uint16, total byte) Key {
	return KeyOf("acct", &smpp.Submit{SrcAddr: []byte("smppd"), DstAddr: []byte("4915112345678")}, smpp.Concat{Ref: ref, Total: total})
}

// add adds segment seq of message k (named "ref/seq") of size 100 at second now.
func (h *harness) add(t *testing.T, k Key, seq byte, now int) Added[part] {
	t.Helper()
	out, err := h.r.Add(k, smpp.Concat{Ref: k.Ref, Total: k.Total, Seq: seq}, fmt.Sprintf("%d/%d", k.Ref, seq), 100, int64(now)*int64(time.Second))
	if err != nil {
		t.Fatalf("add %d/%d: %v", k.Ref, seq, err)
	}
	return out
}

func (h *harness) held(t *testing.T, messages, parts, bytes int) {
	t.Helper()
	if m, p, b := h.r.Len(); m != messages || p != parts || b != bytes {
		t.Fatalf("held %d messages, %d parts, %d bytes; want %d, %d, %d", m, p, b, messages, parts, bytes)
	}
}

func TestReassembleInAnyOrder(t *testing.T) {
	for _, order := range [][]byte{{1, 2, 3}, {3, 2, 1}, {2, 3, 1}, {3, 1, 2}} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			h := newHarness(t, nil)
			k := key(77, 3)
			for i, seq := range order {
				out := h.add(t, k, seq, 0)
				if i < 2 {
					if out.Complete != nil {
						t.Fatalf("complete after %d parts", i+1)
					}
					h.held(t, 1, i+1, 100*(i+1))
					continue
				}
				if !slices.Equal(out.Complete, []part{"77/1", "77/2", "77/3"}) {
					t.Fatalf("complete: %v", out.Complete)
				}
			}
			h.held(t, 0, 0, 0)
			if len(h.drops) != 0 || h.set.GetOrCreateCounter(`smppd_reassembly_completed_total`).Get() != 1 {
				t.Fatalf("drops %v", h.drops)
			}
		})
	}
}

func TestReassembleKeysDoNotMix(t *testing.T) {
	h := newHarness(t, nil)
	base := key(1, 2)
	other := func(edit func(*Key)) Key { k := base; edit(&k); return k }
	keys := []Key{
		base,
		other(func(k *Key) { k.Account = "other" }),
		other(func(k *Key) { k.Src[0] = 'x' }),
		other(func(k *Key) { k.Dst[5] = '9' }),
		other(func(k *Key) { k.Ref = 2 }),
	}
	for _, k := range keys {
		if out := h.add(t, k, 1, 0); out.Complete != nil {
			t.Fatalf("%+v completed with one part", k)
		}
	}
	h.held(t, len(keys), len(keys), 100*len(keys))
	// Same reference, different total: another message (its own key).
	k3 := key(1, 3)
	if out := h.add(t, k3, 2, 0); out.Complete != nil {
		t.Fatal("total 3 completed")
	}
	for _, k := range keys {
		if out := h.add(t, k, 2, 0); len(out.Complete) != 2 {
			t.Fatalf("%+v: %v", k, out.Complete)
		}
	}
	h.held(t, 1, 1, 100)
}

func TestReassembleDuplicateReplaces(t *testing.T) {
	h := newHarness(t, nil)
	k := key(5, 2)
	h.add(t, k, 1, 0)
	out, err := h.r.Add(k, smpp.Concat{Ref: 5, Total: 2, Seq: 1}, "5/1 again", 150, 0)
	if err != nil || !out.HasReplaced || out.Replaced != "5/1" || out.Complete != nil {
		t.Fatalf("duplicate: %+v %v", out, err)
	}
	h.held(t, 1, 1, 150)
	out = h.add(t, k, 2, 1)
	if !slices.Equal(out.Complete, []part{"5/1 again", "5/2"}) || out.HasReplaced {
		t.Fatalf("complete: %+v", out)
	}
	h.held(t, 0, 0, 0)
}

func TestReassembleExpiry(t *testing.T) {
	h := newHarness(t, func(c *ReassemblerConfig[part]) { c.Timeout = 30 * time.Second })
	a, b := key(1, 3), key(2, 2)
	h.add(t, a, 1, 0)
	h.add(t, a, 3, 10) // the deadline counts from the first part
	h.add(t, b, 2, 20)
	if d, ok := h.r.NextDeadline(); !ok || d != int64(30*time.Second) {
		t.Fatalf("next deadline %d %v", d, ok)
	}
	if n := h.r.Expire(int64(29 * time.Second)); n != 0 || len(h.drops) != 0 {
		t.Fatalf("expired %d early", n)
	}
	if n := h.r.Expire(int64(30 * time.Second)); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	if len(h.drops) != 1 || h.drops[0].key != a || h.drops[0].why != DropExpired || !slices.Equal(h.drops[0].parts, []part{"1/1", "1/3"}) {
		t.Fatalf("drops %+v", h.drops)
	}
	h.held(t, 1, 1, 100)
	// A late part of the expired message starts a new one; Add expires b on the way.
	if out := h.add(t, a, 2, 55); out.Complete != nil {
		t.Fatal("late part completed an expired message")
	}
	if len(h.drops) != 2 || h.drops[1].key != b || !slices.Equal(h.drops[1].parts, []part{"2/2"}) {
		t.Fatalf("drops %+v", h.drops)
	}
	h.held(t, 1, 1, 100)
	if h.set.GetOrCreateCounter(`smppd_reassembly_dropped_total{reason="expired"}`).Get() != 2 {
		t.Fatal("expired counter")
	}
	if _, ok := newHarness(t, nil).r.NextDeadline(); ok {
		t.Fatal("deadline with nothing held")
	}
}

func TestReassembleBoundMessages(t *testing.T) {
	h := newHarness(t, func(c *ReassemblerConfig[part]) { c.MaxMessages = 3 })
	for ref := range uint16(3) {
		h.add(t, key(ref, 2), 1, int(ref))
	}
	h.add(t, key(9, 2), 1, 5) // evicts the oldest, ref 0
	if len(h.drops) != 1 || h.drops[0].key != key(0, 2) || h.drops[0].why != DropEvicted {
		t.Fatalf("drops %+v", h.drops)
	}
	h.held(t, 3, 3, 300)
	// A part of a held message needs no new slot: nothing evicted.
	if out := h.add(t, key(1, 2), 2, 6); len(out.Complete) != 2 || len(h.drops) != 1 {
		t.Fatalf("%+v, drops %+v", out, h.drops)
	}
	if h.set.GetOrCreateCounter(`smppd_reassembly_dropped_total{reason="evicted"}`).Get() != 1 {
		t.Fatal("evicted counter")
	}
}

func TestReassembleBoundBytesAndParts(t *testing.T) {
	h := newHarness(t, func(c *ReassemblerConfig[part]) { c.MaxBytes = 450; c.MaxParts = 255 })
	a, b := key(1, 5), key(2, 5)
	h.add(t, a, 1, 0)
	h.add(t, a, 2, 0)
	h.add(t, b, 1, 1)
	h.add(t, b, 2, 1)
	h.held(t, 2, 4, 400)
	h.add(t, b, 3, 2) // 500 > 450: a, the oldest, goes
	if len(h.drops) != 1 || h.drops[0].key != a || !slices.Equal(h.drops[0].parts, []part{"1/1", "1/2"}) {
		t.Fatalf("drops %+v", h.drops)
	}
	h.held(t, 1, 3, 300)
	h.add(t, b, 4, 3)
	// b alone cannot grow past the bound: refused, b kept.
	_, err := h.r.Add(b, smpp.Concat{Ref: 2, Total: 5, Seq: 5}, "2/5", 100, 4)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("got %v, want ErrFull", err)
	}
	_, err = h.r.Add(b, smpp.Concat{Ref: 2, Total: 5, Seq: 4}, "2/4 bigger", 200, 4)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("replacement: got %v, want ErrFull", err)
	}
	h.held(t, 1, 4, 400)
	if got := h.r.Take(b); !slices.Equal(got, []part{"2/1", "2/2", "2/3", "2/4"}) {
		t.Fatalf("take: %v", got)
	}
	h.held(t, 0, 0, 0)
	if h.r.Take(b) != nil {
		t.Fatal("take twice")
	}

	// Parts bound: 255 segments in all.
	h = newHarness(t, func(c *ReassemblerConfig[part]) { c.MaxParts = 255 })
	big := key(3, 255)
	for seq := 1; seq <= 200; seq++ {
		h.add(t, big, byte(seq), 0)
	}
	small := key(4, 100)
	for seq := 1; seq <= 55; seq++ {
		h.add(t, small, byte(seq), 1)
	}
	h.held(t, 2, 255, 25500)
	h.add(t, small, 56, 2) // one too many: big, the oldest, goes
	if len(h.drops) != 1 || h.drops[0].key != big || len(h.drops[0].parts) != 200 {
		t.Fatalf("drops: %d", len(h.drops))
	}
	h.held(t, 1, 56, 5600)
}

func TestReassembleRefusesBadSegments(t *testing.T) {
	h := newHarness(t, func(c *ReassemblerConfig[part]) { c.MaxBytes = 1000 })
	for _, c := range []smpp.Concat{{Total: 1, Seq: 1}, {Total: 3, Seq: 0}, {Total: 3, Seq: 4}, {Total: 4, Seq: 1}} {
		if _, err := h.r.Add(key(1, 3), c, "x", 10, 0); !errors.Is(err, ErrBadSegment) {
			t.Errorf("%+v: got %v", c, err)
		}
	}
	if _, err := h.r.Add(key(1, 3), smpp.Concat{Total: 3, Seq: 1}, "x", 1001, 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: got %v", err)
	}
	h.held(t, 0, 0, 0)
}

func TestReassemblerConfigValidate(t *testing.T) {
	for _, edit := range []func(*ReassemblerConfig[part]){
		func(c *ReassemblerConfig[part]) { c.MaxMessages = 0 },
		func(c *ReassemblerConfig[part]) { c.MaxParts = 254 },
		func(c *ReassemblerConfig[part]) { c.MaxBytes = 0 },
		func(c *ReassemblerConfig[part]) { c.Timeout = 0 },
	} {
		cfg := DefaultReassemblerConfig[part]()
		edit(&cfg)
		if _, err := NewReassembler(cfg); err == nil {
			t.Errorf("accepted %+v", cfg)
		}
	}
}

func TestReassemblerMetrics(t *testing.T) {
	h := newHarness(t, nil)
	h.add(t, key(1, 3), 1, 0)
	h.add(t, key(1, 3), 2, 0)
	for name, want := range map[string]float64{
		`smppd_reassembly_pending{kind="messages"}`:  1,
		`smppd_reassembly_pending{kind="parts"}`:     2,
		`smppd_reassembly_pending{kind="bytes"}`:     200,
		`smppd_reassembly_capacity{kind="messages"}`: 10_000,
		`smppd_reassembly_capacity{kind="bytes"}`:    4 << 20,
	} {
		if got := h.set.GetOrCreateGauge(name, nil).Get(); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestReassembleConcurrent: sessions add the segments of their own and shared messages at once;
// every message completes exactly once with its parts in order. Run with -race.
func TestReassembleConcurrent(t *testing.T) {
	h := newHarness(t, nil)
	const messages, total = 200, 4
	var mu sync.Mutex
	completed := map[uint16][]part{}
	var wg sync.WaitGroup
	for seq := byte(1); seq <= total; seq++ { // one goroutine per segment number
		wg.Go(func() {
			for ref := range uint16(messages) {
				out, err := h.r.Add(key(ref, total), smpp.Concat{Ref: ref, Total: total, Seq: seq}, fmt.Sprintf("%d/%d", ref, seq), 100, 0)
				if err != nil {
					t.Error(err)
					return
				}
				if out.Complete != nil {
					mu.Lock()
					completed[ref] = out.Complete
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(completed) != messages || len(h.drops) != 0 {
		t.Fatalf("%d completed, %d dropped", len(completed), len(h.drops))
	}
	for ref, parts := range completed {
		if want := []part{fmt.Sprintf("%d/1", ref), fmt.Sprintf("%d/2", ref), fmt.Sprintf("%d/3", ref), fmt.Sprintf("%d/4", ref)}; !slices.Equal(parts, want) {
			t.Fatalf("%d: %v", ref, parts)
		}
	}
	h.held(t, 0, 0, 0)
}
