package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/node"
	"github.com/smppd/smppd/smpp/smpptest"
	"github.com/smppd/smppd/store"
)

// startCluster starts a 3-node in-process cluster (real Raft over TCP, real Pebble) in front
// of a simulator.
func startCluster(b *testing.B) []*node.Node { return startNodes(b, 3) }

// startNodes starts a size-node in-process cluster.
func startNodes(b *testing.B, size int) []*node.Node {
	b.Helper()
	sim, err := smpptest.Start(smpptest.Config{AnyAccount: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sim.Close)
	var peers []config.Peer
	for i := range size {
		peers = append(peers, config.Peer{ID: fmt.Sprintf("n%d", i+1), Raft: smpptest.FreeAddr(b), Admin: smpptest.FreeAddr(b)})
	}
	nodes := make([]*node.Node, size)
	for i := range nodes {
		cfg := config.Default()
		cfg.Node.ID, cfg.Node.DataDir = i+1, b.TempDir()
		cfg.Listen.SMPP, cfg.Listen.Admin = "127.0.0.1:0", peers[i].Admin
		cfg.Cluster.NodeID, cfg.Cluster.RaftAddr, cfg.Cluster.Peers = peers[i].ID, peers[i].Raft, peers
		cfg.Upstreams[0].Address = sim.Addr()
		cfg.Log.Level = slog.LevelWarn
		n, err := node.New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		if err := n.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.Shutdown(ctx)
		})
		nodes[i] = n
	}
	waitUntil(b, "a leader known to all", func() bool {
		for _, n := range nodes {
			if id, _ := n.Cluster().Leader(); id == "" {
				return false
			}
		}
		return true
	})
	return nodes
}

func waitUntil(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(runTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling state in a benchmark's setup, not synchronising a test
	}
}

// follower returns a node that does not lead (the only node of a one-node cluster).
func follower(nodes []*node.Node) *node.Node {
	for _, n := range nodes {
		if !n.Cluster().IsLeader() {
			return n
		}
	}
	return nodes[0]
}

// BenchmarkClusterImport: b.N numbers imported as CSV through a follower's admin API (streamed in
// commands of 1,000, 8 in flight, forwarded to the leader), replicated to 3 nodes; the time runs
// until every node's hot-path index holds all of them. Reported: numbers/s. The three nodes
// share this machine's cores; nodes=1 is one node alone (the work one member does, without
// replication), for comparison.
func BenchmarkClusterImport(b *testing.B) {
	for _, size := range []int{3, 1} {
		b.Run(fmt.Sprintf("nodes=%d", size), func(b *testing.B) { benchImport(b, size) })
	}
}

func benchImport(b *testing.B, size int) {
	nodes := startNodes(b, size)
	var csv bytes.Buffer
	for i := range b.N {
		fmt.Fprintf(&csv, "%d\n", 4930000000000+i)
	}
	f := follower(nodes)
	b.ResetTimer()
	start := time.Now()
	resp, err := http.Post("http://"+f.AdminAddr()+"/api/v1/blocklist/import", "text/csv", &csv)
	if err != nil {
		b.Fatal(err)
	}
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != 200 || out["lines"] != float64(b.N) || out["added"].(float64)+out["retried"].(float64) < float64(b.N) {
		b.Fatalf("import: %d %v", resp.StatusCode, out)
	}
	if out["retried"] != float64(0) {
		b.Logf("import: %v (commands retried after a leadership change)", out)
	}
	waitUntil(b, "all nodes hold every number", func() bool {
		for _, n := range nodes {
			if n.Index().Len() < b.N {
				return false
			}
		}
		return true
	})
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "numbers/s")
}

// BenchmarkClusterWrite: single-number blocklist writes through a follower's admin API, one at a
// time. Reported: p50/p99 of the write's latency (HTTP answer = committed on a quorum and
// applied on the leader) and of the delay from that answer until every node's index refuses the
// number; and the failover time after the leader's Raft stops abruptly (no leadership
// transfer), until another node leads.
func BenchmarkClusterWrite(b *testing.B) {
	nodes := startCluster(b)
	f := follower(nodes)
	var lat, spread []time.Duration
	b.ResetTimer()
	for i := range b.N {
		num := uint64(4931000000000 + i)
		body := fmt.Sprintf(`{"numbers":["%d"]}`, num)
		start := time.Now()
		resp, err := http.Post("http://"+f.AdminAddr()+"/api/v1/blocklist", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("write: %s", resp.Status)
		}
		acked := time.Now()
		lat = append(lat, acked.Sub(start))
		waitUntil(b, "refused on all nodes", func() bool {
			for _, n := range nodes {
				if !n.Index().Check(num, "demo", "shop").Has(store.KindBlock) {
					return false
				}
			}
			return true
		})
		spread = append(spread, time.Since(acked))
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(spread)
	q := func(d []time.Duration, p float64) float64 {
		return float64(d[min(int(p*float64(len(d))), len(d)-1)].Microseconds())
	}
	b.ReportMetric(q(lat, 0.5), "write_p50_us")
	b.ReportMetric(q(lat, 0.99), "write_p99_us")
	b.ReportMetric(q(spread, 0.5), "refused_everywhere_p50_us")
	b.ReportMetric(q(spread, 0.99), "refused_everywhere_p99_us")

	var leader *node.Node
	for _, n := range nodes {
		if n.Cluster().IsLeader() {
			leader = n
		}
	}
	start := time.Now()
	_ = leader.Cluster().Raft().Shutdown().Error()
	waitUntil(b, "a new leader", func() bool {
		for _, n := range nodes {
			if n != leader && n.Cluster().IsLeader() {
				return true
			}
		}
		return false
	})
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "failover_ms")
}
