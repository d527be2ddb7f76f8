package bench

import (
	"io"
	"net"
	"sync"
	"time"
)

// Forwarder is a plain TCP byte forwarder: per accepted connection it dials the target and
// io.Copy's both ways (splice(2) on Linux), parsing nothing. Any proxy pays at least this: two
// more sockets and a hop through user space per direction.
type Forwarder struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup // the accept loop and both copy goroutines of every connection

	mu    sync.Mutex
	conns map[net.Conn]struct{} // guarded by mu; nil once closed
}

// StartForwarder listens on addr and forwards every connection to target until Close.
func StartForwarder(addr, target string) (*Forwarder, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f := &Forwarder{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// Addr returns the listening address.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

// Close stops listening, closes every forwarded connection and waits for the goroutines.
func (f *Forwarder) Close() {
	_ = f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		in, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go f.pipe(in)
	}
}

// pipe forwards one connection; when either direction ends both sockets close.
func (f *Forwarder) pipe(in net.Conn) {
	defer f.wg.Done()
	out, err := net.DialTimeout("tcp", f.target, 5*time.Second)
	if err != nil {
		_ = in.Close()
		return
	}
	if !f.track(in, out) {
		return
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_, _ = io.Copy(out, in)
		f.untrack(in, out)
	}()
	_, _ = io.Copy(in, out)
	f.untrack(in, out)
}

func (f *Forwarder) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	}
	for _, c := range cs {
		f.conns[c] = struct{}{}
	}
	return true
}

func (f *Forwarder) untrack(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
		if f.conns != nil {
			delete(f.conns, c)
		}
	}
}
