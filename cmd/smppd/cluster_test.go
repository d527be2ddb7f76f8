package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
)

// newClusterDaemons writes the configs of a size-node cluster (all initial members) in front of
// the simulator at simAddr; extra cluster keys ("snapshot_threshold: 16, ...") go in every one.
func newClusterDaemons(t *testing.T, simAddr string, size int, extra ...string) []*daemon {
	ds := make([]*daemon, size)
	var peers []string
	for i := range ds {
		ds[i] = &daemon{t: t, smppAddr: smpptest.FreeAddr(t), admin: smpptest.FreeAddr(t), raft: smpptest.FreeAddr(t), simAddr: simAddr, dataDir: t.TempDir()}
		peers = append(peers, fmt.Sprintf("{id: n%d, raft: %q, admin: %q}", i+1, ds[i].raft, ds[i].admin))
	}
	for i, d := range ds {
		d.cfgPath = filepath.Join(t.TempDir(), "smppd.yaml")
		cfg := fmt.Sprintf(`node: {id: %d, data_dir: %q}
listen: {smpp: %q, admin: %q}
cluster: {node_id: n%d, raft_addr: %q, peers: [%s]%s}
upstreams:
  - {name: sim, address: %q, system_id: smppd, password: smppd, binds: 2, window: 100, reconnect_min: 20ms, reconnect_max: 200ms}
accounts:
  - {system_id: demo, password: demo, upstream: sim, window: 100}
log: {level: warn}
`, i+1, d.dataDir, d.smppAddr, d.admin, i+1, d.raft, strings.Join(peers, ", "), extraKeys(extra), simAddr)
		if err := os.WriteFile(d.cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.kill)
	}
	return ds
}

// startAll starts ds and waits until every one is ready and one of them leads.
func startAll(t *testing.T, ds []*daemon) {
	t.Helper()
	for _, d := range ds {
		d.startAsync()
	}
	for _, d := range ds {
		d.waitReady()
	}
	smpptest.WaitFor(t, "a leader", 20*time.Second, func() bool { return leader(ds) != nil })
}

func extraKeys(extra []string) string {
	if len(extra) == 0 {
		return ""
	}
	return ", " + strings.Join(extra, ", ")
}

// TestFourthNodeJoinsBySnapshot: three smppd processes whose logs were truncated behind a
// snapshot; a fourth process, started to wait for a join and joined through a member's admin
// API, catches up by installing the leader's snapshot (it takes none of its own) and enforces
// every entry.
func TestFourthNodeJoinsBySnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test; run without -short")
	}
	sim, err := smpptest.Start(smpptest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	members := newClusterDaemons(t, sim.Addr(), 3, "snapshot_threshold: 16", "snapshot_interval: 50ms", "trailing_logs: 4")
	// n4 is in no one's peers: it waits to be joined, and never snapshots by itself.
	n4 := &daemon{t: t, smppAddr: smpptest.FreeAddr(t), admin: smpptest.FreeAddr(t), raft: smpptest.FreeAddr(t),
		simAddr: sim.Addr(), dataDir: t.TempDir(), cfgPath: filepath.Join(t.TempDir(), "smppd.yaml")}
	t.Cleanup(n4.kill)
	cfg := fmt.Sprintf(`node: {id: 4, data_dir: %q}
listen: {smpp: %q, admin: %q}
cluster: {node_id: n4, raft_addr: %q, bootstrap: false, snapshot_threshold: 1000000000, peers: []}
upstreams:
  - {name: sim, address: %q, system_id: smppd, password: smppd, binds: 1, window: 10}
accounts:
  - {system_id: demo, password: demo, upstream: sim}
log: {level: warn}
`, n4.dataDir, n4.smppAddr, n4.admin, n4.raft, sim.Addr())
	if err := os.WriteFile(n4.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startAll(t, members)
	var all []uint64
	for i := range 40 { // 40 log entries: past the threshold, snapshots truncate the logs
		var nums []uint64
		for j := range 100 {
			nums = append(nums, uint64(4915200000000+i*100+j))
		}
		if !members[i%3].blockNumbers(nums) {
			t.Fatalf("write %d failed", i)
		}
		all = append(all, nums...)
	}
	snaps := func(d *daemon) int { // raft's file snapshot store keeps them in <dir>/snapshots
		es, _ := os.ReadDir(filepath.Join(d.dataDir, "raft", "snapshots", "snapshots"))
		return len(es)
	}
	smpptest.WaitFor(t, "every member took a snapshot", 20*time.Second, func() bool {
		for _, d := range members {
			if snaps(d) == 0 {
				return false
			}
		}
		return true
	})
	n4.startAsync()
	smpptest.WaitFor(t, "n4 admin up", 20*time.Second, func() bool { _, ok := n4.cluster(); return ok })
	if snaps(n4) != 0 {
		t.Fatal("n4 has a snapshot before it joined")
	}
	body, _ := json.Marshal(map[string]string{"id": "n4", "raft": n4.raft, "admin": n4.admin})
	resp, err := http.Post("http://"+members[1].admin+"/api/v1/cluster/join", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("join: %s", resp.Status)
	}
	smpptest.WaitFor(t, "n4 caught up", 30*time.Second, func() bool { return len(n4.blocked(t)) == len(all) })
	if snaps(n4) == 0 {
		t.Fatal("n4 caught up without installing a snapshot: the test did not truncate the logs")
	}
	got := n4.blocked(t)
	for _, n := range all {
		if !got[n] {
			t.Fatalf("n4 lacks %d", n)
		}
	}
	// And it refuses them over SMPP.
	n4.waitReady()
	c := dialClient(t, n4.smppAddr, smpp.Transmitter, nil)
	w := make(smpptest.Outcomes, 1)
	s := smpp.Submit{DstTON: 1, DstNPI: 1, DstAddr: []byte(strconv.FormatUint(all[0], 10)), ShortMessage: []byte("hi")}
	if err := c.Submit(smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s), w); err != nil {
		t.Fatal(err)
	}
	if o := w.Next(t, 10*time.Second); o.Status != smpp.Status(0x45) {
		t.Fatalf("n4 answered %v for a blocked number, want 0x45", o.Status)
	}
}

