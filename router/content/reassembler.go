package content

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/smpp"
)

// Key identifies a concatenated message: the account, the addresses and the reference and total
// its segments share.
type Key struct {
	Account  string
	Src, Dst [20]byte // zero padded (addresses are at most 20 octets and never hold a NUL)
	Ref      uint16
	Total    byte
}

// KeyOf returns the key of segment c of s, sent by account.
func KeyOf(account string, s *smpp.Submit, c smpp.Concat) Key {
	k := Key{Account: account, Ref: c.Ref, Total: c.Total}
	copy(k.Src[:], s.SrcAddr)
	copy(k.Dst[:], s.DstAddr)
	return k
}

// DropReason says why an incomplete message was dropped.
type DropReason uint8

const (
	DropExpired DropReason = iota + 1 // its first segment was held for Timeout
	DropEvicted                       // the oldest, dropped to make room within the bounds
)

func (r DropReason) String() string {
	switch r {
	case DropExpired:
		return "expired"
	case DropEvicted:
		return "evicted"
	}
	return "unknown"
}

// Reassembler errors; the segment given is not held and must be answered by the caller.
var (
	// ErrBadSegment: total below 2, or a segment number outside 1..total.
	ErrBadSegment = errors.New("reassembly: segment number outside 1..total")
	// ErrTooLarge: the segment alone exceeds MaxBytes.
	ErrTooLarge = errors.New("reassembly: segment larger than max_bytes")
	// ErrFull: the message this segment belongs to already fills the bounds by itself.
	ErrFull = errors.New("reassembly: message fills the bounds by itself")
)

// ReassemblerConfig bounds a Reassembler.
type ReassemblerConfig[V any] struct {
	MaxMessages int           // incomplete messages held
	MaxParts    int           // segments held, all messages together
	MaxBytes    int           // bytes held, as the caller sizes segments
	Timeout     time.Duration // from a message's first segment until it is dropped incomplete
	// Drop receives the held segments of an incomplete message that expired or was evicted, in
	// segment order; the caller must answer them. It runs on the goroutine that called Add or
	// Expire, with no lock held. nil: dropped silently.
	Drop func(k Key, parts []V, why DropReason)
	// Metrics receives the reassembler's gauges and counters (nil: none).
	Metrics *metrics.Set
}

// DefaultReassemblerConfig returns the defaults: 10,000 messages, 20,000 segments, 4 MiB, 30 s.
func DefaultReassemblerConfig[V any]() ReassemblerConfig[V] {
	return ReassemblerConfig[V]{MaxMessages: 10_000, MaxParts: 20_000, MaxBytes: 4 << 20, Timeout: 30 * time.Second}
}

// Validate reports the first invalid field.
func (c *ReassemblerConfig[V]) Validate() error {
	switch {
	case c.MaxMessages <= 0:
		return fmt.Errorf("reassembly: max_messages must be positive, got %d", c.MaxMessages)
	case c.MaxParts < 255:
		return fmt.Errorf("reassembly: max_parts must be at least 255 (the longest message), got %d", c.MaxParts)
	case c.MaxBytes <= 0:
		return fmt.Errorf("reassembly: max_bytes must be positive, got %d", c.MaxBytes)
	case c.Timeout <= 0:
		return fmt.Errorf("reassembly: timeout must be positive, got %s", c.Timeout)
	}
	return nil
}

// Added is the outcome of Reassembler.Add.
type Added[V any] struct {
	// Complete holds every segment in order once the last one arrived (the message is no longer
	// held); nil while the message is incomplete.
	Complete []V
	// Replaced is the segment this one replaced (the same segment number was held already): it
	// is no longer held and the caller must answer it.
	Replaced    V
	HasReplaced bool
}

