package node

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
	"github.com/smppd/smppd/store"
)

// startCluster starts size nodes in-process in front of sim, all members from the start.
func startCluster(t testing.TB, sim *smpptest.SMSC, size int, mutate func(i int, c *config.Config)) []*Node {
	t.Helper()
	var peers []config.Peer
	for i := range size {
		peers = append(peers, config.Peer{ID: fmt.Sprintf("n%d", i+1), Raft: smpptest.FreeAddr(t), Admin: smpptest.FreeAddr(t)})
	}
	nodes := make([]*Node, size)
	for i := range size {
		nodes[i] = startNode(t, sim, func(c *config.Config) {
			c.Node.ID = i + 1
			c.Listen.Admin = peers[i].Admin
			c.Cluster.NodeID, c.Cluster.RaftAddr, c.Cluster.Peers = peers[i].ID, peers[i].Raft, peers
			if mutate != nil {
				mutate(i, c)
			}
		})
	}
	waitFor(t, "a leader", 10*time.Second, func() bool { return leaderOf(nodes) != nil })
	return nodes
}

func leaderOf(nodes []*Node) *Node {
	for _, n := range nodes {
		if n != nil && n.Cluster().IsLeader() {
			return n
		}
	}
	return nil
}

func adminPost(t testing.TB, n *Node, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.AdminAddr()+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestBlocklistEnforcedOnAllNodes: a number blocklisted through a follower's admin API is
// refused by every node, over SMPP, within milliseconds; a number that is not stays allowed.
func TestBlocklistEnforcedOnAllNodes(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	nodes := startCluster(t, sim, 3, nil)
	var follower *Node
	for _, n := range nodes {
		if !n.Cluster().IsLeader() {
			follower = n
			break
		}
	}
	const blocked, other = uint64(4915112345678), uint64(4915112345679)
	start := time.Now()
	code, out := adminPost(t, follower, "/api/v1/blocklist", "", map[string]any{"numbers": []string{"+4915112345678"}, "reason": "complaint by phone"})
	if code != http.StatusOK || out["added"] != float64(1) {
		t.Fatalf("blocklist add on a follower: %d %v", code, out)
	}
	acked := time.Since(start)
	var delays []time.Duration
	for _, n := range nodes {
		waitFor(t, "entry applied", 5*time.Second, func() bool { return n.Index().Check(blocked, "demo", "shop").Has(store.KindBlock) })
		delays = append(delays, time.Since(start)-acked)
	}
	t.Logf("write acknowledged in %s; refused on every node within %s of that", acked, slices.Max(delays))
	for i, n := range nodes {
		e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
		if r := e.submit(gsm("+4915112345678", "hello")); r.Status != smpp.Status(0x45) {
			t.Fatalf("node %d: blocked number answered %v, want ESME_RSUBMITFAIL", i+1, r.Status)
		}
		if r := e.submit(gsm(fmt.Sprint(other), "hello")); r.Status != smpp.StatusOK {
			t.Fatalf("node %d: other number answered %v", i+1, r.Status)
		}
	}
	// Bad input is a 400 naming the field.
	if code, out := adminPost(t, follower, "/api/v1/blocklist", "", map[string]any{"numbers": []string{"12ab"}}); code != 400 ||
		!strings.Contains(fmt.Sprint(out["error"]), "numbers[0]") {
		t.Fatalf("bad number: %d %v", code, out)
	}
	// All nodes reach the same state at the same index.
	waitFor(t, "same state", 5*time.Second, func() bool {
		h0, i0, _ := nodes[0].FSM().StateHash()
		for _, n := range nodes[1:] {
			if h, i, _ := n.FSM().StateHash(); h != h0 || i != i0 {
				return false
			}
		}
		return true
	})
}

// TestAdminTokenRequired: with admin.token set, writes without it get 401 and change nothing.
func TestAdminTokenRequired(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, func(c *config.Config) { c.Admin.Token = "s3cret" })
	waitFor(t, "leader", 10*time.Second, n.Cluster().IsLeader)
	if code, _ := adminPost(t, n, "/api/v1/blocklist", "", map[string]any{"numbers": []string{"4915112345678"}}); code != 401 {
		t.Fatalf("write without token: %d, want 401", code)
	}
	if code, _ := adminPost(t, n, "/api/v1/blocklist", "wrong", map[string]any{"numbers": []string{"4915112345678"}}); code != 401 {
		t.Fatalf("write with a wrong token: %d, want 401", code)
	}
	if n.Index().Len() != 0 {
		t.Fatal("refused write changed the state")
	}
	if code, out := adminPost(t, n, "/api/v1/blocklist", "s3cret", map[string]any{"numbers": []string{"4915112345678"}}); code != 200 {
		t.Fatalf("write with the token: %d %v", code, out)
	}
	// Reads that list numbers need it too.
	if code, _ := httpGet(t, n, "/api/v1/blocklist/export"); code != 401 {
		t.Fatalf("export without token: %d, want 401", code)
	}
}

