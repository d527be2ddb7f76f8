package store

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// funcOp adapts two funcs to Op.
type funcOp struct {
	apply func(tx *Tx)
	done  func(err error)
}

func (f funcOp) Apply(tx *Tx) {
	if f.apply != nil {
		f.apply(tx)
	}
}

func (f funcOp) Done(err error) {
	if f.done != nil {
		f.done(err)
	}
}

// do runs apply as one op and waits until it is durable.
func do(t testing.TB, l *Local, apply func(tx *Tx)) {
	t.Helper()
	ch := make(chan error, 1)
	l.Do(funcOp{apply, func(err error) { ch <- err }})
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func open(t testing.TB, dir string, c *clock) *Local {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir, cfg.Logger = dir, slog.New(slog.DiscardHandler)
	if c != nil {
		cfg.Now = c.now
	}
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func getMapping(t testing.TB, l *Local, up, id string) (string, bool) {
	var v []byte
	var ok bool
	do(t, l, func(tx *Tx) { v, _, ok = tx.GetMapping(nil, up, []byte(id)) })
	return string(v), ok
}

func TestMappingTTLAndBuckets(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC)}
	l := open(t, t.TempDir(), c)
	defer l.Close()
	do(t, l, func(tx *Tx) { tx.PutMapping("a", []byte("17"), []byte("first")) })
	c.add(2 * time.Hour)
	do(t, l, func(tx *Tx) {
		tx.PutMapping("a", []byte("18"), []byte("second"))
		// Read-your-writes inside a group, and upstreams are separate key spaces.
		if v, _, ok := tx.GetMapping(nil, "a", []byte("18")); !ok || string(v) != "second" {
			t.Errorf("own write not visible: %q %v", v, ok)
		}
		if _, _, ok := tx.GetMapping(nil, "b", []byte("18")); ok {
			t.Error("mapping of upstream a found under upstream b")
		}
	})
	if v, ok := getMapping(t, l, "a", "17"); !ok || v != "first" {
		t.Fatalf("2h-old mapping: %q %v", v, ok)
	}
	// Update in place keeps it in its bucket.
	do(t, l, func(tx *Tx) {
		_, m, ok := tx.GetMapping(nil, "a", []byte("17"))
		if !ok {
			t.Fatal("not found")
		}
		tx.SetMapping(m, "a", []byte("17"), []byte("first+seen"))
	})
	if v, _ := getMapping(t, l, "a", "17"); v != "first+seen" {
		t.Fatalf("after SetMapping: %q", v)
	}
	// 72h after the first write (71h58 after the second): the first is beyond the TTL.
	c.add(71 * time.Hour)
	if _, ok := getMapping(t, l, "a", "17"); ok {
		t.Fatal("mapping older than the TTL still found")
	}
	if _, ok := getMapping(t, l, "a", "18"); !ok {
		t.Fatal("mapping younger than the TTL lost")
	}
	// Expire removes it from disk too: it stays gone when the clock steps back.
	do(t, l, (&ExpireOp{}).Apply)
	c.add(-71 * time.Hour)
	if _, ok := getMapping(t, l, "a", "17"); ok {
		t.Fatal("expired mapping still on disk")
	}
	if _, ok := getMapping(t, l, "a", "18"); !ok {
		t.Fatal("Expire removed a live mapping")
	}
}