// Reassembler holds the segments of concatenated messages until all have arrived, within bounds
// on messages, segments, bytes and time. Time is the caller's (unix nanoseconds), so tests need
// no clock. Safe for concurrent use.
type Reassembler[V any] struct {
	cfg ReassemblerConfig[V]

	mu         sync.Mutex
	msgs       map[Key]*pendingMsg[V] // guarded by mu
	head, tail *pendingMsg[V]         // guarded by mu: oldest first, so by deadline too
	parts      int                    // guarded by mu
	bytes      int                    // guarded by mu

	completed, expired, evicted *metrics.Counter // nil without Metrics
}

type pendingMsg[V any] struct {
	key        Key
	segs       []segment[V] // sorted by seq
	bytes      int
	deadline   int64
	prev, next *pendingMsg[V]
}

type segment[V any] struct {
	seq  byte
	size int
	v    V
}

type dropped[V any] struct {
	key   Key
	parts []V
	why   DropReason
}

// NewReassembler returns an empty reassembler.
func NewReassembler[V any](cfg ReassemblerConfig[V]) (*Reassembler[V], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Reassembler[V]{cfg: cfg, msgs: map[Key]*pendingMsg[V]{}}
	if set := cfg.Metrics; set != nil {
		r.completed = set.GetOrCreateCounter(`smppd_reassembly_completed_total`)
		r.expired = set.GetOrCreateCounter(`smppd_reassembly_dropped_total{reason="expired"}`)
		r.evicted = set.GetOrCreateCounter(`smppd_reassembly_dropped_total{reason="evicted"}`)
		for kind, f := range map[string]func() float64{
			"messages": func() float64 { m, _, _ := r.Len(); return float64(m) },
			"parts":    func() float64 { _, p, _ := r.Len(); return float64(p) },
			"bytes":    func() float64 { _, _, b := r.Len(); return float64(b) },
		} {
			set.GetOrCreateGauge(fmt.Sprintf(`smppd_reassembly_pending{kind=%q}`, kind), f)
		}
		for kind, n := range map[string]int{"messages": cfg.MaxMessages, "parts": cfg.MaxParts, "bytes": cfg.MaxBytes} {
			set.GetOrCreateGauge(fmt.Sprintf(`smppd_reassembly_capacity{kind=%q}`, kind), func() float64 { return float64(n) })
		}
	}
	return r, nil
}

// Len returns what is held: incomplete messages, their segments and bytes.
func (r *Reassembler[V]) Len() (messages, parts, bytes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs), r.parts, r.bytes
}

// Add holds segment c of message k, v sized size bytes, at time now. Messages past their
// timeout are dropped first, then the oldest others if the bounds require, each reported to
// Drop before Add returns. On error v is not held.
func (r *Reassembler[V]) Add(k Key, c smpp.Concat, v V, size int, now int64) (Added[V], error) {
	var out Added[V]
	switch {
	case c.Total < 2 || c.Seq < 1 || c.Seq > c.Total || c.Total != k.Total:
		return out, ErrBadSegment
	case size > r.cfg.MaxBytes:
		return out, ErrTooLarge
	}
	size = max(size, 0)
	r.mu.Lock()
	drops := r.expireLocked(now, nil)
	p := r.msgs[k]
	var err error
	if p != nil {
		i := sort.Search(len(p.segs), func(i int) bool { return p.segs[i].seq >= c.Seq })
		if i < len(p.segs) && p.segs[i].seq == c.Seq {
			old := &p.segs[i]
			drops = r.makeRoomLocked(p, 0, size-old.size, drops)
			if r.bytes+size-old.size > r.cfg.MaxBytes {
				err = ErrFull
			} else {
				out.Replaced, out.HasReplaced = old.v, true
				r.bytes += size - old.size
				p.bytes += size - old.size
				old.v, old.size = v, size
			}
			r.mu.Unlock()
			r.report(drops)
			return out, err
		}
		drops = r.makeRoomLocked(p, 1, size, drops)
		if r.parts+1 > r.cfg.MaxParts || r.bytes+size > r.cfg.MaxBytes {
			err = ErrFull
		} else {
			p.segs = append(p.segs, segment[V]{})
			copy(p.segs[i+1:], p.segs[i:])
			p.segs[i] = segment[V]{seq: c.Seq, size: size, v: v}
		}
	} else {
		if len(r.msgs)+1 > r.cfg.MaxMessages {
			drops = r.evictLocked(r.head, drops)
		}
		drops = r.makeRoomLocked(nil, 1, size, drops)
		p = &pendingMsg[V]{key: k, deadline: now + int64(r.cfg.Timeout), segs: make([]segment[V], 1, min(int(c.Total), 8))}
		p.segs[0] = segment[V]{seq: c.Seq, size: size, v: v}
		r.msgs[k] = p
		r.pushLocked(p)
	}
	if err == nil {
		r.parts++
		r.bytes += size
		p.bytes += size
		if len(p.segs) == int(k.Total) {
			out.Complete = make([]V, len(p.segs))
			for i := range p.segs {
				out.Complete[i] = p.segs[i].v
			}
			r.removeLocked(p)
			if r.completed != nil {
				r.completed.Inc()
			}
		}
	}
	r.mu.Unlock()
	r.report(drops)
	return out, err
}

