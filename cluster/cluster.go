// Package cluster runs hashicorp/raft for smppd: the transport, bootstrap and membership
// (idempotent join, remove), leadership transfer, and the status the admin API shows. The
// replicated state itself (FSM, Raft log in Pebble) is package store's; forwarding a write from
// a follower to the leader is the admin API's (node), which knows the leader's admin address
// from Peer.Admin.
//
// A single node (`make run`) is a one-node cluster: the same code path, bootstrapped alone.
// Tuned settings and their reasons are in DESIGN.md.
package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Peer is a cluster member: its Raft server id, Raft address and admin HTTP address.
type Peer struct {
	ID    string `json:"id"`
	Raft  string `json:"raft"`
	Admin string `json:"admin,omitempty"`
}

// Config configures a Node.
type Config struct {
	NodeID    string // Raft server id, unique in the cluster
	RaftAddr  string // host:port the Raft transport listens on
	Advertise string // address the others dial; "" = RaftAddr
	Dir       string // snapshots go to Dir/snapshots
	// Peers is the initial membership. A node with no Raft state bootstraps with it when it
	// lists this node (every initial member may: raft accepts an identical bootstrap on each);
	// a node not in it waits to be joined (smppctl cluster join).
	Peers []Peer
	// NoBootstrap: never bootstrap, even with no state; wait to be joined (a node added later).
	NoBootstrap bool

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	MaxAppendEntries   int
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64
	ApplyTimeout       time.Duration // a proposal not committed by then fails

	FSM    raft.FSM
	Logs   raft.LogStore
	Stable raft.StableStore
	Logger *slog.Logger
	// Transport, if set, replaces the TCP transport (tests use raft.NewInmemTransport).
	Transport raft.Transport
	// TLS, if set, runs Raft over TLS with it, both ways: it must hold this node's certificate
	// (Certificates), the CA that signed the others' (RootCAs and ClientCAs) and
	// ClientAuth RequireAndVerifyClientCert, so only members with a certificate of that CA talk
	// Raft (mutual TLS).
	TLS *tls.Config
}

// DefaultConfig returns the settings documented in DESIGN.md (a LAN).
func DefaultConfig() Config {
	return Config{HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond, CommitTimeout: 5 * time.Millisecond, MaxAppendEntries: 1024,
		SnapshotThreshold: 8192, SnapshotInterval: 30 * time.Second, TrailingLogs: 10240, ApplyTimeout: 5 * time.Second}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("node_id: required")
	case c.RaftAddr == "" && c.Transport == nil:
		return errors.New("raft_addr: required")
	case c.Dir == "":
		return errors.New("cluster: dir is required")
	case c.FSM == nil || c.Logs == nil || c.Stable == nil:
		return errors.New("cluster: FSM and stores are required")
	case c.ApplyTimeout <= 0:
		return fmt.Errorf("apply_timeout: must be positive, got %s", c.ApplyTimeout)
	}
	ids := map[string]bool{}
	for i, p := range c.Peers {
		if p.ID == "" || p.Raft == "" {
			return fmt.Errorf("peers[%d]: id and raft are required", i)
		}
		if ids[p.ID] {
			return fmt.Errorf("peers[%d]: duplicate id %q", i, p.ID)
		}
		ids[p.ID] = true
	}
	return nil
}

// Errors.
var (
	// ErrNotLeader: this node is not the leader; the caller forwards to Leader().
	ErrNotLeader = errors.New("cluster: not the leader")
	// ErrNoLeader: no leader is known (election under way, or this node is cut off).
	ErrNoLeader = errors.New("cluster: no leader")
)

// Node is this process's Raft member.
type Node struct {
	cfg   Config
	log   *slog.Logger
	r     *raft.Raft
	trans raft.Transport
	tcp   *raft.NetworkTransport // nil with a test transport
}

