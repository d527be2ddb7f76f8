package router

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/smppd/smppd/smpp"
)

// Upstream is one upstream bind as the router sees it (smpp.Client implements it). Free and
// Submit answer synchronously: the router never learns about window state through a callback.
type Upstream interface {
	Name() string
	// Free returns free window slots; 0 when the bind is down.
	Free() int
	// InUse returns outstanding submits.
	InUse() int
	// SubmitIn queues pdu (sequence number rewritten) or fails at once with nothing sent
	// (smpp.ErrNotBound, smpp.ErrWindowFull, smpp.ErrRateLimited). The writer's wake-up is
	// deferred to b, the calling goroutine's batch (nil: now); segments is what it costs on the
	// bind's throughput limit.
	SubmitIn(b *smpp.Batch, pdu []byte, w smpp.Waiter, segments int) error
	// Limiter returns the bind's throughput limiter (nil: unlimited).
	Limiter() *smpp.Limiter
}

// Lane is a message's priority class.
type Lane uint8

// Lanes.
const (
	LaneBulk Lane = iota // everything not known to be time-critical
	LaneOTP              // verification codes: first, on the idlest bind, from a reserved share
)

func (l Lane) String() string {
	if l == LaneOTP {
		return "otp"
	}
	return "bulk"
}

// Policy picks a bind for a message of lane; it returns an index into binds or -1, never one
// whose bit is set in skip. It must not allocate. Pools have at most 64 binds.
type Policy interface {
	Pick(binds []Upstream, skip uint64, lane Lane) int
}

// MostFree picks the bind with the most free window (the idlest channel).
//
// OTP takes the idlest bind, full stop. Bulk sees each bind's window less a reserve (Reserve
// percent of it, rounded up) kept for OTP, so a code finds a free slot while bulk saturates the
// binds, and bulk keeps the other (100-Reserve)% — it is never starved. Bulk also stays on the
// bind it picked last while that one's free window is within a slack of the best (a quarter of its
// window, at most 32): back-to-back submits then share one upstream write instead of being dealt
// out one per bind, and no bind drifts more than the slack from the most idle.
type MostFree struct {
	Reserve int // percent of each bind's window kept for LaneOTP
	last    atomic.Int32
}

// free returns b's free window as lane may use it.
func (p *MostFree) free(b Upstream, lane Lane) int {
	f := b.Free()
	if lane == LaneBulk && p.Reserve > 0 && f > 0 {
		f -= ((f+b.InUse())*p.Reserve + 99) / 100
	}
	return f
}

// Pick implements Policy.
func (p *MostFree) Pick(binds []Upstream, skip uint64, lane Lane) int {
	best, bestFree := -1, 0
	for i, b := range binds {
		if skip&(1<<i) != 0 {
			continue
		}
		if f := p.free(b, lane); f > bestFree {
			best, bestFree = i, f
		}
	}
	if best < 0 || lane == LaneOTP {
		return best
	}
	if l := int(p.last.Load()); l != best && l < len(binds) && skip&(1<<l) == 0 {
		f := p.free(binds[l], lane)
		slack := min((binds[l].Free()+binds[l].InUse())/4, 32)
		if f > 0 && f >= bestFree-slack {
			return l
		}
	}
	p.last.Store(int32(best))
	return best
}

// Pool is the set of binds to one upstream SMSC. Waiters for free window block on wake, which
// Notify closes (and clears) when any bind frees a slot.
type Pool struct {
	name   string
	binds  []Upstream
	policy Policy
	// coolUntil[i] is a unix-nano time before which bind i is skipped: it just answered
	// ESME_RTHROTTLED/ESME_RMSGQFUL.
	coolUntil []atomic.Int64
	coolMax   atomic.Int64 // the latest coolUntil: nothing is cooling after it

	waiters atomic.Int32
	mu      sync.Mutex
	wake    chan struct{}         // guarded by mu; nil when nobody waits
	concat  map[concatKey]*affine // guarded by mu: bind affinity of concatenated messages
	swept   int64                 // guarded by mu: unix nanos of the last sweep
}

// concatKey identifies a concatenated message of one account.
type concatKey struct {
	acct     *smpp.Account
	src, dst [21]byte
	ref      uint16
	total    byte
}

type affine struct {
	bind atomic.Int32 // -1 until the first segment is sent
	seen int          // guarded by Pool.mu
	last int64        // guarded by Pool.mu: unix nanos of the last segment
}

