package recipient

import (
	"testing"
	"time"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

type clock struct{ t int64 }

func (c *clock) now() int64 { return c.t }

func TestDailyCap(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC).UnixNano()}
	s, err := New(Config{DailyCap: 3, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	send := func(dest uint64, lane router.Lane) smpp.Status {
		m := &router.Message{Dest: dest, Lane: lane}
		return s.Process(m).Status
	}
	for i := 0; i < 3; i++ {
		if st := send(4915112345678, router.LaneBulk); st != 0 {
			t.Fatalf("message %d: %v, want through", i+1, st)
		}
	}
	if st := send(4915112345678, router.LaneBulk); st != 0x45 {
		t.Fatalf("4th marketing message: %v, want 0x45", st)
	}
	if st := send(4915112345678, router.LaneOTP); st != 0 {
		t.Fatalf("an OTP over the cap: %v, want through (codes are never capped)", st)
	}
	if st := send(4915112345679, router.LaneBulk); st != 0 {
		t.Fatalf("another number: %v", st)
	}
	m := &router.Message{Dest: 4915112345678, Trace: &router.Trace{}}
	if v := s.Process(m); v.Status != 0x45 || len(m.Trace.Steps) != 1 {
		t.Fatalf("dry run: %+v %+v", v, m.Trace)
	}
	c.t += int64(14 * time.Hour) // next UTC day
	if st := send(4915112345678, router.LaneBulk); st != 0 {
		t.Fatalf("next day: %v, want the count reset", st)
	}
}

func TestDryRunDoesNotCount(t *testing.T) {
	s, _ := New(Config{DailyCap: 1, Now: (&clock{t: 1}).now})
	for i := 0; i < 3; i++ {
		s.Process(&router.Message{Dest: 1, Trace: &router.Trace{}})
	}
	if st := s.Process(&router.Message{Dest: 1}).Status; st != 0 {
		t.Fatalf("after dry runs: %v, want the first real message through", st)
	}
}

func TestBoundedFailsOpen(t *testing.T) {
	s, _ := New(Config{DailyCap: 1, MaxEntries: shards, Now: (&clock{t: 1}).now}) // one number per shard
	for d := uint64(0); d < 100; d++ {
		if st := s.Process(&router.Message{Dest: 1000 + d}).Status; st != 0 {
			t.Fatalf("number %d: %v", d, st)
		}
	}
	n := 0
	for i := range s.shards {
		n += len(s.shards[i].counts)
	}
	if n > shards {
		t.Fatalf("tracking %d numbers, above the bound %d", n, shards)
	}
	if s.untracked.Get() == 0 {
		t.Fatal("untracked numbers not counted")
	}
}

func BenchmarkStage(b *testing.B) {
	s, _ := New(Config{DailyCap: 1 << 30})
	m := &router.Message{}
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		i++
		m.Dest = 4915100000000 + i%100000
		s.Process(m)
	}
}
