package dedup

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/smpp"
)

// State is the state of an original message.
type State uint8

const (
	// InFlight: forwarded, the upstream has not answered yet.
	InFlight State = iota + 1
	// Accepted: the client was answered ESME_ROK with Entry.MessageID.
	Accepted
)

func (s State) String() string {
	switch s {
	case InFlight:
		return "in_flight"
	case Accepted:
		return "accepted"
	}
	return "none"
}

// Entry is what the index knows about an original.
type Entry struct {
	State     State
	MessageID uint64 // when Accepted: the id the client got (16 hex digits, see router.FormatID)
	At        int64  // unix nanos (millisecond precision) at which the original was begun
}

// Waiter is a duplicate waiting for its in-flight original's outcome. OriginalDone is called
// exactly once: accepted with the original's message_id, or not accepted (the original failed:
// the duplicate may go, and should run BeginWait again to become the new original). It runs on
// the goroutine that calls Accepted or Failed, after the index lock is released; it must not
// block. router.Message can implement it without importing this package.
type Waiter interface {
	OriginalDone(messageID uint64, accepted bool)
}

const (
	shards      = 32 // power of two: the shard is the key's low bits
	generations = 3
)

// entry is an Entry in a generation: 16 octets, no pointers (the GC does not scan the maps).
type entry struct {
	id    uint64
	at    uint32 // milliseconds after the generation's start
	state State
}

type generation struct {
	m     map[Key]entry
	start int64 // unix nanos
}

// shard is a slice of the key space with its own lock and generations.
type shard struct {
	mu      sync.Mutex
	gens    [generations]generation // guarded by mu
	cur     int                     // guarded by mu: index in gens of the newest generation
	waiters map[Key][]Waiter        // guarded by mu; nil until a duplicate waits
	_       [64]byte                // keep shards' locks off one another's cache lines
}

// Index remembers the keys of recent originals and their state. Safe for concurrent use.
//
// Memory: keys live in generations (three per shard, 32 shards), each a Go map. A new key goes
// into the newest generation; the newest becomes the middle and the oldest is emptied and reused
// as the newest when the newest is Window/2 old, or when it holds MaxEntries/96 keys. So at most
// MaxEntries keys are held (about 60 bytes each in the maps, kept after a peak), and a key is
// remembered at least Window unless MaxEntries forces an early rotation. Whether a remembered
// key is still a duplicate is decided by its own time, so the window is exact.
type Index struct {
	window   int64 // nanos
	inFlight int64 // nanos
	span     int64 // nanos a generation is the newest
	perGen   int   // keys per generation per shard
	now      func() int64
	waiting  atomic.Int64
	early    *metrics.Counter

	shards [shards]shard
}

// New returns an index configured by cfg (its NearDup part is not used).
func New(cfg Config) (*Index, error) {
	nd := cfg.NearDup
	nd.Enabled = false // validated by NewNear
	cfg.NearDup = nd
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = smpp.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	x := &Index{
		window:   int64(cfg.Window),
		inFlight: int64(cfg.InFlightTimeout),
		span:     int64(cfg.Window) / (generations - 1),
		perGen:   cfg.MaxEntries / (generations * shards),
		now:      cfg.Now,
	}
	start := cfg.Now()
	for i := range x.shards {
		s := &x.shards[i]
		for g := range s.gens {
			s.gens[g] = generation{m: map[Key]entry{}, start: start}
		}
	}
	set := cfg.Metrics
	x.early = set.GetOrCreateCounter(`smppd_dedup_early_rotations_total`)
	set.GetOrCreateGauge(`smppd_dedup_entries`, func() float64 { return float64(x.Len()) })
	capacity := float64(x.perGen * generations * shards)
	set.GetOrCreateGauge(`smppd_dedup_entries_capacity`, func() float64 { return capacity })
	set.GetOrCreateGauge(`smppd_dedup_waiting`, func() float64 { return float64(x.waiting.Load()) })
	return x, nil
}

func (x *Index) shard(k Key) *shard { return &x.shards[k[1]&(shards-1)] }

// Begin is BeginWait without a waiter.
func (x *Index) Begin(key Key) (orig Entry, dup bool) { return x.BeginWait(key, nil) }

