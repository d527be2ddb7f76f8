package dedup

import (
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func key(n uint64) Key { return Key{n * 0x9E3779B97F4A7C15, n*0xC2B2AE3D27D4EB4F + 1} }

func newIndex(t *testing.T, c *clock, mod func(*Config)) *Index {
	t.Helper()
	cfg := testConfig(c)
	if mod != nil {
		mod(&cfg)
	}
	x, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestIndexLifecycle walks one key through its states, one step per row, on one index and clock.
func TestIndexLifecycle(t *testing.T) {
	c := newClock()
	x := newIndex(t, c, func(cfg *Config) { cfg.Window = 10 * time.Minute; cfg.InFlightTimeout = time.Minute })
	k := key(1)
	const id = 0x0123456789abcdef
	steps := []struct {
		name    string
		advance time.Duration
		do      func() // before Begin
		dup     bool
		state   State
		msgID   uint64
	}{
		{name: "first is the original", dup: false, state: InFlight},
		{name: "again while in flight", advance: time.Second, dup: true, state: InFlight},
		{name: "after acceptance", do: func() { x.Accepted(k, id) }, dup: true, state: Accepted, msgID: id},
		{name: "just inside the window", advance: 10*time.Minute - time.Second - time.Millisecond, dup: true, state: Accepted, msgID: id},
		{name: "at the window's end", advance: time.Millisecond, dup: false, state: InFlight},
		{name: "the new original is in flight", dup: true, state: InFlight},
		{name: "failed original: resubmission goes", do: func() { x.Failed(k) }, dup: false, state: InFlight},
		{name: "in flight within the timeout", advance: time.Minute - time.Millisecond, dup: true, state: InFlight},
		{name: "in flight past the timeout: lost", advance: time.Millisecond, dup: false, state: InFlight},
	}
	for _, s := range steps {
		c.Advance(s.advance)
		if s.do != nil {
			s.do()
		}
		if pe, pdup := x.Peek(k); pdup != s.dup || pdup && pe.State != s.state {
			t.Fatalf("%s: Peek: dup=%v %+v, want what Begin will say", s.name, pdup, pe)
		}
		e, dup := x.Begin(k)
		if dup != s.dup || e.State != s.state || e.MessageID != s.msgID {
			t.Fatalf("%s: got dup=%v %+v, want dup=%v state=%s id=%x", s.name, dup, e, s.dup, s.state, s.msgID)
		}
	}
	if other, dup := x.Begin(key(2)); dup || other.State != InFlight {
		t.Fatalf("another key: dup=%v %+v", dup, other)
	}
}

func TestIndexEntryTime(t *testing.T) {
	c := newClock()
	x := newIndex(t, c, nil)
	start := c.Now()
	x.Begin(key(1))
	c.Advance(1500 * time.Millisecond)
	e, dup := x.Begin(key(1))
	if !dup || e.At != start {
		t.Fatalf("dup=%v At=%d, want the original's time %d", dup, e.At, start)
	}
}

type waiter struct {
	calls    []uint64
	accepted []bool
	then     func(accepted bool)
}

func (w *waiter) OriginalDone(id uint64, accepted bool) {
	w.calls = append(w.calls, id)
	w.accepted = append(w.accepted, accepted)
	if w.then != nil {
		w.then(accepted)
	}
}

func TestIndexWaiters(t *testing.T) {
	c := newClock()
	x := newIndex(t, c, nil)
	k := key(1)

	// Accepted: every waiter is told once, with the id.
	x.Begin(k)
	w1, w2 := &waiter{}, &waiter{}
	for _, w := range []*waiter{w1, w2} {
		if e, dup := x.BeginWait(k, w); !dup || e.State != InFlight {
			t.Fatalf("dup=%v %+v", dup, e)
		}
	}
	if x.Waiting() != 2 {
		t.Fatalf("Waiting %d, want 2", x.Waiting())
	}
	x.Accepted(k, 42)
	x.Accepted(k, 43) // reported twice: nobody is told again
	for i, w := range []*waiter{w1, w2} {
		if len(w.calls) != 1 || w.calls[0] != 42 || !w.accepted[0] {
			t.Fatalf("waiter %d: %v %v", i, w.calls, w.accepted)
		}
	}
	if x.Waiting() != 0 {
		t.Fatalf("Waiting %d, want 0", x.Waiting())
	}
	// A duplicate of an accepted original does not wait.
	w3 := &waiter{}
	if e, dup := x.BeginWait(k, w3); !dup || e.State != Accepted || e.MessageID != 42 {
		t.Fatalf("dup=%v %+v", dup, e)
	}
	if x.Waiting() != 0 {
		t.Fatal("a duplicate of an accepted original must not wait")
	}

	// Failed: waiters are told, and the first to begin again becomes the original; the
	// second waits behind it (re-entrantly, from within the callback).
	k2 := key(2)
	x.Begin(k2)
	var first, second *waiter
	results := map[*waiter]bool{}
	first = &waiter{then: func(bool) { _, dup := x.BeginWait(k2, first); results[first] = dup }}
	second = &waiter{then: func(accepted bool) {
		if !accepted {
			_, dup := x.BeginWait(k2, second)
			results[second] = dup
		}
	}}
	x.BeginWait(k2, first)
	x.BeginWait(k2, second)
	x.Failed(k2)
	if dup, ok := results[first]; !ok || dup {
		t.Fatalf("first waiter after the failure: dup=%v ran=%v, want the new original", dup, ok)
	}
	if dup := results[second]; !dup {
		t.Fatal("second waiter must be a duplicate of the first")
	}
	x.Accepted(k2, 7)
	if len(second.calls) != 2 || second.calls[1] != 7 || !second.accepted[1] {
		t.Fatalf("second waiter: %v %v, want told 7 accepted", second.calls, second.accepted)
	}
	if len(first.calls) != 1 {
		t.Fatalf("the new original must not be told its own outcome: %v", first.calls)
	}
}

// TestIndexBounded inserts ten times MaxEntries keys and checks the count never exceeds it, that
// recent keys are still found, and that early rotations are counted.
func TestIndexBounded(t *testing.T) {
	c := newClock()
	set := metrics.NewSet()
	const maxEntries = 4096
	x := newIndex(t, c, func(cfg *Config) { cfg.MaxEntries = maxEntries; cfg.Metrics = set })
	for i := uint64(1); i <= 10*maxEntries; i++ {
		c.Advance(time.Millisecond) // all within one window: only the count rotates
		if _, dup := x.Begin(key(i)); dup {
			t.Fatalf("key %d: dup", i)
		}
		if i%64 == 0 || i > 10*maxEntries-64 {
			if n := x.Len(); n > maxEntries {
				t.Fatalf("after %d keys: %d held, max %d", i, n, maxEntries)
			}
		}
	}
	if n := x.Len(); n < maxEntries/2 {
		t.Fatalf("%d held: the bound should be used, not undershot", n)
	}
	recent := 0
	for i := uint64(10*maxEntries - 99); i <= 10*maxEntries; i++ {
		if _, dup := x.Begin(key(i)); dup {
			recent++
		}
	}
	if recent != 100 {
		t.Fatalf("%d of the 100 most recent keys remembered, want all", recent)
	}
	if v := set.GetOrCreateCounter(`smppd_dedup_early_rotations_total`).Get(); v == 0 {
		t.Fatal("early rotations not counted")
	}
}

// TestIndexExpiry checks that keys are dropped by time, without count pressure.
func TestIndexExpiry(t *testing.T) {
	c := newClock()
	x := newIndex(t, c, func(cfg *Config) { cfg.Window = time.Minute })
	for i := uint64(1); i <= 1000; i++ {
		x.Begin(key(i))
	}
	if n := x.Len(); n != 1000 {
		t.Fatalf("Len %d, want 1000", n)
	}
	// Three half-window rotations later every shard has dropped the old keys (32 consecutive
	// key numbers hit every shard).
	for round := 0; round < 3; round++ {
		c.Advance(31 * time.Second)
		for i := uint64(1_000_000); i < 1_000_000+10*shards; i++ {
			x.Begin(key(i + uint64(round)*1000))
		}
	}
	if n := x.Len(); n != 3*10*shards { // the three rounds' keys, none of the first 1000
		t.Fatalf("Len %d after a window and a half, want %d: old keys not dropped", n, 3*10*shards)
	}
	if _, dup := x.Begin(key(1)); dup {
		t.Fatal("an expired key must not be a duplicate")
	}
}

func TestIndexConcurrent(t *testing.T) {
	c := newClock()
	x := newIndex(t, c, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	originals := map[Key]int{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := uint64(0); i < 2000; i++ {
				k := key(i % 500)
				if _, dup := x.Begin(k); !dup {
					mu.Lock()
					originals[k]++
					mu.Unlock()
					if i%3 == 0 {
						x.Failed(k)
					} else {
						x.Accepted(k, i)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	for k, n := range originals {
		if n < 1 {
			t.Fatalf("key %x: no original", k)
		}
	}
	if len(originals) != 500 {
		t.Fatalf("%d keys had an original, want 500", len(originals))
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"zero window", func(c *Config) { c.Window = 0 }, false},
		{"window too long", func(c *Config) { c.Window = 8 * 24 * time.Hour }, false},
		{"too few entries", func(c *Config) { c.MaxEntries = 10 }, false},
		{"no in-flight timeout", func(c *Config) { c.InFlightTimeout = 0 }, false},
		{"unknown policy", func(c *Config) { c.Policy = 9 }, false},
		{"reject with ESME_ROK", func(c *Config) { c.Policy = Reject; c.RejectStatus = 0 }, false},
		{"near enabled defaults", func(c *Config) { c.NearDup.Enabled = true }, true},
		{"near distance 8", func(c *Config) { c.NearDup.Enabled = true; c.NearDup.MaxDistance = 8 }, false},
		{"near max 0", func(c *Config) { c.NearDup.Enabled = true; c.NearDup.Max = 0 }, false},
		{"near status ESME_ROK", func(c *Config) { c.NearDup.Enabled = true; c.NearDup.Status = 0 }, false},
		{"near disabled is not checked", func(c *Config) { c.NearDup.Max = 0 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mod(&cfg)
			if err := cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