type clusterView struct {
	Raft struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		Leader string `json:"leader"`
	} `json:"raft"`
	Applied uint64         `json:"fsm_applied_index"`
	Entries map[string]int `json:"entries"`
}

func (d *daemon) cluster() (clusterView, bool) {
	var v clusterView
	resp, err := http.Get("http://" + d.admin + "/api/v1/cluster")
	if err != nil {
		return v, false
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v) == nil
}

func leader(ds []*daemon) *daemon {
	for _, d := range ds {
		if d.cmd == nil {
			continue
		}
		if v, ok := d.cluster(); ok && v.Raft.State == "Leader" {
			return d
		}
	}
	return nil
}

// blockNumbers posts numbers to a node's blocklist; ok reports a 200.
func (d *daemon) blockNumbers(nums []uint64) bool {
	var s []string
	for _, n := range nums {
		s = append(s, strconv.FormatUint(n, 10))
	}
	b, _ := json.Marshal(map[string]any{"numbers": s})
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Post("http://"+d.admin+"/api/v1/blocklist", "application/json", bytes.NewReader(b))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// blocked returns the numbers a node's export lists.
func (d *daemon) blocked(t *testing.T) map[uint64]bool {
	resp, err := http.Get("http://" + d.admin + "/api/v1/blocklist/export")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	recs, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]bool{}
	for _, r := range recs {
		if n, err := strconv.ParseUint(strings.TrimPrefix(r[0], "+"), 10, 64); err == nil {
			out[n] = true
		}
	}
	return out
}

