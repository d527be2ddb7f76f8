package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

func testLogger() *slog.Logger {
	if os.Getenv("SMPPD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

var waitFor = smpptest.WaitFor

func startSim(t testing.TB, cfg smpptest.Config) *smpptest.SMSC {
	t.Helper()
	sim, err := smpptest.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

// startNode runs a node in front of sim with test-sized timeouts; mutate adjusts the config.
func startNode(t testing.TB, sim *smpptest.SMSC, mutate func(*config.Config), stages ...router.Stage) *Node {
	t.Helper()
	cfg := config.Default()
	cfg.Node.DataDir = t.TempDir()
	cfg.Listen.SMPP, cfg.Listen.Admin = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Cluster.RaftAddr = smpptest.FreeAddr(t)
	cfg.Upstreams[0].Address = sim.Addr()
	cfg.Upstreams[0].ReconnectMin = config.Duration(20 * time.Millisecond)
	cfg.Upstreams[0].ReconnectMax = config.Duration(200 * time.Millisecond)
	cfg.Router.MaxWait = config.Duration(time.Second)
	cfg.Server.ShutdownTimeout = config.Duration(5 * time.Second)
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, testLogger(), stages...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return n
}

type (
	result   = smpptest.Outcome
	resultCh = smpptest.Outcomes
)

// esme is a test client bound to smppd (or the simulator).
type esme struct {
	t  testing.TB
	c  *smpp.Client
	up chan struct{}
}

func dialESME(t testing.TB, addr, systemID, password string, window int) *esme {
	t.Helper()
	return dialESMEWith(t, addr, systemID, password, window, nil)
}

// dialESMEWith is dialESME with the client config adjusted by mutate (bind type, OnDeliver).
func dialESMEWith(t testing.TB, addr, systemID, password string, window int, mutate func(*smpp.ClientConfig)) *esme {
	t.Helper()
	e := &esme{t: t, up: make(chan struct{}, 1)}
	cc := smpp.DefaultClientConfig()
	cc.Name, cc.Addr, cc.SystemID, cc.Password, cc.Window = "esme", addr, systemID, password, window
	cc.ResponseTimeout = 10 * time.Second
	cc.Logger = testLogger()
	if mutate != nil {
		mutate(&cc)
	}
	cc.OnFree = func() {
		select {
		case e.up <- struct{}{}:
		default:
		}
	}
	e.c = smpp.NewClient(cc)
	e.c.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.c.Close(ctx)
	})
	timeout := time.After(5 * time.Second)
	for !e.c.Bound() {
		select {
		case <-e.up:
		case <-timeout:
			t.Fatalf("esme %s could not bind to %s", systemID, addr)
		}
	}
	return e
}

// send submits pdu and returns the channel its result arrives on, waiting for window if needed.
func (e *esme) send(pdu []byte) resultCh {
	e.t.Helper()
	w := make(resultCh, 1)
	timeout := time.After(10 * time.Second)
	for {
		err := e.c.Submit(pdu, w)
		if err == nil {
			return w
		}
		if err != smpp.ErrWindowFull {
			e.t.Fatalf("submit: %v", err)
		}
		select {
		case <-e.up:
		case <-timeout:
			e.t.Fatal("esme window never freed")
		}
	}
}

func (e *esme) submit(pdu []byte) result {
	e.t.Helper()
	return e.send(pdu).Next(e.t, 15*time.Second)
}

// gsm builds a submit_sm PDU with a GSM 7-bit text to dst.
func gsm(dst, text string) []byte {
	s := smpp.Submit{SrcTON: 5, SrcAddr: []byte("smppd"), DstTON: 1, DstNPI: 1, DstAddr: []byte(dst), ShortMessage: []byte(text)}
	return smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s)
}

func httpGet(t testing.TB, n *Node, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s%s", n.AdminAddr(), path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
