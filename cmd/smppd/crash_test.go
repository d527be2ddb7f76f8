package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// TestMain runs smppd itself when the crash tests start this binary as a child process.
func TestMain(m *testing.M) {
	if path := os.Getenv("SMPPD_TEST_CHILD_CONFIG"); path != "" {
		os.Exit(run(path, false))
	}
	os.Exit(m.Run())
}

// daemon is smppd running as a child process on a fixed config, restartable.
type daemon struct {
	t                *testing.T
	cfgPath          string
	smppAddr, admin  string
	raft             string
	cmd              *exec.Cmd
	simAddr, dataDir string
}

func newDaemon(t *testing.T, simAddr string) *daemon {
	d := &daemon{t: t, smppAddr: smpptest.FreeAddr(t), admin: smpptest.FreeAddr(t), simAddr: simAddr, dataDir: t.TempDir(), raft: smpptest.FreeAddr(t)}
	d.cfgPath = filepath.Join(t.TempDir(), "smppd.yaml")
	cfg := fmt.Sprintf(`node: {id: 7, data_dir: %q}
listen: {smpp: %q, admin: %q}
cluster: {raft_addr: %q}
upstreams:
  - {name: sim, address: %q, system_id: smppd, password: smppd, binds: 2, window: 100, reconnect_min: 20ms, reconnect_max: 200ms}
accounts:
  - {system_id: demo, password: demo, upstream: sim, window: 100}
receipts: {retry_min: 20ms, retry_max: 200ms}
log: {level: warn}
`, d.dataDir, d.smppAddr, d.admin, d.raft, simAddr)
	if err := os.WriteFile(d.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.kill)
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.startAsync()
	d.waitReady()
}

// startAsync starts the process without waiting for it to be ready.
func (d *daemon) startAsync() {
	d.t.Helper()
	d.cmd = exec.Command(os.Args[0], "-test.run=^$")
	d.cmd.Env = append(os.Environ(), "SMPPD_TEST_CHILD_CONFIG="+d.cfgPath)
	d.cmd.Stderr = os.Stderr
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
}

