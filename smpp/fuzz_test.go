package smpp

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// chunkConn serves data in chunks whose sizes come from sizes; with eofWithData the last chunk
// comes with io.EOF (as tls.Conn does when close_notify follows the data).
type chunkConn struct {
	net.Conn    // only Read and SetReadDeadline are used
	data        []byte
	sizes       func() int
	eofWithData bool
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(max(c.sizes(), 1), len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	if len(c.data) == 0 && c.eofWithData {
		return n, io.EOF
	}
	return n, nil
}

func (c *chunkConn) SetReadDeadline(time.Time) error { return nil }

// framingVariant is one way of feeding a stream to the frame reader.
type framingVariant struct {
	name        string
	bufSize     int // frameReader buffer; small ones push frames through the large-frame path
	sizes       func(data []byte) func() int
	eofWithData bool
}

func fixed(n int) func([]byte) func() int {
	return func([]byte) func() int { return func() int { return n } }
}

// pseudoRandom derives chunk sizes 1..41 from the input itself, so the fuzzer steers them.
func pseudoRandom(data []byte) func() int {
	x := uint32(len(data))*2654435761 + 1
	for _, b := range data[:min(len(data), 32)] {
		x = x*31 + uint32(b)
	}
	return func() int { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return int(x%41) + 1 }
}

var framingVariants = []framingVariant{
	{"whole", readBufSize, fixed(1 << 20), false},
	{"bytewise small buffer", 32, fixed(1), false},
	{"random chunks", 64, pseudoRandom, false},
	{"chunks of 7, eof with data", readBufSize, fixed(7), true},
	{"chunks of 17 small buffer, eof with data", 24, fixed(17), true},
}

const fuzzMaxPDU = 2048

// checkFraming asserts that the frames read from data tile it exactly, each of its declared
// length within bounds, and that the terminating error matches what is left.
func checkFraming(t *testing.T, data []byte, v framingVariant) {
	conn := &chunkConn{data: data, sizes: v.sizes(data), eofWithData: v.eofWithData}
	fr := newFrameReader(conn, fuzzMaxPDU, time.Second)
	fr.buf = make([]byte, v.bufSize)
	off := 0
	var err error
	for {
		var frame []byte
		var h Header
		frame, h, err = fr.next()
		if err != nil {
			break
		}
		if int(h.Length) != len(frame) || h.Length < HeaderLen || h.Length > fuzzMaxPDU {
			t.Fatalf("%s: frame at %d: declared %d, got %d octets", v.name, off, h.Length, len(frame))
		}
		if !bytes.Equal(frame, data[off:off+len(frame)]) {
			t.Fatalf("%s: frame at %d does not match the input", v.name, off)
		}
		off += len(frame)
		if h.ID == SubmitSM || h.ID == DeliverSM {
			var s Submit
			if ParseSubmit(frame[HeaderLen:], &s) == nil {
				s.Concat()
				s.Segments()
			}
		}
	}
	rest := data[off:]
	switch {
	case errors.Is(err, ErrCommandLength):
		if l := len(rest); l < HeaderLen {
			t.Fatalf("%s: ErrCommandLength with only %d octets left", v.name, l)
		} else if n := ParseHeader(rest).Length; n >= HeaderLen && n <= fuzzMaxPDU {
			t.Fatalf("%s: ErrCommandLength for valid length %d", v.name, n)
		}
	case err == io.EOF:
		if len(rest) != 0 {
			t.Fatalf("%s: EOF with %d octets unread", v.name, len(rest))
		}
	case err == io.ErrUnexpectedEOF:
		if len(rest) == 0 || len(rest) >= HeaderLen && int(ParseHeader(rest).Length) <= len(rest) {
			t.Fatalf("%s: ErrUnexpectedEOF but %d octets left hold a whole frame or nothing", v.name, len(rest))
		}
	default:
		t.Fatalf("%s: unexpected error %v", v.name, err)
	}
}

// FuzzFraming feeds arbitrary streams through the frame reader in several chunkings.
// Seeds: testdata/fuzz/FuzzFraming, one per PDU type.
func FuzzFraming(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range framingVariants {
			checkFraming(t, data, v)
		}
	})
}

// FuzzParseSubmit decodes arbitrary submit_sm bodies: an accepted body re-encodes to itself, a
// refused one carries an error status.
func FuzzParseSubmit(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var s Submit
		err := ParseSubmit(body, &s)
		if err != nil {
			var be *BodyError
			if !errors.As(err, &be) || be.Status == StatusOK {
				t.Fatalf("error %v is not a *BodyError with an error status", err)
			}
			return
		}
		if len(s.ShortMessage) > 254 {
			t.Fatalf("short_message of %d octets accepted", len(s.ShortMessage))
		}
		if re := AppendSubmitPDU(nil, SubmitSM, 1, &s)[HeaderLen:]; !bytes.Equal(re, body) {
			t.Fatalf("re-encoded body differs:\n got %q\nwant %q", re, body)
		}
		if c, ok := s.Concat(); ok && c.Total < 2 {
			t.Fatalf("Concat total %d reported as concatenated", c.Total)
		}
		if n := s.Segments(); n < 1 {
			t.Fatalf("Segments() = %d", n)
		}
		_ = s.Payload()
	})
}