func outbox(t testing.TB, l *Local, acct string, after uint64) (seqs []uint64, vals []string) {
	t.Helper()
	if err := l.Outbox(acct, after, ^uint64(0)-1, 1000, func(seq uint64, v []byte) bool {
		seqs, vals = append(seqs, seq), append(vals, string(v))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return seqs, vals
}

func TestOutboxOrderRemoveReopen(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	l := open(t, dir, c)
	var seqs []uint64
	do(t, l, func(tx *Tx) {
		for i := range 5 {
			seqs = append(seqs, tx.Enqueue("shop", []byte(fmt.Sprint("r", i))))
		}
		tx.Enqueue("shopx", []byte("other")) // an account whose name extends another's
		tx.Enqueue("bank", []byte("b0"))
	})
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("sequence numbers not increasing: %v", seqs)
		}
	}
	do(t, l, func(tx *Tx) { tx.Remove("shop", seqs[1]) })
	got, vals := outbox(t, l, "shop", 0)
	if want := []string{"r0", "r2", "r3", "r4"}; fmt.Sprint(vals) != fmt.Sprint(want) {
		t.Fatalf("shop outbox %v, want %v", vals, want)
	}
	if _, v := outbox(t, l, "shop", got[1]); fmt.Sprint(v) != "[r3 r4]" {
		t.Fatalf("after %d: %v", got[1], v)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The clock steps back a day: sequence numbers must still not repeat.
	c.add(-24 * time.Hour)
	l = open(t, dir, c)
	defer l.Close()
	p, err := l.Pending()
	if err != nil {
		t.Fatal(err)
	}
	if p["shop"] != 4 || p["shopx"] != 1 || p["bank"] != 1 {
		t.Fatalf("pending after reopen: %v", p)
	}
	var s uint64
	do(t, l, func(tx *Tx) { s = tx.Enqueue("shop", []byte("r5")) })
	if s <= seqs[len(seqs)-1] {
		t.Fatalf("sequence %d after reopen repeats or goes below %d", s, seqs[len(seqs)-1])
	}
}

func TestOutboxExpire(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	l := open(t, t.TempDir(), c)
	defer l.Close()
	do(t, l, func(tx *Tx) { tx.Enqueue("a", []byte("old")); tx.Enqueue("b", []byte("old")) })
	c.add(48 * time.Hour)
	do(t, l, func(tx *Tx) { tx.Enqueue("a", []byte("new")) })
	c.add(25 * time.Hour) // the first two are 73h old, the third 25h
	expired := map[string]int{}
	do(t, l, (&ExpireOp{Expired: func(a string, n int) { expired[a] += n }}).Apply)
	if expired["a"] != 1 || expired["b"] != 1 || len(expired) != 2 {
		t.Fatalf("expired %v", expired)
	}
	if _, v := outbox(t, l, "a", 0); fmt.Sprint(v) != "[new]" {
		t.Fatalf("a after expiry: %v", v)
	}
	if _, v := outbox(t, l, "b", 0); len(v) != 0 {
		t.Fatalf("b after expiry: %v", v)
	}
}

// TestGroupCommit: concurrent writers all get Done once, in Do order per writer, and the store
// groups them (fewer commits than ops).
func TestGroupCommit(t *testing.T) {
	l := open(t, t.TempDir(), nil)
	const writers, each = 8, 500
	var applied atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan error, each)
			for i := range each {
				l.Do(funcOp{func(tx *Tx) {
					applied.Add(1)
					tx.PutMapping("u", fmt.Appendf(nil, "%d-%d", w, i), []byte("v"))
				}, func(err error) { done <- err }})
			}
			for range each {
				if err := <-done; err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if applied.Load() != writers*each {
		t.Fatalf("applied %d ops, want %d", applied.Load(), writers*each)
	}
	groups, ops := l.Commits()
	if ops != writers*each || groups*4 > ops {
		t.Fatalf("%d ops in %d commits: writes were not grouped", ops, groups)
	}
	t.Logf("%d ops in %d commits", ops, groups)
	l.Close()
	// After Close, Do fails fast with ErrClosed.
	var err error
	l.Do(funcOp{nil, func(e error) { err = e }})
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close: %v", err)
	}
}

// TestDurableAcrossKill: a child process acknowledges writes on stdout only from Done, then
// is killed with SIGKILL mid-stream; every acknowledged write must be in the reopened store.
func TestDurableAcrossKill(t *testing.T) {
	if dir := os.Getenv("STORE_KILL_CHILD"); dir != "" {
		killChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDurableAcrossKill$")
	cmd.Env = append(os.Environ(), "STORE_KILL_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var acked []int
	for sc.Scan() && len(acked) < 3000 {
		if n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "ack ")); err == nil {
			acked = append(acked, n)
		}
	}
	_ = cmd.Process.Kill() // SIGKILL: no deferred code, no Close, no flush
	_ = cmd.Wait()
	if len(acked) < 3000 {
		t.Fatalf("child acknowledged only %d writes", len(acked))
	}
	l := open(t, dir, nil)
	defer l.Close()
	for _, n := range acked {
		if _, ok := getMapping(t, l, "up", strconv.Itoa(n)); !ok {
			t.Fatalf("acknowledged write %d lost across SIGKILL", n)
		}
	}
	p, _ := l.Pending()
	if p["acct"] < len(acked) {
		t.Fatalf("outbox holds %d items, %d were acknowledged", p["acct"], len(acked))
	}
}

func killChild(dir string) {
	cfg := DefaultConfig()
	cfg.Dir, cfg.Logger = dir, slog.New(slog.DiscardHandler)
	l, err := Open(cfg)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		l.Do(funcOp{func(tx *Tx) {
			tx.PutMapping("up", []byte(strconv.Itoa(i)), []byte("x"))
			tx.Enqueue("acct", []byte("item"))
		}, func(err error) {
			if err != nil {
				return
			}
			mu.Lock()
			fmt.Fprintf(w, "ack %d\n", i)
			w.Flush()
			mu.Unlock()
		}})
	}
}

// TestExpiryReclaimsDisk: mappings past the TTL are deleted by range and compacted away, so
// the store's size is bounded by TTL x rate.
func TestExpiryReclaimsDisk(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	l := open(t, t.TempDir(), c)
	defer l.Close()
	value := []byte("\x01\x05\x54\x97\x4c\xc1\x40\x10\x00\x04demo")
	for batch := range 20 {
		do(t, l, func(tx *Tx) {
			for i := range 5000 {
				tx.PutMapping("sim", []byte(strconv.Itoa(batch*5000+i)), value)
			}
		})
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	full := l.TableBytes()
	c.add(74 * time.Hour)
	do(t, l, (&ExpireOp{}).Apply)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	after := l.TableBytes()
	t.Logf("100000 mappings: %d bytes of tables, %d after expiry and compaction", full, after)
	if after*2 > full {
		t.Fatalf("expiry reclaimed too little: %d bytes before, %d after", full, after)
	}
	if _, ok := getMapping(t, l, "sim", "77"); ok {
		t.Fatal("expired mapping still found")
	}
}
