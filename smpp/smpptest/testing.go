package smpptest

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
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

var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// FreeAddr returns a loopback address for a test to listen on later (a Raft or admin address
// that must be written into a config before the node starts). The port is drawn at random below
// Linux's ephemeral range (32768-60999), so neither the kernel's port-0 picks nor outgoing
// connections can take it meanwhile, and never twice in one test binary (asking the kernel for
// port 0 and closing it may hand the same port out again, which made two cluster peers share
// an address).
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = make(map[int]bool)
	}
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		if handedOut.ports[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use
		}
		ln.Close()
		handedOut.ports[port] = true
		return ln.Addr().String()
	}
	tb.Fatal("smpptest.FreeAddr: no free port in 20000-31999")
	return ""
}