// TestMOOptOut: an MO "stop" to a short code opts its sender out of messages from that short
// code (replicated like any entry); messages from other senders still go.
func TestMOOptOut(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	n := startNode(t, sim, nil)
	waitFor(t, "leader and upstream", 10*time.Second, func() bool { return n.Cluster().IsLeader() && n.Ready() })
	mo := smpp.Submit{SrcTON: 1, SrcNPI: 1, SrcAddr: []byte("491511234567"), DstAddr: []byte("12345"), ShortMessage: []byte("Stop")}
	if err := sim.SendMO("smppd", &mo); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "opt-out applied", 10*time.Second, func() bool {
		return n.Index().Check(491511234567, "demo", "12345").Has(store.KindOptOut)
	})
	e := dialESME(t, n.SMPPAddr(), "demo", "demo", 10)
	from := func(src string) []byte {
		s := smpp.Submit{SrcTON: 1, SrcAddr: []byte(src), DstTON: 1, DstNPI: 1, DstAddr: []byte("491511234567"), ShortMessage: []byte("offer")}
		return smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &s)
	}
	if r := e.submit(from("12345")); r.Status != smpp.Status(0x45) {
		t.Fatalf("message from the opted-out short code: %v, want refused", r.Status)
	}
	if r := e.submit(from("54321")); r.Status != smpp.StatusOK {
		t.Fatalf("message from another sender: %v, want ESME_ROK", r.Status)
	}
	if got := counter(n, `smppd_mo_optouts_total`); got != 1 {
		t.Fatalf("smppd_mo_optouts_total = %v", got)
	}
}

// TestJoinFourthNode: a node started with bootstrap false and joined through a follower's admin
// API catches up with the entries written before it came, and enforces them; joining it again
// is a no-op.
func TestJoinFourthNode(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	nodes := startCluster(t, sim, 3, nil)
	var nums []string
	for i := range 2500 {
		nums = append(nums, fmt.Sprint(4917000000000+i))
	}
	if code, out := adminPost(t, nodes[0], "/api/v1/blocklist", "", map[string]any{"numbers": nums}); code != 200 || out["added"] != float64(2500) {
		t.Fatalf("bulk add: %d %v", code, out)
	}
	raftAddr, adminAddr := smpptest.FreeAddr(t), smpptest.FreeAddr(t)
	n4 := startNode(t, sim, func(c *config.Config) {
		c.Node.ID, c.Listen.Admin = 4, adminAddr
		c.Cluster.NodeID, c.Cluster.RaftAddr, c.Cluster.Bootstrap = "n4", raftAddr, false
	})
	var follower *Node
	for _, n := range nodes {
		if !n.Cluster().IsLeader() {
			follower = n
		}
	}
	for range 2 { // idempotent
		if code, out := adminPost(t, follower, "/api/v1/cluster/join", "", map[string]string{"id": "n4", "raft": raftAddr, "admin": adminAddr}); code != 200 {
			t.Fatalf("join: %d %v", code, out)
		}
	}
	waitFor(t, "n4 caught up", 20*time.Second, func() bool { return n4.Index().Len() == 2500 })
	if !n4.Index().Check(4917000001234, "demo", "shop").Has(store.KindBlock) {
		t.Fatal("n4 does not enforce an entry written before it joined")
	}
	if got := len(nodes[0].Cluster().Status().Members); got != 4 {
		t.Fatalf("%d members after joining n4 twice, want 4", got)
	}
}

