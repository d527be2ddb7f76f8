package bench

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// liveBytes returns the heap and stack memory in use after two full GCs (the second empties
// sync.Pools, whose objects survive one GC).
func liveBytes() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// rawESME is a bound transceiver on a bare socket: it costs the process a net.Conn, a reader
// goroutine and 4 KiB of buffer, nothing per message, so what a measurement sees is the far end.
type rawESME struct {
	conn  net.Conn
	resps atomic.Int64 // responses read
}

// dialRaw binds a transceiver and starts a goroutine counting (and discarding) what it reads.
func dialRaw(tb testing.TB, addr string) *rawESME {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, bindTimeout)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	body := []byte("demo\x00demo\x00\x00\x34\x00\x00\x00") // system_id, password, system_type, 3.4, ton, npi, range
	_ = conn.SetDeadline(time.Now().Add(bindTimeout))
	if _, err := conn.Write(smpp.AppendPDU(nil, smpp.BindTransceiver, smpp.StatusOK, 1, body)); err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReaderSize(conn, 4096)
	h, err := readPDU(br)
	if err != nil || h.ID != smpp.BindTransceiverResp || h.Status != smpp.StatusOK {
		tb.Fatalf("bind to %s: %v %v %s", addr, err, h.ID, h.Status.String())
	}
	_ = conn.SetDeadline(time.Time{})
	r := &rawESME{conn: conn}
	go func() {
		for {
			if _, err := readPDU(br); err != nil {
				return
			}
			r.resps.Add(1)
		}
	}()
	return r
}

// readPDU reads one PDU and returns its header; the body is discarded.
func readPDU(br *bufio.Reader) (smpp.Header, error) {
	var b [smpp.HeaderLen]byte
	if _, err := io.ReadFull(br, b[:]); err != nil {
		return smpp.Header{}, err
	}
	h := smpp.ParseHeader(b[:])
	_, err := br.Discard(int(h.Length) - smpp.HeaderLen)
	return h, err
}

// send writes n submit_sm with sequence numbers 1..n in one write.
func (r *rawESME) send(tb testing.TB, pdu []byte, n int) {
	buf := make([]byte, 0, n*len(pdu))
	for seq := 1; seq <= n; seq++ {
		buf = append(buf, pdu...)
		binary.BigEndian.PutUint32(buf[len(buf)-len(pdu)+12:], uint32(seq))
	}
	if _, err := r.conn.Write(buf); err != nil {
		tb.Fatal(err)
	}
}

// waitFor polls cond every millisecond for up to 10s.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within 10s", what)
		}
	}
}

// BenchmarkIdleBind reports bytes/idle_bind, the heap and stack smppd holds per bound, idle ESME
// session (200 of them, on bare sockets), and goroutines/idle_bind. An op is one GC and sample.
func BenchmarkIdleBind(b *testing.B) {
	const sessions = 200
	e := newEnv(b, nil)
	g0, base := runtime.NumGoroutine(), liveBytes()
	for range sessions {
		dialRaw(b, e.node.SMPPAddr())
	}
	goroutines := runtime.NumGoroutine() - g0 - sessions // minus our reader goroutines
	var sum int64
	for b.Loop() {
		sum += liveBytes() - base
	}
	b.ReportMetric(float64(sum)/float64(b.N)/sessions, "bytes/idle_bind")
	b.ReportMetric(float64(goroutines)/sessions, "goroutines/idle_bind")
}

// BenchmarkInflight reports bytes/inflight_msg: the heap and stack smppd holds per submit it has
// forwarded but not yet had answered. 5 bare-socket ESMEs put 1000 submit_sm each in flight to a
// simulator that reads and never answers; the same is measured straight to the simulator and
// subtracted, so the simulator's own per-message state does not count
// (bytes/inflight_msg_direct). Before measuring, the same burst is sent once with answers, so
// buffers sized by bursts are grown and per-connection high-water marks are not counted as
// per-message. An op is one GC and sample.
func BenchmarkInflight(b *testing.B) {
	const conns, perConn, n = 5, 1000, 5 * 1000
	e := newEnv(b, func(c *config.Config) { c.Upstreams[0].ResponseTimeout = config.Duration(time.Minute) })
	pdu := submitPDU()
	// load puts n submits in flight through addr and returns the live bytes before.
	load := func(addr string) int64 {
		esmes := make([]*rawESME, conns)
		for i := range esmes {
			esmes[i] = dialRaw(b, addr)
		}
		e.sim.SetFaults(smpptest.Faults{})
		for _, r := range esmes {
			r.send(b, pdu, perConn)
		}
		waitFor(b, "warm-up answers", func() bool {
			for _, r := range esmes {
				if r.resps.Load() < perConn {
					return false
				}
			}
			return true
		})
		e.sim.SetFaults(smpptest.Faults{NoAnswer: true})
		c0, base := e.sim.Count(), liveBytes()
		for _, r := range esmes {
			r.send(b, pdu, perConn)
		}
		waitFor(b, fmt.Sprintf("%d submits at the simulator", n), func() bool { return e.sim.Count() >= c0+n })
		return base
	}
	base := load(e.sim.Addr())
	var direct int64
	for range 5 {
		direct += liveBytes() - base
	}
	direct /= 5 * n
	base = load(e.node.SMPPAddr())
	var sum int64
	for b.Loop() {
		sum += liveBytes() - base
	}
	b.ReportMetric(float64(sum)/float64(b.N)/n-float64(direct), "bytes/inflight_msg")
	b.ReportMetric(float64(direct), "bytes/inflight_msg_direct")
}
