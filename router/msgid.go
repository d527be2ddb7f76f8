package router

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Message ids smppd issues are 64-bit and time-ordered:
//
//	42 bits milliseconds since idEpoch | 10 bits node id | 12 bits counter
//
// written as 16 lowercase hex digits. Unique across nodes (the node id) and across restarts: the
// generator never issues a millisecond at or above a ceiling it has first made durable in the data
// directory, and starts after the stored ceiling, so a clock that steps back cannot repeat ids.
const (
	nodeBits    = 10
	counterBits = 12
	// MaxNodeID is the largest node id.
	MaxNodeID = 1<<nodeBits - 1
	// leaseAhead is how far the durable ceiling runs ahead of the ids being issued.
	leaseAhead = 10 * time.Second
)

var idEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// ErrIDLease means the id ceiling could not be made durable; no id is issued without it.
var ErrIDLease = errors.New("message id lease: cannot persist ceiling")

// IDGen issues message ids. Safe for concurrent use; Next allocates nothing.
type IDGen struct {
	node  uint64
	state atomic.Uint64 // ms<<counterBits | counter of the last id issued
	ceil  atomic.Uint64 // ms: ids are issued only below this

	mu   sync.Mutex // serialises lease renewals
	path string     // "" : no persistence (tests)
}

// NewIDGen returns a generator for node, persisting its lease in dir/msgid.lease (dir "" keeps it
// in memory only, for tests).
func NewIDGen(node int, dir string) (*IDGen, error) {
	if node < 0 || node > MaxNodeID {
		return nil, fmt.Errorf("node id %d out of range 0..%d", node, MaxNodeID)
	}
	g := &IDGen{node: uint64(node)}
	var start uint64
	if dir != "" {
		g.path = filepath.Join(dir, "msgid.lease")
		b, err := os.ReadFile(g.path)
		switch {
		case err == nil && len(b) == 8:
			start = binary.BigEndian.Uint64(b)
		case err == nil:
			return nil, fmt.Errorf("%s: corrupt (%d bytes, want 8)", g.path, len(b))
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("message id lease: %w", err)
		}
	}
	g.state.Store(start << counterBits)
	if err := g.renew(max(start, nowMs())); err != nil {
		return nil, err
	}
	return g, nil
}

func nowMs() uint64 { return uint64(time.Since(idEpoch).Milliseconds()) }

// renew makes a ceiling above ms durable.
func (g *IDGen) renew(ms uint64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ms < g.ceil.Load() {
		return nil
	}
	c := ms + uint64(leaseAhead.Milliseconds())
	if g.path != "" {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], c)
		tmp := g.path + ".tmp"
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrIDLease, err)
		}
		_, err = f.Write(b[:])
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, g.path)
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrIDLease, err)
		}
	}
	g.ceil.Store(c)
	return nil
}

// Next returns a fresh id.
func (g *IDGen) Next() (uint64, error) { return g.NextAt(time.Now().UnixNano()) }

// NextAt returns a fresh id for a caller that has just read the clock (unix nanos).
func (g *IDGen) NextAt(unixNano int64) (uint64, error) {
	now := uint64((unixNano - idEpoch.UnixNano()) / int64(time.Millisecond))
	for {
		old := g.state.Load()
		ms, n := old>>counterBits, old&(1<<counterBits-1)
		if now > ms {
			ms, n = now, 0
		} else if n++; n == 1<<counterBits {
			ms, n = ms+1, 0 // counter exhausted: borrow the next millisecond
		}
		if ms >= g.ceil.Load() {
			if err := g.renew(ms); err != nil {
				return 0, err
			}
		}
		if g.state.CompareAndSwap(old, ms<<counterBits|n) {
			return ms<<(nodeBits+counterBits) | g.node<<counterBits | n, nil
		}
	}
}

// FormatID writes id as 16 lowercase hex digits into dst.
func FormatID(dst *[16]byte, id uint64) {
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		dst[i] = hex[id&0xF]
		id >>= 4
	}
}

// ParseID parses a 16-hex-digit message id.
func ParseID(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("message id %q: want 16 hex digits", s)
	}
	var v uint64
	for i := 0; i < 16; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, fmt.Errorf("message id %q: want 16 hex digits", s)
		}
		v = v<<4 | uint64(c)
	}
	return v, nil
}

// IDNode returns the node id embedded in id.
func IDNode(id uint64) int { return int(id >> counterBits & MaxNodeID) }

// IDTime returns the time embedded in id.
func IDTime(id uint64) time.Time {
	return idEpoch.Add(time.Duration(id>>(nodeBits+counterBits)) * time.Millisecond)
}