// NewPool returns a pool over binds using the MostFree policy with otpReserve percent of each
// bind's window kept for OTP.
func NewPool(name string, binds []Upstream, otpReserve int) *Pool {
	return &Pool{name: name, binds: binds, policy: &MostFree{Reserve: otpReserve}, coolUntil: make([]atomic.Int64, len(binds)),
		concat: map[concatKey]*affine{}}
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Binds returns the pool's binds.
func (p *Pool) Binds() []Upstream { return p.binds }

// InUse returns outstanding submits over all binds.
func (p *Pool) InUse() int {
	n := 0
	for _, b := range p.binds {
		n += b.InUse()
	}
	return n
}

// Notify wakes waiters; upstream binds call it when a slot frees or they come up.
func (p *Pool) Notify() {
	if p.waiters.Load() == 0 {
		return
	}
	p.mu.Lock()
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
	p.mu.Unlock()
}

// cool marks bind i as throttled for d.
func (p *Pool) cool(i int, now int64, d time.Duration) {
	t := now + int64(d)
	p.coolUntil[i].Store(t)
	if t > p.coolMax.Load() {
		p.coolMax.Store(t) // racy max is fine: it only decides whether to look at coolUntil
	}
}

// trySend submits m on the best bind now, or on its bind for a later segment of a concatenated
// message. It returns false (nothing sent) if no bind can take it now, with how long to wait
// before trying again (0: until a slot frees).
func (p *Pool) trySend(m *Message) (bool, time.Duration) {
	a := m.affine // m must not be touched once submitted: its answer may already be in
	if a != nil {
		if i := int(a.bind.Load()); i >= 0 && p.up(i) {
			return p.submitOn(m, i) // segments stay on their bind, in order: wait for it if busy
		}
	}
	now := m.now
	var skip uint64
	var retryIn time.Duration                                     // the soonest a skipped bind may be tried again
	for i := 0; i < len(p.binds) && p.coolMax.Load() > now; i++ { // skipped when nothing cools
		if c := p.coolUntil[i].Load(); c > now {
			skip |= 1 << i
			if d := time.Duration(c - now); retryIn == 0 || d < retryIn {
				retryIn = d
			}
		}
	}
	for {
		i := p.policy.Pick(p.binds, skip, m.Lane)
		if i < 0 {
			return false, retryIn
		}
		if a != nil {
			a.bind.Store(int32(i)) // first segment, or its bind went down: the rest follow
		}
		ok, wait := p.submitOn(m, i)
		if ok {
			return true, 0
		}
		skip |= 1 << i
		if wait > 0 && (retryIn == 0 || wait < retryIn) {
			retryIn = wait
		}
	}
}

// up reports whether bind i is bound.
func (p *Pool) up(i int) bool {
	if b, ok := p.binds[i].(interface{ Bound() bool }); ok {
		return b.Bound()
	}
	return p.binds[i].Free() > 0
}

func (p *Pool) submitOn(m *Message, i int) (bool, time.Duration) {
	if c := p.coolUntil[i].Load(); c > m.now {
		return false, time.Duration(c - m.now)
	}
	m.bind = i
	switch err := p.binds[i].SubmitIn(m.batch, m.PDU, m, m.segments); err {
	case nil:
		return true, 0
	case smpp.ErrRateLimited:
		return false, max(p.binds[i].Limiter().Delay(m.segments), time.Millisecond)
	default:
		return false, 0
	}
}

// send submits m, waiting until its deadline for a bind to take it.
func (p *Pool) send(m *Message) bool {
	if ok, _ := p.trySend(m); ok {
		return true
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		p.mu.Lock()
		if p.wake == nil {
			p.wake = make(chan struct{})
		}
		wake := p.wake
		p.waiters.Add(1)
		p.mu.Unlock()
		ok, wait := p.trySend(m) // after registering: a slot freed since is not missed
		if ok {
			p.waiters.Add(-1)
			return true
		}
		left := time.Duration(m.deadline - time.Now().UnixNano())
		if left <= 0 {
			p.waiters.Add(-1)
			return false
		}
		m.batch.Flush() // what this goroutine queued must leave before it blocks
		if wait == 0 || wait > left {
			wait = left
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-wake:
		case <-timer.C:
		}
		p.waiters.Add(-1)
		m.now = time.Now().UnixNano()
	}
}

// affinity returns the affinity record of a concatenated message segment, creating it; first
// reports that this is the first segment seen of the message.
func (p *Pool) affinity(k *concatKey, now int64) (a *affine, first bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Duration(now-p.swept) > time.Minute {
		for key, a := range p.concat {
			if time.Duration(now-a.last) > 5*time.Minute {
				delete(p.concat, key)
			}
		}
		p.swept = now
	}
	a = p.concat[*k]
	if a == nil {
		a = &affine{}
		a.bind.Store(-1)
		p.concat[*k] = a
	}
	a.seen++
	a.last = now
	if a.seen >= int(k.total) {
		delete(p.concat, *k) // last segment: later ones with this ref are a new message
	}
	return a, a.seen == 1
}
