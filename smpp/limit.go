package smpp

import (
	"sync"
	"time"
)

// Limiter is a token bucket counting SMS segments. A nil *Limiter allows everything.
// Safe for concurrent use.
type Limiter struct {
	rate  float64 // tokens per second
	burst float64

	mu     sync.Mutex
	tokens float64   // guarded by mu
	last   time.Time // guarded by mu
}

// NewLimiter returns a limiter of rate tokens per second. The burst is a tenth of a second's worth
// (at least one token): operators police per second, and a whole second's burst would overshoot.
// rate <= 0 returns nil (unlimited).
func NewLimiter(rate float64) *Limiter {
	if rate <= 0 {
		return nil
	}
	burst := rate / 10
	if burst < 1 {
		burst = 1
	}
	return &Limiter{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

func (l *Limiter) refill(now time.Time) {
	l.tokens += now.Sub(l.last).Seconds() * l.rate
	if l.tokens > l.burst {
		l.tokens = l.burst
	}
	l.last = now
}

// Allow takes n tokens if they are available now. A request for more than the burst is allowed
// when the bucket is full (the bucket goes negative), so a long message is admitted whole.
func (l *Limiter) Allow(n int) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	l.refill(time.Now())
	ok := l.tokens >= float64(n) || (l.tokens >= l.burst && n > 0)
	if ok {
		l.tokens -= float64(n)
	}
	l.mu.Unlock()
	return ok
}

// Delay returns how long until n tokens may be taken (0 if now).
func (l *Limiter) Delay(n int) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill(time.Now())
	need := float64(n)
	if need > l.burst {
		need = l.burst
	}
	if l.tokens >= need {
		return 0
	}
	return time.Duration((need - l.tokens) / l.rate * float64(time.Second))
}