// BeginWait looks key up. If an original with that key was begun within the window and has not
// failed, it returns that original's Entry and dup true; when that original is still in flight
// and w is non-nil, w is registered and will be told the outcome. Otherwise the message becomes
// the original: it is recorded in flight and BeginWait returns its Entry and dup false, and the
// caller must report its outcome with exactly one Accepted or Failed.
//
// An in-flight original older than InFlightTimeout counts as lost: the message becomes the new
// original (waiters of the old one are told the new one's outcome).
func (x *Index) BeginWait(key Key, w Waiter) (orig Entry, dup bool) {
	now := x.now()
	s := x.shard(key)
	s.mu.Lock()
	if now-s.gens[s.cur].start >= x.span {
		s.rotate(now)
	}
	if e, ok := x.find(s, key, now); ok {
		if e.State == InFlight && w != nil {
			if s.waiters == nil {
				s.waiters = map[Key][]Waiter{}
			}
			s.waiters[key] = append(s.waiters[key], w)
			x.waiting.Add(1)
		}
		s.mu.Unlock()
		return e, true
	}
	g := &s.gens[s.cur]
	if len(g.m) >= x.perGen {
		if _, ok := g.m[key]; !ok {
			s.rotate(now)
			x.early.Inc()
			g = &s.gens[s.cur]
		}
	}
	ms := max(now-g.start, 0) / int64(time.Millisecond)
	g.m[key] = entry{at: uint32(ms), state: InFlight}
	s.mu.Unlock()
	return Entry{State: InFlight, At: g.start + ms*int64(time.Millisecond)}, false
}

// Peek reports what Begin would, without recording anything: for dry runs.
func (x *Index) Peek(key Key) (orig Entry, dup bool) {
	now := x.now()
	s := x.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return x.find(s, key, now)
}

// find returns the entry of a live original with key: begun within the window and, if in
// flight, within the in-flight timeout. s.mu must be held.
func (x *Index) find(s *shard, key Key, now int64) (Entry, bool) {
	for i := 0; i < generations; i++ {
		g := &s.gens[(s.cur+generations-i)%generations]
		e, ok := g.m[key]
		if !ok {
			continue
		}
		at := g.start + int64(e.at)*int64(time.Millisecond)
		age := now - at
		if age >= x.window || e.state == InFlight && age >= x.inFlight {
			return Entry{}, false // expired or lost; older generations hold older entries
		}
		return Entry{State: e.state, MessageID: e.id, At: at}, true
	}
	return Entry{}, false
}

// rotate empties the oldest generation and makes it the newest. s.mu must be held.
func (s *shard) rotate(now int64) {
	s.cur = (s.cur + 1) % generations
	g := &s.gens[s.cur]
	clear(g.m) // keeps the map's memory: no allocation once traffic has peaked
	g.start = now
}

// Accepted records that the original with key was accepted with messageID and tells its
// waiters.
func (x *Index) Accepted(key Key, messageID uint64) {
	s := x.shard(key)
	s.mu.Lock()
	for i := 0; i < generations; i++ {
		g := &s.gens[(s.cur+generations-i)%generations]
		if e, ok := g.m[key]; ok {
			if e.state == InFlight {
				e.state, e.id = Accepted, messageID
				g.m[key] = e
			}
			break
		}
	}
	ws := s.detach(key)
	s.mu.Unlock()
	x.notify(ws, messageID, true)
}

// Failed forgets the original with key: a message with the same key may go. Its waiters are
// told (not accepted).
func (x *Index) Failed(key Key) {
	s := x.shard(key)
	s.mu.Lock()
	for i := range s.gens {
		delete(s.gens[i].m, key)
	}
	ws := s.detach(key)
	s.mu.Unlock()
	x.notify(ws, 0, false)
}

// detach removes and returns key's waiters. s.mu must be held.
func (s *shard) detach(key Key) []Waiter {
	if len(s.waiters) == 0 {
		return nil
	}
	ws := s.waiters[key]
	if ws != nil {
		delete(s.waiters, key)
	}
	return ws
}

func (x *Index) notify(ws []Waiter, id uint64, accepted bool) {
	if len(ws) == 0 {
		return
	}
	x.waiting.Add(-int64(len(ws)))
	for _, w := range ws {
		w.OriginalDone(id, accepted)
	}
}

// Len returns the number of keys held, expired ones not yet dropped included.
func (x *Index) Len() int {
	n := 0
	for i := range x.shards {
		s := &x.shards[i]
		s.mu.Lock()
		for g := range s.gens {
			n += len(s.gens[g].m)
		}
		s.mu.Unlock()
	}
	return n
}

// Waiting returns the number of duplicates waiting for their original's outcome.
func (x *Index) Waiting() int { return int(x.waiting.Load()) }
