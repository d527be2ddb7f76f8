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

const idMapShards = 16

// MemIDMap is a bounded in-memory IDMap: two generations per shard, the older dropped when the
// newer is TTL old or holds its share of the limit. An entry lives at least min(TTL, time to fill
// half the limit). Durable mappings (surviving restarts) are the receipts store's job.
type MemIDMap struct {
	ttl    time.Duration
	perGen int
	shards [idMapShards]idShard
}

type idShard struct {
	mu        sync.Mutex
	cur, prev map[uint64]idEntry // guarded by mu
	born      time.Time          // guarded by mu: when cur was started
	ups       []string           // guarded by mu: upstream names by index (few)
}

type idEntry struct {
	up uint8
	n  uint8
	id [64]byte
}

// NewMemIDMap returns a map holding up to maxEntries mappings for at least ttl (or until full).
func NewMemIDMap(ttl time.Duration, maxEntries int) *MemIDMap {
	m := &MemIDMap{ttl: ttl, perGen: max(maxEntries/idMapShards/2, 1)}
	for i := range m.shards {
		m.shards[i].cur = make(map[uint64]idEntry)
		m.shards[i].born = time.Now()
	}
	return m
}

// Put implements IDMap. Upstream ids longer than 64 octets are truncated (SMPP allows 65 with
// the NUL, so none are).
func (m *MemIDMap) Put(id uint64, upstream string, upstreamID []byte) {
	s := &m.shards[id%idMapShards]
	var e idEntry
	e.n = uint8(copy(e.id[:], upstreamID))
	s.mu.Lock()
	e.up = s.upIndex(upstream)
	if len(s.cur) >= m.perGen || time.Since(s.born) > m.ttl {
		s.prev, s.cur, s.born = s.cur, make(map[uint64]idEntry, len(s.cur)), time.Now()
	}
	s.cur[id] = e
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
	e, ok := s.cur[id]
	if !ok {
		e, ok = s.prev[id]
	}
	if !ok {
		return "", "", false
	}
	return s.ups[e.up], string(e.id[:e.n]), true
}

// Len returns the number of mappings held.
func (m *MemIDMap) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.cur) + len(s.prev)
		s.mu.Unlock()
	}
	return n
}