// New starts Raft; with no state and this node among cfg.Peers it bootstraps the cluster.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("component", "cluster")}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{n.log}})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout, rc.ElectionTimeout = cfg.HeartbeatTimeout, cfg.ElectionTimeout
	rc.LeaderLeaseTimeout, rc.CommitTimeout = cfg.LeaderLeaseTimeout, cfg.CommitTimeout
	rc.MaxAppendEntries, rc.BatchApplyCh = cfg.MaxAppendEntries, true
	rc.SnapshotThreshold, rc.SnapshotInterval, rc.TrailingLogs = cfg.SnapshotThreshold, cfg.SnapshotInterval, cfg.TrailingLogs
	rc.Logger = hl
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.Dir, "snapshots"), 2, hl)
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshots: %w", err)
	}
	n.trans = cfg.Transport
	if n.trans == nil {
		adv := cfg.Advertise
		if adv == "" {
			adv = cfg.RaftAddr
		}
		addr, err := net.ResolveTCPAddr("tcp", adv)
		if err != nil {
			return nil, fmt.Errorf("cluster: advertise %q: %w", adv, err)
		}
		if cfg.TLS != nil {
			ln, err := net.Listen("tcp", cfg.RaftAddr)
			if err != nil {
				return nil, fmt.Errorf("cluster: raft_addr %s: %w", cfg.RaftAddr, err)
			}
			stream := &tlsStream{Listener: tls.NewListener(ln, cfg.TLS), advertise: addr, cfg: cfg.TLS}
			n.tcp = raft.NewNetworkTransportWithLogger(stream, 3, 10*time.Second, hl)
		} else if n.tcp, err = raft.NewTCPTransportWithLogger(cfg.RaftAddr, addr, 3, 10*time.Second, hl); err != nil {
			return nil, fmt.Errorf("cluster: raft_addr %s: %w", cfg.RaftAddr, err)
		}
		n.trans = n.tcp
	}
	has, err := raft.HasExistingState(cfg.Logs, cfg.Stable, snaps)
	if err != nil {
		n.closeTransport()
		return nil, err
	}
	if n.r, err = raft.NewRaft(rc, cfg.FSM, cfg.Logs, cfg.Stable, snaps, n.trans); err != nil {
		n.closeTransport()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if !has && !cfg.NoBootstrap && n.inPeers() {
		var servers []raft.Server
		for _, p := range cfg.Peers {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Raft)})
		}
		if err := n.r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil &&
			!errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
		n.log.Info("cluster bootstrapped", "members", len(servers))
	}
	return n, nil
}

func (n *Node) inPeers() bool {
	for _, p := range n.cfg.Peers {
		if p.ID == n.cfg.NodeID {
			return true
		}
	}
	return false
}

func (n *Node) closeTransport() {
	if n.tcp != nil {
		_ = n.tcp.Close()
	}
}

// Raft returns the raft instance (tests, status).
func (n *Node) Raft() *raft.Raft { return n.r }

// ID returns this node's server id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Apply proposes cmd and waits until it is committed and applied here; the FSM's response is
// returned. On a follower it fails with ErrNotLeader at once.
func (n *Node) Apply(cmd []byte) (any, error) {
	if n.r.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	f := n.r.Apply(cmd, n.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, ErrNotLeader
		}
		return nil, err
	}
	return f.Response(), nil
}

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.r.State() == raft.Leader }

// Leader returns the leader's id and Raft address ("" if none is known).
func (n *Node) Leader() (id, addr string) {
	a, i := n.r.LeaderWithID()
	return string(i), string(a)
}

// LeaderCh reports leadership changes of this node (raft's channel).
func (n *Node) LeaderCh() <-chan bool { return n.r.LeaderCh() }

// Join adds a voter. Idempotent: a member with the same id and address is left alone; one with
// the same id or address but not both is replaced.
func (n *Node) Join(id, addr string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	cf := n.r.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	for _, s := range cf.Configuration().Servers {
		switch {
		case s.ID == raft.ServerID(id) && s.Address == raft.ServerAddress(addr):
			return nil
		case s.ID == raft.ServerID(id) || s.Address == raft.ServerAddress(addr):
			if err := n.r.RemoveServer(s.ID, 0, n.cfg.ApplyTimeout).Error(); err != nil {
				return fmt.Errorf("cluster: replace %s: %w", s.ID, err)
			}
		}
	}
	if err := n.r.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("cluster: add %s: %w", id, err)
	}
	n.log.Info("member joined", "id", id, "raft", addr)
	return nil
}

