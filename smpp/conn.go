package smpp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// clock is the time of the latest read on any connection (unix nanos): a clock reading that
// costs an atomic load, shared by everything that handles the PDUs the read brought.
var clock atomic.Int64

// Now returns the time of the latest read on any connection, or the time now if there was none:
// at most one read batch old while traffic flows. For callers on a read loop, after a read.
func Now() int64 {
	if t := clock.Load(); t != 0 {
		return t
	}
	return time.Now().UnixNano()
}

// readBufSize is the per-connection read buffer: many PDUs per read syscall; a PDU larger than this
// gets a one-off buffer sized by its (already bounded) command_length.
const readBufSize = 8 << 10

// ErrCommandLength reports a command_length below 16 or above the configured maximum.
var ErrCommandLength = errors.New("invalid command_length")

// errStall marks a read timeout with a frame in progress (as opposed to an idle timeout).
var errStall = errors.New("PDU stalled mid-frame")

// frameReader splits a byte stream into PDUs. It owns buf; a frame it returns is valid until the
// next call to next.
type frameReader struct {
	conn   net.Conn
	buf    []byte
	r, w   int
	max    uint32
	stall  time.Duration // a frame started but not finished within this is an error
	idle   time.Time     // deadline while no frame is in progress (zero: none)
	onRead func()        // called after every successful read (activity tracking)
	err    error         // a read error held back until the frames read with it are returned
	// frameBy is the deadline of the frame in progress: set when a frame starts arriving, not
	// pushed back by each read, so a peer trickling bytes cannot hold a frame open for long.
	frameBy time.Time
	// beforeRead, if set, runs before each blocking read (output backpressure).
	beforeRead func()
}

func newFrameReader(conn net.Conn, max uint32, stall time.Duration) *frameReader {
	return &frameReader{conn: conn, buf: make([]byte, readBufSize), max: max, stall: stall}
}

// next returns the next whole PDU. On ErrCommandLength the returned header is still valid
// (so its sequence number can be echoed in the generic_nack).
func (fr *frameReader) next() ([]byte, Header, error) {
	for {
		avail := fr.w - fr.r
		if avail >= HeaderLen {
			h := ParseHeader(fr.buf[fr.r:])
			if h.Length < HeaderLen || h.Length > fr.max {
				return nil, h, fmt.Errorf("%w: %d (allowed %d..%d)", ErrCommandLength, h.Length, HeaderLen, fr.max)
			}
			n := int(h.Length)
			if avail >= n {
				f := fr.buf[fr.r : fr.r+n]
				fr.r += n
				fr.frameBy = time.Time{}
				return f, h, nil
			}
			if n > len(fr.buf) {
				// Larger than the shared buffer: bounded above by fr.max.
				big := make([]byte, n)
				copy(big, fr.buf[fr.r:fr.w])
				got := avail
				fr.r, fr.w = 0, 0
				fr.setDeadline(true)
				for got < n {
					m, err := fr.conn.Read(big[got:])
					got += m
					if m > 0 {
						fr.activity()
					}
					if err != nil && got < n {
						return nil, h, midFrameErr(err)
					}
				}
				fr.frameBy = time.Time{}
				return big, h, nil
			}
		}
		if fr.r > 0 {
			fr.w = copy(fr.buf, fr.buf[fr.r:fr.w])
			fr.r = 0
		}
		err := fr.err
		fr.err = nil
		if err == nil {
			if fr.beforeRead != nil {
				fr.beforeRead()
			}
			fr.setDeadline(fr.w > 0)
			var m int
			m, err = fr.conn.Read(fr.buf[fr.w:])
			fr.w += m
			if m > 0 {
				clock.Store(time.Now().UnixNano())
				fr.activity()
				if err != nil {
					fr.err = err // e.g. tls.Conn's (n, io.EOF): return the frames read first
					continue
				}
			}
		}
		if err != nil {
			if fr.w > 0 {
				err = midFrameErr(err)
			}
			return nil, Header{}, err
		}
	}
}

// midFrameErr translates a read error that cut a frame short: EOF becomes io.ErrUnexpectedEOF, a
// timeout is marked errStall (the stream is out of sync either way).
func midFrameErr(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: %w", errStall, err)
	}
	return err
}

func (fr *frameReader) activity() {
	if fr.onRead != nil {
		fr.onRead()
	}
}

func (fr *frameReader) setDeadline(partial bool) {
	if partial && fr.stall > 0 {
		if fr.frameBy.IsZero() {
			fr.frameBy = time.Now().Add(fr.stall)
		}
		_ = fr.conn.SetReadDeadline(fr.frameBy)
		return
	}
	fr.frameBy = time.Time{}
	_ = fr.conn.SetReadDeadline(fr.idle)
}

// writer coalesces PDUs queued by many goroutines into few write syscalls: producers append to
// pending under mu and kick the write loop; the loop swaps buffers and writes outside the lock.
type writer struct {
	conn    net.Conn
	timeout time.Duration // per write syscall; a peer that stops reading is cut off
	limit   int           // pending bytes above this: the peer is not reading, close

	mu      sync.Mutex
	pending []byte // guarded by mu
	closing bool   // guarded by mu: no more appends; loop flushes and exits
	err     error  // guarded by mu: first write error

	room *sync.Cond // on mu: broadcast when pending is taken by the loop, or on close/failure
	kick chan struct{}
	done chan struct{}
}

