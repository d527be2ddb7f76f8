package bench

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/node"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// pathsFlag limits BenchmarkForward to some paths, e.g. to profile one of them:
// go test -run='^$' -bench='Forward/conns=16' -cpuprofile cpu.prof ./bench/ -args -paths=smppd
var pathsFlag = flag.String("paths", "direct,tcpfwd,smppd", "paths BenchmarkForward drives, comma-separated")

const (
	bindTimeout = 10 * time.Second
	runTimeout  = 30 * time.Second // one path's timed run; a run that takes longer fails
)

// env is a simulator, a byte forwarder to it and an smppd node in front of it, on 127.0.0.1.
type env struct {
	sim  *smpptest.SMSC
	fwd  *Forwarder
	node *node.Node
}

// newEnv starts the three, stopped by tb.Cleanup. The node's demo/demo account allows 256 binds
// of window 1000; its upstream is 4 binds of window 2000 to the simulator, which accepts any
// account and 10000 outstanding submits per session: neither is the bottleneck.
func newEnv(tb testing.TB, tweak func(*config.Config)) *env {
	tb.Helper()
	return newEnvSim(tb, smpptest.Config{}, tweak)
}

// newEnvSim is newEnv with the simulator configured by sc (AnyAccount and Window are set).
func newEnvSim(tb testing.TB, sc smpptest.Config, tweak func(*config.Config)) *env {
	tb.Helper()
	e := &env{}
	var err error
	sc.AnyAccount, sc.Window = true, 10000
	if e.sim, err = smpptest.Start(sc); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.sim.Close)
	if e.fwd, err = StartForwarder("127.0.0.1:0", e.sim.Addr()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.fwd.Close)

	cfg := config.Default()
	cfg.Node.DataDir = tb.TempDir()
	cfg.Listen.SMPP, cfg.Listen.Admin = "127.0.0.1:0", ""
	cfg.Cluster.RaftAddr = smpptest.FreeAddr(tb)
	cfg.Log.Level = slog.LevelWarn
	cfg.Accounts[0].MaxBinds, cfg.Accounts[0].Window = 256, 1000
	u := &cfg.Upstreams[0]
	u.Address, u.Binds, u.Window = e.sim.Addr(), 4, 2000
	// The forwarding spine alone: the pipeline stages (number cleaning, lanes, dedup — which
	// would answer this benchmark's identical messages without forwarding them) are off.
	cfg.Numbers.Enabled, cfg.Lanes.Enabled, cfg.Dedup.Enabled = false, false, false
	if tweak != nil {
		tweak(cfg)
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	if e.node, err = node.New(cfg, slog.New(slog.DiscardHandler)); err != nil {
		tb.Fatal(err)
	}
	if err := e.node.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = e.node.Shutdown(ctx)
	})
	// The node offers no bind callback: poll the simulator until every upstream bind is up.
	for deadline := time.Now().Add(bindTimeout); e.sim.Binds() < u.Binds; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("smppd: %d of %d upstream binds up after %s", e.sim.Binds(), u.Binds, bindTimeout)
		}
	}
	return e
}

// submitPDU is a submit_sm of 160 GSM 7-bit characters (data_coding 0, one octet each).
func submitPDU() []byte {
	text := strings.Repeat("smppd benchmark message, 160 GSM characters. ", 4)[:160]
	s := smpp.Submit{SrcTON: 5, SrcAddr: []byte("smppd"), DstTON: 1, DstNPI: 1, DstAddr: []byte("4915112345678"),
		ShortMessage: []byte(text)}
	return smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s)
}