// Remove removes a member (idempotent).
func (n *Node) Remove(id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	cf := n.r.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	for _, s := range cf.Configuration().Servers {
		if s.ID == raft.ServerID(id) {
			if err := n.r.RemoveServer(s.ID, 0, n.cfg.ApplyTimeout).Error(); err != nil {
				return fmt.Errorf("cluster: remove %s: %w", id, err)
			}
			n.log.Info("member removed", "id", id)
			return nil
		}
	}
	return nil
}

// TransferLeadership hands leadership to another voter (if this node leads).
func (n *Node) TransferLeadership() error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	return n.r.LeadershipTransfer().Error()
}

// Member is one server of the configuration, as status shows it.
type Member struct {
	ID       string `json:"id"`
	Raft     string `json:"raft"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

// Status is this node's view of the cluster.
type Status struct {
	ID           string   `json:"id"`
	State        string   `json:"state"`
	Leader       string   `json:"leader"`
	Term         uint64   `json:"term"`
	LastIndex    uint64   `json:"last_index"`
	CommitIndex  uint64   `json:"commit_index"`
	AppliedIndex uint64   `json:"applied_index"`
	LastContact  string   `json:"last_contact"`
	Members      []Member `json:"members"`
}

// Status returns this node's view.
func (n *Node) Status() Status {
	st := n.r.Stats()
	u := func(k string) uint64 { v, _ := strconv.ParseUint(st[k], 10, 64); return v }
	lid, _ := n.Leader()
	s := Status{ID: n.cfg.NodeID, State: n.r.State().String(), Leader: lid, Term: u("term"),
		LastIndex: n.r.LastIndex(), CommitIndex: u("commit_index"), AppliedIndex: n.r.AppliedIndex(),
		LastContact: st["last_contact"], Members: []Member{}}
	if cf := n.r.GetConfiguration(); cf.Error() == nil {
		for _, m := range cf.Configuration().Servers {
			s.Members = append(s.Members, Member{ID: string(m.ID), Raft: string(m.Address),
				Suffrage: m.Suffrage.String(), Leader: string(m.ID) == lid})
		}
	}
	return s
}

// LastContact is how long ago this node heard from a leader (0 on the leader itself).
func (n *Node) LastContact() time.Duration {
	if n.IsLeader() {
		return 0
	}
	t := n.r.LastContact()
	if t.IsZero() {
		return time.Duration(1<<63 - 1)
	}
	return time.Since(t)
}

// Shutdown leaves leadership first if this node leads (so the others do not wait for an
// election timeout), then stops Raft and its transport.
func (n *Node) Shutdown() error {
	if n.IsLeader() && n.memberCount() > 1 {
		if err := n.r.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("leadership transfer before shutdown failed", "err", err)
		} else {
			n.log.Info("leadership transferred before shutdown")
		}
	}
	err := n.r.Shutdown().Error()
	n.closeTransport()
	return err
}

func (n *Node) memberCount() int {
	cf := n.r.GetConfiguration()
	if cf.Error() != nil {
		return 0
	}
	return len(cf.Configuration().Servers)
}

// tlsStream is raft's StreamLayer over mutual TLS.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	cfg       *tls.Config
}

// Dial implements raft.StreamLayer; the peer's certificate is verified against the CA, its
// name against the host of address.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(address), s.cfg)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Addr implements net.Listener with the advertised address.
func (s *tlsStream) Addr() net.Addr { return s.advertise }

// slogWriter turns hclog's text lines into slog records.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Warn(string(trimNL(p)))
	return len(p), nil
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

var _ io.Writer = slogWriter{}