func newWriter(conn net.Conn, timeout time.Duration) *writer {
	w := &writer{conn: conn, timeout: timeout, limit: 8 << 20,
		pending: make([]byte, 0, 4096), kick: make(chan struct{}, 1), done: make(chan struct{})}
	w.room = sync.NewCond(&w.mu)
	return w
}

// waitRoom blocks while more than a quarter of the limit is queued: a peer that does not read its
// answers is not read from either (backpressure) rather than growing the queue.
func (w *writer) waitRoom() {
	w.mu.Lock()
	for len(w.pending) > w.limit/4 && !w.closing && w.err == nil {
		w.room.Wait()
	}
	w.mu.Unlock()
}

// errWriterClosed is returned when queuing on a closed or failed writer.
var errWriterClosed = errors.New("connection closing")

// appendPDU queues one PDU built by AppendPDU semantics.
func (w *writer) appendPDU(id CommandID, status Status, seq uint32, body []byte) error {
	w.mu.Lock()
	if w.closing || w.err != nil {
		w.mu.Unlock()
		return errWriterClosed
	}
	w.pending = AppendPDU(w.pending, id, status, seq, body)
	return w.unlockQueue(nil)
}

// appendResp queues a response whose body is a single C-octet string (or empty on error).
func (w *writer) appendResp(id CommandID, status Status, seq uint32, cstr []byte, b *Batch) error {
	w.mu.Lock()
	if w.closing || w.err != nil {
		w.mu.Unlock()
		return errWriterClosed
	}
	w.pending = AppendSubmitSMResp(w.pending, id, status, seq, cstr)
	return w.unlockQueue(b)
}

// appendRaw queues pre-encoded bytes with the sequence number at offset 12 replaced by seq.
func (w *writer) appendRaw(pdu []byte, seq uint32, b *Batch) error {
	w.mu.Lock()
	if w.closing || w.err != nil {
		w.mu.Unlock()
		return errWriterClosed
	}
	n := len(w.pending)
	w.pending = append(w.pending, pdu...)
	p := w.pending[n+12:]
	p[0], p[1], p[2], p[3] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
	return w.unlockQueue(b)
}

// unlockQueue releases mu after an append and wakes the write loop now, or, with a batch, when
// the batch's owner is about to block.
func (w *writer) unlockQueue(b *Batch) error {
	over := len(w.pending) > w.limit
	w.mu.Unlock()
	if over {
		w.fail(errors.New("peer is not reading: output buffer full"))
		return errWriterClosed
	}
	if b != nil {
		b.add(w)
		return nil
	}
	w.wake()
	return nil
}

func (w *writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Batch defers the wake-up of writers until the goroutine that owns the batch (a connection's
// read loop) has processed everything one read brought and is about to block: PDUs queued
// meanwhile, for any connection, then leave in one write syscall per connection instead of one
// wake-up and write each. A Batch belongs to one goroutine; nil means "wake now".
type Batch struct {
	ws []*writer
}

func (b *Batch) add(w *writer) {
	for _, x := range b.ws {
		if x == w {
			return
		}
	}
	if len(b.ws) == cap(b.ws) && len(b.ws) >= 64 {
		b.Flush()
	}
	b.ws = append(b.ws, w)
}

// Flush wakes every writer queued to since the last flush. The owner calls it before blocking.
func (b *Batch) Flush() {
	if b == nil {
		return
	}
	for i, w := range b.ws {
		w.wake()
		b.ws[i] = nil
	}
	b.ws = b.ws[:0]
}

func (w *writer) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.room.Broadcast()
	w.mu.Unlock()
	_ = w.conn.Close()
}

// close stops accepting PDUs; the loop writes what is pending and exits.
func (w *writer) close() {
	w.mu.Lock()
	w.closing = true
	w.room.Broadcast()
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// loop is the connection's single writer. It returns when closed and flushed, or on error.
func (w *writer) loop() {
	defer close(w.done)
	spare := make([]byte, 0, 4096)
	for {
		w.mu.Lock()
		for len(w.pending) == 0 && !w.closing && w.err == nil {
			w.mu.Unlock()
			<-w.kick
			w.mu.Lock()
		}
		out := w.pending
		w.pending = spare[:0]
		closing, failed := w.closing, w.err != nil
		w.room.Broadcast()
		w.mu.Unlock()
		if failed {
			return
		}
		if len(out) > 0 {
			if w.timeout > 0 {
				_ = w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
			}
			if _, err := w.conn.Write(out); err != nil {
				w.fail(err)
				return
			}
		}
		if cap(out) > 256<<10 {
			out = make([]byte, 0, 4096) // let a burst's buffer go
		}
		spare = out
		if closing {
			w.mu.Lock()
			empty := len(w.pending) == 0
			w.mu.Unlock()
			if empty {
				return
			}
		}
	}
}