// TestClusterLeaderKilledDuringWrites: three smppd processes; writes go to every node while
// the leader is killed with SIGKILL and restarted; no acknowledged entry is lost, and all nodes
// end with the same entries.
func TestClusterLeaderKilledDuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test; run without -short")
	}
	sim, err := smpptest.Start(smpptest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ds := newClusterDaemons(t, sim.Addr(), 3)
	startAll(t, ds)

	var mu sync.Mutex
	acked := map[uint64]bool{}
	var next atomic.Uint64
	next.Store(4915100000000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				d := ds[(w+i)%len(ds)] // a killed node's requests fail; that is the point
				var nums []uint64
				for range 10 {
					nums = append(nums, next.Add(1))
				}
				if d.blockNumbers(nums) {
					mu.Lock()
					for _, n := range nums {
						acked[n] = true
					}
					mu.Unlock()
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	smpptest.WaitFor(t, "writes flowing", 20*time.Second, func() bool { return count() >= 300 })
	l := leader(ds)
	if l == nil {
		t.Fatal("no leader")
	}
	killedAt := count()
	l.kill()
	smpptest.WaitFor(t, "a new leader and more writes", 20*time.Second, func() bool { return leader(ds) != nil && count() >= killedAt+300 })
	l.startAsync()
	l.waitReady()
	smpptest.WaitFor(t, "writes with the old leader back", 20*time.Second, func() bool { return count() >= killedAt+600 })
	close(stop)
	wg.Wait()
	total := count()
	var applied []uint64
	smpptest.WaitFor(t, "all nodes converge", 30*time.Second, func() bool {
		applied = applied[:0]
		var first clusterView
		for i, d := range ds {
			v, ok := d.cluster()
			if !ok || (i > 0 && (v.Applied != first.Applied || v.Entries["block"] != first.Entries["block"])) {
				return false
			}
			if i == 0 {
				first = v
			}
			applied = append(applied, v.Applied)
		}
		return first.Entries["block"] >= total
	})
	for i, d := range ds {
		got := d.blocked(t)
		for n := range acked {
			if !got[n] {
				t.Fatalf("node %d lost acknowledged entry %d (leader %s was killed after %d acknowledged)", i+1, n, l.raft, killedAt)
			}
		}
	}
	t.Logf("%d entries acknowledged (leader SIGKILLed after %d), all present on all 3 nodes at applied index %v", total, killedAt, applied)
}

// TestRollingRestartUnderLoad: SMPP clients send to all three nodes while each node in turn
// gets SIGTERM and is restarted (the leader transfers leadership first); every submit is
// answered, none is in doubt, the SMSC gets each accepted message once, and blocklist entries
// written meanwhile are all kept.
func TestRollingRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test; run without -short")
	}
	sim, err := smpptest.Start(smpptest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ds := newClusterDaemons(t, sim.Addr(), 3)
	startAll(t, ds)

	o := &outcomes{ids: map[string]bool{}}
	var statuses sync.Map // status -> *atomic.Int64
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range ds {
		c := dialClient(t, d.smppAddr, smpp.Transmitter, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				s := smpp.Submit{SrcTON: 5, SrcAddr: []byte("shop"), DstTON: 1, DstNPI: 1,
					DstAddr: fmt.Appendf(nil, "49151%d%07d", i, k), ShortMessage: fmt.Appendf(nil, "rolling %d %d", i, k)}
				if err := c.Submit(smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s), statusWaiter{o, &statuses}); err != nil {
					k--
					select {
					case <-stop:
						return
					case <-time.After(2 * time.Millisecond): // window full or rebinding: wait for room
					}
					continue
				}
				sent.Add(1)
			}
		}()
	}
	var entries []uint64
	for round, d := range ds {
		smpptest.WaitFor(t, "load flowing", 20*time.Second, func() bool { return o.acked() >= (round+1)*500 })
		num := uint64(4916100000000 + round)
		if !ds[(round+1)%3].blockNumbers([]uint64{num}) {
			t.Fatalf("round %d: blocklist write failed", round)
		}
		entries = append(entries, num)
		d.term()
		d.startAsync()
		d.waitReady()
		smpptest.WaitFor(t, "a leader after the restart", 20*time.Second, func() bool { return leader(ds) != nil })
	}
	smpptest.WaitFor(t, "load after the last restart", 20*time.Second, func() bool { return o.acked() >= 2000 })
	close(stop)
	wg.Wait()
	smpptest.WaitFor(t, "submits settled", 20*time.Second, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return int64(len(o.ids)+o.inDoubt+o.refused) == sent.Load()
	})
	o.mu.Lock()
	defer o.mu.Unlock()
	var refusedBy []string
	statuses.Range(func(k, v any) bool {
		refusedBy = append(refusedBy, fmt.Sprintf("%v x%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	t.Logf("sent %d: accepted %d, refused %d (%s), in doubt %d; SMSC accepted %d", sent.Load(), len(o.ids), o.refused,
		strings.Join(refusedBy, ", "), o.inDoubt, sim.Accepted())
	if o.inDoubt != 0 {
		t.Fatalf("%d submits in doubt: a draining node must answer every in-flight submit", o.inDoubt)
	}
	if int(sim.Accepted()) != len(o.ids) {
		t.Fatalf("SMSC accepted %d, clients were told %d: lost or duplicated messages", sim.Accepted(), len(o.ids))
	}
	for i, d := range ds {
		got := d.blocked(t)
		for _, n := range entries {
			if !got[n] {
				t.Fatalf("node %d lost entry %d written during the rolling restart", i+1, n)
			}
		}
	}
}

// statusWaiter counts refusals by status besides the outcomes.
type statusWaiter struct {
	o  *outcomes
	st *sync.Map
}

func (w statusWaiter) SubmitDone(b *smpp.Batch, st smpp.Status, id []byte, err error) {
	if err == nil && st != smpp.StatusOK {
		v, _ := w.st.LoadOrStore(st.String(), new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	waiter{w.o}.SubmitDone(b, st, id, err)
}

// term sends SIGTERM and waits for the process to exit.
func (d *daemon) term() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	_ = d.cmd.Wait()
	d.cmd = nil
}
