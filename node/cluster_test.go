package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
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
	sim := startSim(t, smpptest.Config{Record: true})
	n := startNode(t, sim, func(c *config.Config) { c.Protection.OptOutReply = "You will get no more messages from 12345." })
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
	// The confirmation went to the user from the short code, although that pair is opted out.
	waitFor(t, "confirmation sent", 5*time.Second, func() bool { return counter(n, `smppd_mo_optout_replies_total{result="ok"}`) == 1 })
	var confirmations int
	for _, pdu := range sim.Received() {
		var s smpp.Submit
		if err := smpp.ParseSubmit(pdu[smpp.HeaderLen:], &s); err != nil {
			t.Fatal(err)
		}
		if string(s.SrcAddr) == "12345" && string(s.DstAddr) == "491511234567" && s.DstTON == 1 {
			if string(s.ShortMessage) != "You will get no more messages from 12345." {
				t.Fatalf("confirmation text %q", s.ShortMessage)
			}
			confirmations++
		}
	}
	if confirmations != 1 {
		t.Fatalf("%d confirmations at the SMSC, want 1", confirmations)
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
// runs (the governor's sent counts, new in 0.5.0) is refused (409, naming the member and its
// release) until that member announces a release that knows it.
func TestNewCommandWaitsForUpgrade(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	nodes := startCluster(t, sim, 3, nil)
	for _, n := range nodes {
		waitFor(t, "all announced", 10*time.Second, func() bool { return len(n.FSM().NodeVersions()) == 3 })
	}
	announce := func(n *Node, release string) {
		t.Helper()
		cmd := store.Command{Type: store.CmdNodeVersion, Time: time.Now().UnixMilli(), NodeID: n.Cluster().ID(), Version: announcement(release, n.AdminAddr())}
		if _, err := nodes[0].propose(&cmd); err != nil {
			t.Fatal(err)
		}
		for _, m := range nodes {
			waitFor(t, "announcement applied", 10*time.Second, func() bool {
				rel, _ := parseAnnouncement(m.FSM().NodeVersions()[n.Cluster().ID()])
				return rel == release
			})
		}
	}
	announce(nodes[2], "0.4.0") // as if n3 still ran the release before the governor
	report := store.Command{Type: store.CmdSentCounts, Time: time.Now().UnixMilli(), NodeID: "test@1",
		Counts: []store.SentCount{{Bucket: 0, Account: "demo", Channel: "sim", Sent: 1}}}
	_, err := nodes[0].propose(&report)
	if err == nil || !strings.Contains(err.Error(), `n3 runs "0.4.0"`) || !strings.Contains(err.Error(), "0.5.0") {
		t.Fatalf("sent counts with a 0.4.0 member: %v, want refused naming n3 and 0.4.0", err)
	}
	announce(nodes[2], Version) // n3 upgraded
	if _, err := nodes[1].propose(&report); err != nil {
		t.Fatalf("after the upgrade: %v", err)
	}
	if !olderRelease("0.4.0", "0.10.1") || olderRelease("0.10.0", "0.9.9") || olderRelease("1.0", "1.0.0") {
		t.Fatal("olderRelease compares wrongly")
	}
}

// writeBlocks blocklists requests×per numbers from first on, one admin request (one log entry)
// per per numbers, through n (forwarded to the leader if n follows).
func writeBlocks(t testing.TB, n *Node, first uint64, requests, per int) {
	t.Helper()
	for r := range requests {
		nums := make([]string, per)
		for i := range nums {
			nums[i] = strconv.FormatUint(first+uint64(r*per+i), 10)
		}
		if code, out := adminPost(t, n, "/api/v1/blocklist", "", map[string]any{"numbers": nums}); code != http.StatusOK || out["added"] != float64(per) {
			t.Fatalf("blocklist request %d: %d %v", r, code, out)
		}
	}
}

// raftStat reads a numeric field of n's raft.Stats (last_snapshot_index, ...).
func raftStat(t testing.TB, n *Node, key string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(n.Cluster().Raft().Stats()[key], 10, 64)
	if err != nil {
		t.Fatalf("raft stat %s: %v", key, err)
	}
	return v
}

// firstLogIndex is the oldest entry n's Raft log still holds.
func firstLogIndex(t testing.TB, n *Node) uint64 {
	t.Helper()
	i, err := n.repl.log.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// snapshotAndTruncate forces a snapshot on each node (raft compacts the log behind it, keeping
// trailing_logs entries) and returns the lowest snapshot index among them.
func snapshotAndTruncate(t testing.TB, nodes []*Node) uint64 {
	t.Helper()
	lowest := uint64(1<<64 - 1)
	for _, n := range nodes {
		if err := n.Cluster().Raft().Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			t.Fatalf("%s: snapshot: %v", n.Cluster().ID(), err) // nothing new: a timed snapshot just took it all
		}
		lowest = min(lowest, raftStat(t, n, "last_snapshot_index"))
	}
	return lowest
}

// waitSameState waits until every node reports the same state hash at the same applied index
// (announcements and expiry keep the index moving: all are read in one poll).
func waitSameState(t testing.TB, nodes []*Node, timeout time.Duration) (hash [32]byte, index uint64) {
	t.Helper()
	waitFor(t, "the same state hash at the same applied index on every node", timeout, func() bool {
		h0, i0, err := nodes[0].FSM().StateHash()
		if err != nil || i0 == 0 {
			return false
		}
		for _, n := range nodes[1:] {
			if h, i, err := n.FSM().StateHash(); err != nil || h != h0 || i != i0 {
				return false
			}
		}
		hash, index = h0, i0
		return true
	})
	return hash, index
}

// TestNewNodeInstallsSnapshot: with the log truncated behind a snapshot on every member, a node
// joined later cannot be sent the log from its start: it installs the leader's snapshot, then
// follows the log from there, and ends with the same state as the others.
func TestNewNodeInstallsSnapshot(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	const threshold, trailing = 16, 8
	nodes := startCluster(t, sim, 3, func(_ int, c *config.Config) {
		c.Cluster.SnapshotThreshold, c.Cluster.TrailingLogs = threshold, trailing
	})
	for _, n := range nodes { // the keys reach raft
		if rc := n.Cluster().Raft().ReloadableConfig(); rc.SnapshotThreshold != threshold || rc.TrailingLogs != trailing || rc.SnapshotInterval != 30*time.Second {
			t.Fatalf("%s: raft runs with %+v, want threshold %d, trailing %d, interval 30s", n.Cluster().ID(), rc, threshold, trailing)
		}
	}
	const first, requests, per = uint64(4917000000000), 40, 100 // 40 log entries, far more than trailing_logs
	writeBlocks(t, nodes[1], first, requests, per)
	for _, n := range nodes {
		waitFor(t, "all entries applied", 30*time.Second, func() bool { return n.Index().Len() == requests*per })
	}
	snap := snapshotAndTruncate(t, nodes)
	for _, n := range nodes {
		// A new node needs the log from index 1: no member has it any more.
		if fi := firstLogIndex(t, n); fi <= 1 {
			t.Fatalf("%s: log starts at %d after a snapshot at ≥ %d (trailing_logs %d), want truncated past index 1", n.Cluster().ID(), fi, snap, trailing)
		}
	}
	raftAddr, adminAddr := smpptest.FreeAddr(t), smpptest.FreeAddr(t)
	n4 := startNode(t, sim, func(c *config.Config) {
		c.Node.ID, c.Listen.Admin = 4, adminAddr
		c.Cluster.NodeID, c.Cluster.RaftAddr, c.Cluster.Bootstrap = "n4", raftAddr, false
		// n4 never reaches this threshold (and is never told to snapshot): a snapshot it
		// has can only be one it installed from the leader.
		c.Cluster.SnapshotThreshold, c.Cluster.TrailingLogs = 1<<40, trailing
	})
	if got := raftStat(t, n4, "last_snapshot_index"); got != 0 {
		t.Fatalf("n4 starts with a snapshot at %d", got)
	}
	if code, out := adminPost(t, nodes[0], "/api/v1/cluster/join", "", map[string]string{"id": "n4", "raft": raftAddr, "admin": adminAddr}); code != 200 {
		t.Fatalf("join: %d %v", code, out)
	}
	start := time.Now()
	waitFor(t, "n4 caught up", 60*time.Second, func() bool { return n4.Index().Len() == requests*per })
	t.Logf("n4 caught up %s after the join", time.Since(start).Round(time.Millisecond))
	if !n4.Index().Check(first+1234, "demo", "shop").Has(store.KindBlock) {
		t.Fatal("n4 does not enforce an entry written before it joined")
	}
	// Raft records the installed snapshot just after the FSM restored it (which made the
	// entries visible above), so this is polled too.
	var got uint64
	waitFor(t, fmt.Sprintf("n4 has a snapshot at ≥ %d", snap), 30*time.Second, func() bool {
		got = raftStat(t, n4, "last_snapshot_index")
		return got >= snap
	})
	// Its log begins after the installed snapshot: the entries the numbers came in never
	// reached it, only the snapshot holding them (and the entries after it, the join among
	// them, do exist there).
	waitFor(t, "n4 logs entries after the snapshot", 30*time.Second, func() bool { return firstLogIndex(t, n4) > 0 })
	if fi := firstLogIndex(t, n4); fi <= got {
		t.Fatalf("n4's log starts at %d, at or before the snapshot at %d it installed", fi, got)
	}
	all := append(slices.Clone(nodes), n4)
	_, idx := waitSameState(t, all, 30*time.Second)
	t.Logf("snapshot at %d installed on n4; all 4 nodes have the same state at index %d", got, idx)
}

// TestRestartedFollowerCatchesUp: a follower stopped while entries are written and the log is
// truncated behind a snapshot on the others restarts on its data directory, catches up (through
// the snapshot: the entries it missed are gone from every log), enforces what was written while
// it was down, and has the others' state at the same index.
func TestRestartedFollowerCatchesUp(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	const trailing = 8
	nodes := startCluster(t, sim, 3, func(_ int, c *config.Config) {
		c.Cluster.SnapshotThreshold, c.Cluster.TrailingLogs = 16, trailing
	})
	const before, during, per = uint64(4917100000000), uint64(4917200000000), 100
	writeBlocks(t, nodes[0], before, 3, per)
	for _, n := range nodes {
		waitFor(t, "entries applied", 30*time.Second, func() bool { return n.Index().Len() == 3*per })
	}
	var f *Node
	var others []*Node
	for _, n := range nodes {
		if f == nil && !n.Cluster().IsLeader() {
			f = n
		} else {
			others = append(others, n)
		}
	}
	cfg := *f.cfg // to restart it as it was: same data dir, addresses, cluster settings
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := f.Shutdown(ctx); err != nil {
		t.Fatalf("stop %s: %v", f.Cluster().ID(), err)
	}
	fLast := f.Cluster().Raft().LastIndex()
	writeBlocks(t, others[0], during, 40, per)
	for _, n := range others {
		waitFor(t, "entries applied", 30*time.Second, func() bool { return n.Index().Len() == 43*per })
	}
	snap := snapshotAndTruncate(t, others)
	for _, n := range others {
		if fi := firstLogIndex(t, n); fi <= fLast+1 {
			t.Fatalf("%s: log starts at %d, still holding entry %d the stopped follower needs next", n.Cluster().ID(), fi, fLast+1)
		}
	}
	start := time.Now()
	f2 := startNode(t, sim, func(c *config.Config) { *c = cfg })
	if !f2.Index().Check(before+1, "demo", "shop").Has(store.KindBlock) {
		t.Fatal("restarted follower lost the entries it had")
	}
	waitFor(t, "restarted follower enforces the entries written while it was down", 60*time.Second, func() bool {
		return f2.Index().Check(during+40*per-1, "demo", "shop").Has(store.KindBlock)
	})
	t.Logf("%s caught up %s after its restart", f2.Cluster().ID(), time.Since(start).Round(time.Millisecond))
	if got := f2.Index().Len(); got != 43*per {
		t.Fatalf("restarted follower has %d entries, want %d", got, 43*per)
	}
	waitFor(t, fmt.Sprintf("restarted follower has the installed snapshot at ≥ %d", snap), 30*time.Second, func() bool {
		return raftStat(t, f2, "last_snapshot_index") >= snap
	})
	_, idx := waitSameState(t, append(slices.Clone(others), f2), 30*time.Second)
	t.Logf("stopped at index %d, the others snapshotted at %d; all 3 have the same state at index %d", fLast, snap, idx)
}

// TestTimedEntriesExpire: entries imported with a TTL leave every node's state when it passes,
// removed by the leader in bounded steps (store.MaxExpireItems per command); an entry without a
// TTL stays, and all nodes end with the same state.
func TestTimedEntriesExpire(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	nodes := startCluster(t, sim, 3, func(_ int, c *config.Config) {
		c.Cluster.ExpireInterval = config.Duration(100 * time.Millisecond)
	})
	const timed = 2*store.MaxExpireItems + 500
	var csv strings.Builder
	for i := range timed {
		fmt.Fprintf(&csv, "%d\n", 4917000000000+i)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+nodes[1].AdminAddr()+"/api/v1/blocklist/import?ttl=2s", strings.NewReader(csv.String()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("import: %d", resp.StatusCode)
	}
	if code, out := adminPost(t, nodes[0], "/api/v1/blocklist", "", map[string]any{"numbers": []string{"4915112345678"}}); code != 200 {
		t.Fatalf("add: %d %v", code, out)
	}
	for _, n := range nodes {
		waitFor(t, "timed entries expired", 30*time.Second, func() bool { return n.Index().Len() == 1 })
		if !n.Index().Check(4915112345678, "demo", "").Has(store.KindBlock) {
			t.Fatal("the entry without a TTL expired")
		}
	}
	leader := leaderOf(nodes)
	if got := counter(leader, `smppd_cluster_expired_total`); got != timed {
		t.Fatalf("leader expired %v entries, want %d", got, timed)
	}
	if got := counter(leader, `smppd_cluster_expiry_commands_total`); got < 3 {
		t.Fatalf("%v expiry commands, want at least 3 (at most %d entries each)", got, store.MaxExpireItems)
	}
	waitSameState(t, nodes, 30*time.Second)
}

// TestClusterStatusMembers: cluster status shows every member's applied index and lag, as the
// member reports it; a member that is down is shown unreachable, not guessed.
func TestClusterStatusMembers(t *testing.T) {
	sim := startSim(t, smpptest.Config{})
	nodes := startCluster(t, sim, 3, nil)
	if code, out := adminPost(t, nodes[0], "/api/v1/blocklist", "", map[string]any{"numbers": []string{"4915112345678"}}); code != 200 {
		t.Fatalf("add: %d %v", code, out)
	}
	type member struct {
		ID      string `json:"id"`
		State   string `json:"state"`
		Applied uint64 `json:"applied_index"`
		Lag     uint64 `json:"lag"`
		Error   string `json:"error"`
	}
	members := func(n *Node) map[string]member {
		code, body := httpGet(t, n, "/api/v1/cluster")
		var v struct {
			Members []member `json:"members"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &v) != nil {
			t.Fatalf("cluster status: %d %s", code, body)
		}
		out := map[string]member{}
		for _, m := range v.Members {
			out[m.ID] = m
		}
		return out
	}
	waitFor(t, "every member caught up", 10*time.Second, func() bool {
		ms := members(nodes[1])
		for _, id := range []string{"n1", "n2", "n3"} {
			if m := ms[id]; m.Error != "" || m.Applied == 0 || m.Lag != 0 {
				return false
			}
		}
		return len(ms) == 3
	})
	if err := nodes[2].Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	ms := members(nodes[0])
	if m := ms["n3"]; m.Error == "" {
		t.Fatalf("n3 is down but shows %+v", m)
	}
	if m := ms["n1"]; m.Error != "" || m.State == "" || m.Applied == 0 {
		t.Fatalf("n1 (this node): %+v", m)
	}
}