// BenchmarkForward drives the same load — conns ESMEs each keeping window submits outstanding —
// three ways in every invocation: straight to the simulator (direct), through Forwarder
// (tcpfwd) and through smppd (smppd). Each path submits b.N messages, in that order, each timed
// on its own after a GC; ns/op is the sum of the three per-message times. Every message must be
// answered ESME_ROK or the benchmark fails.
//
// Reported: <path>_msgs/s; the ratios smppd/tcpfwd, smppd/direct and tcpfwd/direct; p50_us and
// p99_us, the smppd path's submit-to-response latency; allocs/msg_<path>_path, all mallocs in the
// process during that path's run per message (load generator and simulator included, so
// smppd's own share is allocs/msg_smppd_path - allocs/msg_direct_path); syscalls/msg_<path>_path,
// read and write system calls per message in the process (Linux only; not for tcpfwd, whose
// splice calls are not counted), which shows how well each hop coalesces its writes.
//
// -benchtime sets the time of all three paths together: `make bench` (3s) gives each about a
// second, hundreds of thousands of messages at the larger shapes. Each path is warmed up with
// 20 windows' worth of messages per connection (at least 1000) before its first timed run.
func BenchmarkForward(b *testing.B) {
	e := newEnv(b, nil)
	pdu := submitPDU()
	paths := []struct{ name, addr string }{{"direct", e.sim.Addr()}, {"tcpfwd", e.fwd.Addr()}, {"smppd", e.node.SMPPAddr()}}
	// dial binds and warms up the loads of one shape, nil for paths not selected by -paths.
	dial := func(conns, window int) ([]*Load, error) {
		loads := make([]*Load, len(paths))
		for i, p := range paths {
			if !slices.Contains(strings.Split(*pathsFlag, ","), p.name) {
				continue
			}
			l, err := Dial(p.addr, "demo", "demo", conns, window, bindTimeout)
			if err != nil {
				return loads, fmt.Errorf("%s: %w", p.name, err)
			}
			loads[i] = l
			if r := l.Run(pdu, max(1000, 20*conns*window), runTimeout); r.Err != nil {
				return loads, fmt.Errorf("%s: warm-up: %w", p.name, r.Err)
			}
		}
		return loads, nil
	}
	for _, s := range []struct{ conns, window int }{{1, 1}, {4, 10}, {16, 100}} {
		var loads []*Load // dialed and warmed up on the first invocation: filtered-out shapes cost nothing
		b.Run(fmt.Sprintf("conns=%d,window=%d", s.conns, s.window), func(b *testing.B) {
			b.StopTimer()
			if loads == nil {
				var err error
				if loads, err = dial(s.conns, s.window); err != nil {
					b.Fatal(err)
				}
			}
			rate := map[string]float64{}
			for i, p := range paths {
				if loads[i] == nil {
					continue
				}
				runtime.GC()
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				sys0, sysOK := rwSyscalls()
				b.StartTimer()
				r := loads[i].Run(pdu, b.N, runTimeout)
				b.StopTimer()
				runtime.ReadMemStats(&m1)
				sys1, _ := rwSyscalls()
				if r.Err != nil {
					b.Fatalf("%s: %v", p.name, r.Err)
				}
				rate[p.name] = r.Rate()
				perMsg := func(v uint64) float64 { return float64(v) / float64(b.N) }
				b.ReportMetric(r.Rate(), p.name+"_msgs/s")
				b.ReportMetric(perMsg(m1.Mallocs-m0.Mallocs), "allocs/msg_"+p.name+"_path")
				if sysOK && p.name != "tcpfwd" { // the forwarder's splice(2) calls are not counted
					b.ReportMetric(perMsg(sys1-sys0), "syscalls/msg_"+p.name+"_path")
				}
				if p.name == "smppd" {
					q := r.Percentiles(0.5, 0.99)
					b.ReportMetric(float64(q[0].Nanoseconds())/1e3, "p50_us")
					b.ReportMetric(float64(q[1].Nanoseconds())/1e3, "p99_us")
				}
			}
			for _, r := range [][2]string{{"smppd", "tcpfwd"}, {"smppd", "direct"}, {"tcpfwd", "direct"}} {
				if rate[r[0]] > 0 && rate[r[1]] > 0 {
					b.ReportMetric(rate[r[0]]/rate[r[1]], r[0]+"/"+r[1])
				}
			}
		})
		for _, l := range loads {
			if l != nil {
				l.Close()
			}
		}
	}
}

// rwSyscalls returns the process's read- and write-like system calls so far (Linux
// /proc/self/io syscr + syscw; ok false elsewhere). They show how well writes are coalesced.
func rwSyscalls() (n uint64, ok bool) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		if k == "syscr" || k == "syscw" {
			x, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, false
			}
			n += x
		}
	}
	return n, true
}