// TestStalePolicyRefuse: a node cut off from its leader keeps enforcing what it has; past
// cluster.stale_after, policy refuse turns its non-OTP traffic away with stale_status, and
// smppd_cluster_stale says so.
func TestStalePolicyRefuse(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	nodes := startCluster(t, sim, 3, func(_ int, c *config.Config) {
		c.Cluster.StaleAfter, c.Cluster.StalePolicy = config.Duration(300*time.Millisecond), "refuse"
	})
	if code, out := adminPost(t, nodes[0], "/api/v1/blocklist", "", map[string]any{"numbers": []string{"4915112345678"}}); code != 200 {
		t.Fatalf("add: %d %v", code, out)
	}
	var cut *Node
	for _, n := range nodes {
		waitFor(t, "applied", 5*time.Second, func() bool { return n.Index().Len() == 1 })
	}
	for _, n := range nodes {
		if cut == nil && !n.Cluster().IsLeader() {
			cut = n
			continue
		}
		_ = n.Cluster().Raft().Shutdown().Error() // the others' Raft stops: no leader for cut
	}
	e := dialESME(t, cut.SMPPAddr(), "demo", "demo", 10)
	if r := e.submit(gsm("+4915112345678", "hi")); r.Status != smpp.Status(0x45) {
		t.Fatalf("blocked number on the cut-off node: %v, want still refused", r.Status)
	}
	waitFor(t, "stale", 10*time.Second, func() bool { return counter(cut, "smppd_cluster_stale") == 1 })
	if r := e.submit(gsm("+4915112345679", "hi")); r.Status != smpp.StatusThrottled {
		t.Fatalf("non-OTP on a stale node with policy refuse: %v, want ESME_RTHROTTLED", r.Status)
	}
}

// TestForwardToJoinedLeader: a node joined later (in no one's cluster.peers) becomes leader;
// the original members still forward writes to it, through its replicated announcement.
func TestForwardToJoinedLeader(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	nodes := startCluster(t, sim, 3, nil)
	raftAddr, adminAddr := smpptest.FreeAddr(t), smpptest.FreeAddr(t)
	n4 := startNode(t, sim, func(c *config.Config) {
		c.Node.ID, c.Listen.Admin = 4, adminAddr
		c.Cluster.NodeID, c.Cluster.RaftAddr, c.Cluster.Bootstrap = "n4", raftAddr, false
	})
	l := leaderOf(nodes)
	if code, out := adminPost(t, l, "/api/v1/cluster/join", "", map[string]string{"id": "n4", "raft": raftAddr}); code != 200 {
		t.Fatalf("join: %d %v", code, out) // no admin address given: it must come from n4's announcement
	}
	waitFor(t, "n4 announced", 10*time.Second, func() bool {
		_, admin := parseAnnouncement(nodes[0].FSM().NodeVersions()["n4"])
		return admin == adminAddr
	})
	waitFor(t, "n4 leads", 20*time.Second, func() bool {
		if cur := leaderOf(append(nodes, n4)); cur != n4 && cur != nil && cur.Cluster().IsLeader() {
			_ = cur.Cluster().Raft().LeadershipTransferToServer("n4", raft.ServerAddress(raftAddr)).Error()
		}
		return n4.Cluster().IsLeader()
	})
	for _, n := range nodes {
		waitFor(t, "n4 known as leader", 10*time.Second, func() bool { id, _ := n.Cluster().Leader(); return id == "n4" })
	}
	if code, out := adminPost(t, nodes[1], "/api/v1/blocklist", "", map[string]any{"numbers": []string{"4915112345600"}}); code != 200 {
		t.Fatalf("write forwarded to the joined leader: %d %v", code, out)
	}
}