// Expire drops the messages whose timeout has passed at now, reporting them to Drop, and returns
// how many. The router calls it periodically (Add also expires what it finds).
func (r *Reassembler[V]) Expire(now int64) int {
	r.mu.Lock()
	drops := r.expireLocked(now, nil)
	r.mu.Unlock()
	r.report(drops)
	return len(drops)
}

// NextDeadline returns when the oldest incomplete message expires, false if none is held.
func (r *Reassembler[V]) NextDeadline() (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.head == nil {
		return 0, false
	}
	return r.head.deadline, true
}

// Take removes message k and returns its held segments in order (nil if none): for a router
// that refuses the whole message early, say because one segment failed another stage.
func (r *Reassembler[V]) Take(k Key) []V {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.msgs[k]
	if p == nil {
		return nil
	}
	r.removeLocked(p)
	return values(p)
}

func values[V any](p *pendingMsg[V]) []V {
	vs := make([]V, len(p.segs))
	for i := range p.segs {
		vs[i] = p.segs[i].v
	}
	return vs
}

func (r *Reassembler[V]) report(drops []dropped[V]) {
	for _, d := range drops {
		if c := r.expired; c != nil && d.why == DropExpired {
			c.Inc()
		} else if c := r.evicted; c != nil && d.why == DropEvicted {
			c.Inc()
		}
		if r.cfg.Drop != nil {
			r.cfg.Drop(d.key, d.parts, d.why)
		}
	}
}

func (r *Reassembler[V]) expireLocked(now int64, drops []dropped[V]) []dropped[V] {
	for r.head != nil && r.head.deadline <= now {
		p := r.head
		r.removeLocked(p)
		drops = append(drops, dropped[V]{p.key, values(p), DropExpired})
	}
	return drops
}

// makeRoomLocked evicts the oldest messages other than keep until parts more segments and bytes
// more bytes fit, or only keep is left.
func (r *Reassembler[V]) makeRoomLocked(keep *pendingMsg[V], parts, bytes int, drops []dropped[V]) []dropped[V] {
	for q := r.head; q != nil && (r.parts+parts > r.cfg.MaxParts || r.bytes+bytes > r.cfg.MaxBytes); {
		next := q.next
		if q != keep {
			drops = r.evictLocked(q, drops)
		}
		q = next
	}
	return drops
}

func (r *Reassembler[V]) evictLocked(p *pendingMsg[V], drops []dropped[V]) []dropped[V] {
	r.removeLocked(p)
	return append(drops, dropped[V]{p.key, values(p), DropEvicted})
}

func (r *Reassembler[V]) pushLocked(p *pendingMsg[V]) {
	p.prev = r.tail
	if r.tail != nil {
		r.tail.next = p
	} else {
		r.head = p
	}
	r.tail = p
}

func (r *Reassembler[V]) removeLocked(p *pendingMsg[V]) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		r.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		r.tail = p.prev
	}
	p.prev, p.next = nil, nil
	delete(r.msgs, p.key)
	r.parts -= len(p.segs)
	r.bytes -= p.bytes
}
