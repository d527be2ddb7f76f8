package dedup

import (
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func newNear(t *testing.T, c *clock, mod func(*NearConfig)) *Near {
	t.Helper()
	cfg := DefaultNearConfig()
	cfg.Enabled = true
	if mod != nil {
		mod(&cfg)
	}
	n, err := NewNear(cfg, c.Now, metrics.NewSet())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNearLimit runs one sequence of messages against a limit of 5 per 10 minutes.
func TestNearLimit(t *testing.T) {
	c := newClock()
	n := newNear(t, c, func(cfg *NearConfig) { cfg.Max = 5; cfg.Window = 10 * time.Minute })
	acme, other := uint64(1001), uint64(1002)
	code := func(s string) uint64 { return fp(t, "Your code is "+s+". Do not share it.", codingGSM7) }
	unrelated := fp(t, "Meeting moved to 3pm, bring the slides", codingGSM7)
	steps := []struct {
		name    string
		advance time.Duration
		tag, fp uint64
		allow   bool
	}{
		{"1st", 0, acme, code("1111"), true},
		{"2nd", time.Second, acme, code("2222"), true},
		{"3rd", time.Second, acme, code("3333"), true},
		{"4th", time.Second, acme, code("4444"), true},
		{"5th", time.Second, acme, code("5555"), true},
		{"6th: over the limit", time.Second, acme, code("6666"), false},
		{"7th: still over (refusals are not counted)", time.Minute, acme, code("7777"), false},
		{"unrelated text of the same account", 0, acme, unrelated, true},
		{"the same template from another account", 0, other, code("1111"), true},
		// 15 minutes after the first: the first window's 5 weigh half in the second.
		{"half a window later: 2.5+0", 15*time.Minute - 4*time.Second - time.Minute, acme, code("8888"), true},
		{"2.5+1", 0, acme, code("8888"), true},
		{"2.5+2", 0, acme, code("8888"), true},
		{"2.5+3: over", 0, acme, code("8888"), false},
		{"two idle windows later: all forgotten", 20 * time.Minute, acme, code("9999"), true},
		{"2nd of the new window", 0, acme, code("9999"), true},
	}
	for _, s := range steps {
		c.Advance(s.advance)
		if got := n.Peek(s.tag, s.fp); got != s.allow {
			t.Fatalf("%s: Peek=%v, want what Allow will say, %v", s.name, got, s.allow)
		}
		if got := n.Allow(s.tag, s.fp); got != s.allow {
			t.Fatalf("%s: Allow=%v, want %v", s.name, got, s.allow)
		}
	}
}

// TestNearDistance checks the pigeonhole lookup: fingerprints within MaxDistance share a
// cluster wherever the differing bits are; one more bit apart and they do not.
func TestNearDistance(t *testing.T) {
	for _, d := range []int{0, 1, 3, 5, 7} {
		c := newClock()
		n := newNear(t, c, func(cfg *NearConfig) { cfg.Max = 1; cfg.MaxDistance = d })
		const base = 0x0123456789abcdef
		// d bits flipped, spread over the bands (every 64/(d+1)+1-th bit).
		within, beyond := uint64(base), uint64(base)
		for i := 0; i < d; i++ {
			within ^= 1 << (i * 64 / (d + 1))
		}
		for i := 0; i <= d; i++ {
			beyond ^= 1 << (i*64/(d+1) + 1) // one bit in every band: no band matches
		}
		if !n.Allow(1, base) {
			t.Fatalf("d=%d: first refused", d)
		}
		if n.Allow(1, within) {
			t.Fatalf("d=%d: %d bits apart not in the cluster", d, Distance(base, within))
		}
		if !n.Allow(1, beyond) {
			t.Fatalf("d=%d: %d bits apart counted in the cluster", d, Distance(base, beyond))
		}
	}
}

// TestNearBounded inserts many distinct texts of one account and checks the clusters in use
// never exceed the capacity, while a busy cluster keeps its count (is not evicted).
func TestNearBounded(t *testing.T) {
	c := newClock()
	const maxClusters = nearShards * ways * 8 // 32 per shard; one account uses one shard
	n := newNear(t, c, func(cfg *NearConfig) { cfg.Max = 50; cfg.MaxClusters = maxClusters })
	hot := fp(t, "Your code is 1234", codingGSM7)
	var x uint64 = 1
	hotAllowed := 0
	for i := 0; i < 10_000; i++ {
		if i%4 == 0 {
			if n.Allow(7, hot) {
				hotAllowed++
			}
			continue
		}
		x = mix64(x) // a random fingerprint: far from everything
		n.Allow(7, x)
		if used := n.Len(); used > maxClusters {
			t.Fatalf("%d clusters in use, capacity %d", used, maxClusters)
		}
	}
	if hotAllowed != 50 {
		t.Fatalf("busy cluster let %d through, want 50: it was evicted and its count lost", hotAllowed)
	}
	if used := n.Len(); used != maxClusters/nearShards {
		t.Fatalf("%d clusters in use, want the account's shard full (%d)", used, maxClusters/nearShards)
	}
}

func TestNearConcurrent(t *testing.T) {
	c := newClock()
	n := newNear(t, c, func(cfg *NearConfig) { cfg.Max = 1000 })
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				if n.Allow(42, 0xfeedface) {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 1000 {
		t.Fatalf("%d allowed, want exactly the limit 1000", allowed)
	}
}