// waitReady waits until the node's /readyz answers 200.
func (d *daemon) waitReady() {
	d.t.Helper()
	smpptest.WaitFor(d.t, "smppd ready", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + d.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// kill sends SIGKILL: no shutdown code runs, nothing is flushed.
func (d *daemon) kill() {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Kill()
		_ = d.cmd.Wait()
		d.cmd = nil
	}
}

func (d *daemon) pending() int {
	resp, err := http.Get("http://" + d.admin + "/api/v1/status")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st struct {
		Accounts []struct {
			SystemID string `json:"system_id"`
			Pending  int    `json:"outbox_pending"`
		} `json:"accounts"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return -1
	}
	for _, a := range st.Accounts {
		if a.SystemID == "demo" {
			return a.Pending
		}
	}
	return -1
}

// receipts records the receipts a client got, by the id they carry.
type receipts struct {
	mu  sync.Mutex
	got map[string]int
	n   atomic.Int64
}

func (r *receipts) onDeliver(c *smpp.Client, ref smpp.DeliverRef, pdu []byte) {
	var s smpp.Submit
	if smpp.ParseSubmit(pdu[smpp.HeaderLen:], &s) == nil {
		if rc, err := smpp.ParseReceipt(&s); err == nil {
			r.mu.Lock()
			r.got[string(rc.TLVID)]++
			r.mu.Unlock()
			r.n.Add(1)
		}
	}
	_ = c.RespondDeliver(ref, smpp.StatusOK)
}

func dialClient(t *testing.T, addr string, bt smpp.BindType, r *receipts) *smpp.Client {
	cc := smpp.DefaultClientConfig()
	cc.Name, cc.Addr, cc.SystemID, cc.Password, cc.BindType, cc.Window = "esme", addr, "demo", "demo", bt, 50
	cc.ReconnectMin, cc.ReconnectMax, cc.ResponseTimeout = 20*time.Millisecond, 200*time.Millisecond, 5*time.Second
	cc.Logger = slog.New(slog.DiscardHandler)
	if r != nil {
		cc.OnDeliver = r.onDeliver
	}
	c := smpp.NewClient(cc)
	c.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	smpptest.WaitFor(t, "client bound", 10*time.Second, c.Bound)
	return c
}

func receiptPDU(i int) []byte {
	s := smpp.Submit{SrcTON: 5, SrcAddr: []byte("shop"), DstTON: 1, DstNPI: 1,
		DstAddr: fmt.Appendf(nil, "4915112%06d", i), RegisteredDelivery: 1, ShortMessage: fmt.Appendf(nil, "message %d", i)}
	return smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s)
}

// outcomes collects submit results: ids acknowledged, and submits whose outcome the client
// never learnt (the node died with them in flight).
type outcomes struct {
	mu      sync.Mutex
	ids     map[string]bool
	inDoubt int
	refused int
}

type waiter struct{ o *outcomes }

func (w waiter) SubmitDone(_ *smpp.Batch, st smpp.Status, id []byte, err error) {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	switch {
	case err != nil:
		w.o.inDoubt++
	case st == smpp.StatusOK:
		w.o.ids[string(id)] = true
	default:
		w.o.refused++
	}
}

func (o *outcomes) acked() int { o.mu.Lock(); defer o.mu.Unlock(); return len(o.ids) }

// TestReceiptsPendingSurviveKill: receipts stored for a client that is not bound survive
// SIGKILL and a restart, and are delivered exactly once when it binds.
func TestReceiptsPendingSurviveKill(t *testing.T) {
	sim, err := smpptest.Start(smpptest.Config{ReceiptDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	d := newDaemon(t, sim.Addr())
	d.start()
	tx := dialClient(t, d.smppAddr, smpp.Transmitter, nil)
	o := &outcomes{ids: map[string]bool{}}
	const n = 200
	for i := range n {
		for tx.Submit(receiptPDU(i), waiter{o}) == smpp.ErrWindowFull {
			smpptest.WaitFor(t, "window", 5*time.Second, func() bool { return tx.Free() > 0 })
		}
	}
	smpptest.WaitFor(t, "all receipts stored", 20*time.Second, func() bool { return d.pending() == n })
	if o.acked() != n {
		t.Fatalf("%d of %d submits acknowledged", o.acked(), n)
	}
	d.kill()
	d.start()
	if p := d.pending(); p != n {
		t.Fatalf("after SIGKILL and restart %d receipts pending, want %d", p, n)
	}
	r := &receipts{got: map[string]int{}}
	dialClient(t, d.smppAddr, smpp.Receiver, r)
	smpptest.WaitFor(t, "receipts delivered", 20*time.Second, func() bool { return d.pending() == 0 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != n || r.n.Load() != n {
		t.Fatalf("client got %d receipts for %d ids, want %d each once", r.n.Load(), len(r.got), n)
	}
	for id := range o.ids {
		if r.got[id] != 1 {
			t.Fatalf("receipt for %s delivered %d times", id, r.got[id])
		}
	}
}

// TestReceiptsAcrossKillUnderLoad is the acceptance run: a client sends continuously,
// every message asking for a receipt; the node is killed with SIGKILL mid-stream and restarted;
// every message the client got an id for gets its receipt with that id.
func TestReceiptsAcrossKillUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("process kill test; run without -short")
	}
	sim, err := smpptest.Start(smpptest.Config{ReceiptDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	d := newDaemon(t, sim.Addr())
	d.start()
	r := &receipts{got: map[string]int{}}
	c := dialClient(t, d.smppAddr, smpp.Transceiver, r)
	o := &outcomes{ids: map[string]bool{}}

	var sent atomic.Int64
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := c.Submit(receiptPDU(i), waiter{o}); err != nil {
				// window full or link down (the node is restarting): wait for room or a bind
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				i--
				continue
			}
			sent.Add(1)
		}
	}()
	smpptest.WaitFor(t, "load under way", 20*time.Second, func() bool { return o.acked() >= 1500 && r.n.Load() >= 500 })
	d.kill()
	killedAt := o.acked()
	d.start()
	smpptest.WaitFor(t, "load resumed", 30*time.Second, func() bool { return o.acked() >= killedAt+1500 })
	close(stop)
	<-loadDone
	// Every submit is answered or given up (in doubt) by the client.
	smpptest.WaitFor(t, "submits settled", 20*time.Second, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return int64(len(o.ids)+o.inDoubt+o.refused) == sent.Load()
	})
	smpptest.WaitFor(t, "every acknowledged message has its receipt", 30*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for id := range o.ids {
			if r.got[id] == 0 {
				return false
			}
		}
		return true
	})
	o.mu.Lock()
	r.mu.Lock()
	defer o.mu.Unlock()
	defer r.mu.Unlock()
	dups, unknown := 0, 0
	for id, k := range r.got {
		dups += k - 1
		if !o.ids[id] {
			unknown++
		}
	}
	accepted := int(sim.Accepted())
	t.Logf("sent %d, acknowledged %d, in doubt at the kill %d, refused %d; SMSC accepted %d; receipts received %d for %d distinct ids (%d for ids the client never got, %d repeats)",
		sent.Load(), len(o.ids), o.inDoubt, o.refused, accepted, r.n.Load(), len(r.got), unknown, dups)
	if o.refused != 0 {
		t.Fatalf("%d submits refused", o.refused)
	}
	// Receipts for ids the client never got can only be for submits in flight at the kill.
	if unknown > o.inDoubt {
		t.Fatalf("%d receipts for unknown ids, more than the %d submits in doubt", unknown, o.inDoubt)
	}
	// The SMSC accepted every acknowledged message, and at most the in-doubt ones besides.
	if accepted < len(o.ids) || accepted > len(o.ids)+o.inDoubt {
		t.Fatalf("SMSC accepted %d; acknowledged %d, in doubt %d", accepted, len(o.ids), o.inDoubt)
	}
	// A receipt can be delivered twice only if the node died after sending it and before its
	// removal was synced: at most the deliver window of the session twice over (sent and
	// unanswered, answered and not yet removed).
	if dups > 2*10 {
		t.Fatalf("%d receipts delivered more than once", dups)
	}
}
