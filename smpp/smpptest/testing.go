package smpptest

import (
	"testing"
	"time"

	"github.com/smppd/smppd/smpp"
)

// Outcome is one submit's answer as an smpp.Waiter receives it.
type Outcome struct {
	Status smpp.Status
	ID     string
	Err    error
}

// Outcomes is an smpp.Waiter that delivers every outcome on the channel; its buffer must hold
// every outcome a test expects before it reads them.
type Outcomes chan Outcome

// SubmitDone implements smpp.Waiter.
func (w Outcomes) SubmitDone(_ *smpp.Batch, st smpp.Status, id []byte, err error) {
	w <- Outcome{st, string(id), err}
}

// Next returns the next outcome, failing t if none arrives within timeout.
func (w Outcomes) Next(t testing.TB, timeout time.Duration) Outcome {
	t.Helper()
	select {
	case o := <-w:
		return o
	case <-time.After(timeout):
		t.Fatalf("no submit outcome within %s", timeout)
		return Outcome{}
	}
}

// WaitFor polls cond until it holds, failing t after timeout: for conditions no event announces.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
