package router

import (
	"sync"
	"time"
)

// IDMap records which upstream message id stands behind each message_id smppd issued; delivery
// receipts are matched through it. Put is on the hot path and must not block for long.
type IDMap interface {
	Put(id uint64, upstream string, upstreamID []byte)
	Get(id uint64) (upstream string, upstreamID string, ok bool)
}

const (
	idMapShards = 16
	// ttlCheckEvery is how many puts a shard takes between clock reads for its TTL.
	ttlCheckEvery = 1024
)

// MemIDMap is a bounded in-memory IDMap: two generations per shard, the older dropped when the
// newer is TTL old or holds its share of the limit, so an entry lives at least min(TTL, the
// time to fill half the limit). A generation is an append-only log: ids, offsets, and a byte
// arena of (upstream index, length, id), so Put is three appends, with no hashing and no
// allocation per entry. Get, for the admin API, scans backwards: newest first, microseconds per
// shard. Durable mappings that survive restarts are the receipts store's job.
type MemIDMap struct {
	ttl    time.Duration
	perGen int
	shards [idMapShards]idShard
}

type idShard struct {
	mu        sync.Mutex
	cur, prev idGen    // guarded by mu
	born      int64    // guarded by mu: unix nanos when cur was started
	puts      int      // guarded by mu: puts since the last TTL check
	ups       []string // guarded by mu: upstream names by index (few)
	_         [64]byte // keep shards on separate cache lines
}

type idGen struct {
	ids   []uint64
	offs  []uint32
	arena []byte
}

func newIDGen(n int) idGen {
	return idGen{ids: make([]uint64, 0, n), offs: make([]uint32, 0, n), arena: make([]byte, 0, n*12)}
}

// NewMemIDMap returns a map holding up to maxEntries mappings for at least ttl (or until full).
func NewMemIDMap(ttl time.Duration, maxEntries int) *MemIDMap {
	m := &MemIDMap{ttl: ttl, perGen: max(maxEntries/idMapShards/2, 1)}
	now := time.Now().UnixNano()
	for i := range m.shards {
		m.shards[i].cur = newIDGen(0)
		m.shards[i].born = now
	}
	return m
}

// Put implements IDMap. Upstream ids longer than 255 octets are truncated (SMPP allows 64).
func (m *MemIDMap) Put(id uint64, upstream string, upstreamID []byte) {
	s := &m.shards[id%idMapShards]
	if len(upstreamID) > 255 {
		upstreamID = upstreamID[:255]
	}
	s.mu.Lock()
	if s.puts++; s.puts >= ttlCheckEvery || len(s.cur.ids) >= m.perGen {
		s.puts = 0
		now := time.Now().UnixNano()
		if len(s.cur.ids) >= m.perGen || time.Duration(now-s.born) > m.ttl {
			s.prev, s.cur, s.born = s.cur, newIDGen(min(len(s.cur.ids), m.perGen)), now
		}
	}
	up := s.upIndex(upstream)
	s.cur.ids = append(s.cur.ids, id)
	s.cur.offs = append(s.cur.offs, uint32(len(s.cur.arena)))
	s.cur.arena = append(append(s.cur.arena, up, byte(len(upstreamID))), upstreamID...)
	s.mu.Unlock()
}

func (s *idShard) upIndex(name string) uint8 {
	for i, n := range s.ups {
		if n == name {
			return uint8(i)
		}
	}
	s.ups = append(s.ups, name)
	return uint8(len(s.ups) - 1)
}

// Get implements IDMap.
func (m *MemIDMap) Get(id uint64) (string, string, bool) {
	s := &m.shards[id%idMapShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range [...]*idGen{&s.cur, &s.prev} {
		for i := len(g.ids) - 1; i >= 0; i-- {
			if g.ids[i] == id {
				e := g.arena[g.offs[i]:]
				return s.ups[e[0]], string(e[2 : 2+int(e[1])]), true
			}
		}
	}
	return "", "", false
}

// Len returns the number of mappings held.
func (m *MemIDMap) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.cur.ids) + len(s.prev.ids)
		s.mu.Unlock()
	}
	return n
}