// TestClusterMutualTLS: with cluster.tls the members talk Raft over mutual TLS (an entry
// replicates as usual); a peer whose certificate another CA signed is refused at the handshake.
func TestClusterMutualTLS(t *testing.T) {
	certFile, keyFile, _ := writeKeyPair(t) // self-signed: the members' certificate and their CA
	sim := startSim(t, smpptest.Config{})
	nodes := startCluster(t, sim, 3, func(_ int, c *config.Config) {
		c.Cluster.TLS = config.ClusterTLS{Enabled: true, CertFile: certFile, KeyFile: keyFile, CAFile: certFile}
	})
	if code, out := adminPost(t, nodes[1], "/api/v1/blocklist", "", map[string]any{"numbers": []string{"4915112345678"}}); code != 200 {
		t.Fatalf("add: %d %v", code, out)
	}
	for _, n := range nodes {
		waitFor(t, "replicated over TLS", 5*time.Second, func() bool { return n.Index().Len() == 1 })
	}
	// An outsider with a certificate of its own.
	otherCert, otherKey, _ := writeKeyPair(t)
	cert, err := tls.LoadX509KeyPair(otherCert, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := (&config.ClusterTLS{CertFile: certFile, KeyFile: keyFile, CAFile: certFile}).Config()
	if err != nil {
		t.Fatal(err)
	}
	_, raftAddr := nodes[0].Cluster().Leader()
	c, err := tls.Dial("tcp", raftAddr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool.RootCAs, MinVersion: tls.VersionTLS13})
	if err == nil {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1)) // TLS 1.3: the server's refusal of our certificate arrives here
		c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("outsider's TLS connection to Raft: %v, want a certificate error", err)
	}
}

// TestNewCommandWaitsForUpgrade: a command type introduced in a newer release than a member
// runs is refused (409, naming the member and its release) until that member announces a
// release that knows it.
func TestNewCommandWaitsForUpgrade(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	nodes := startCluster(t, sim, 3, nil)
	for _, n := range nodes {
		waitFor(t, "all announced", 10*time.Second, func() bool { return len(n.FSM().NodeVersions()) == 3 })
	}
	commandSince[store.CmdOptOut] = "0.5.0" // as if opt-outs were new in the next release
	defer delete(commandSince, store.CmdOptOut)
	code, out := adminPost(t, nodes[0], "/api/v1/optouts", "", map[string]any{"numbers": []string{"4915112345678"}, "sender": "12345"})
	if code != http.StatusConflict || !strings.Contains(fmt.Sprint(out["error"]), `runs "0.4.0"`) {
		t.Fatalf("new command with 0.4.0 members: %d %v, want 409 naming a member", code, out)
	}
	for _, n := range nodes { // the rolling upgrade: each node announces the new release
		cmd := store.Command{Type: store.CmdNodeVersion, Time: time.Now().UnixMilli(), NodeID: n.Cluster().ID(), Version: announcement("0.5.0", n.AdminAddr())}
		if _, err := n.propose(&cmd); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		waitFor(t, "upgraded everywhere", 10*time.Second, func() bool {
			for _, v := range n.FSM().NodeVersions() {
				if rel, _ := parseAnnouncement(v); rel != "0.5.0" {
					return false
				}
			}
			return true
		})
	}
	if code, out := adminPost(t, nodes[0], "/api/v1/optouts", "", map[string]any{"numbers": []string{"4915112345678"}, "sender": "12345"}); code != 200 {
		t.Fatalf("after the upgrade: %d %v", code, out)
	}
	if !olderRelease("0.4.0", "0.10.1") || olderRelease("0.10.0", "0.9.9") || olderRelease("1.0", "1.0.0") {
		t.Fatal("olderRelease compares wrongly")
	}
}
