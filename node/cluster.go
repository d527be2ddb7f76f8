package node

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smppd/smppd/cluster"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/router/governor"
	"github.com/smppd/smppd/router/protect"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/store"
)

// Version is this release, announced to the cluster (rolling upgrades: a new command type is
// proposed only once every node runs a release that knows it).
const Version = "0.5.0"

// replicated is the node's share of the cluster: Raft log, FSM, hot-path index, Raft node.
type replicated struct {
	index   *store.Index
	fsm     *store.FSM
	log     *store.RaftLog
	raft    *cluster.Node
	peers   []cluster.Peer
	stop    chan struct{}
	wg      sync.WaitGroup
	stale   func() bool
	gov     *governor.Governor // nil: governor.enabled false
	closeMu sync.Once
}

// indexers hands the FSM's changes to the hot-path index and the governor; a new state is read
// once for both.
type indexers struct {
	index *store.Index
	gov   *governor.Governor
}

func (x indexers) Update(upserts []store.Entry, deletes []store.Key) {
	x.index.Update(upserts, deletes)
	x.gov.Update(upserts, deletes)
}

func (x indexers) Reset(all func(yield func(store.Entry) bool)) {
	observe, done := x.gov.ResetObserver()
	x.index.Reset(func(yield func(store.Entry) bool) {
		all(func(e store.Entry) bool { observe(e); return yield(e) })
	})
	done()
}

// openCluster opens the replicated state under data_dir/raft and starts Raft.
func (n *Node) openCluster() error {
	cfg := n.cfg
	dir := filepath.Join(cfg.Node.DataDir, "raft")
	rp := &replicated{index: store.NewIndex(), stop: make(chan struct{})}
	var err error
	var ix store.Indexer = rp.index
	if cfg.Governor.Enabled {
		if rp.gov, err = n.newGovernor(rp); err != nil {
			rp.index.Close()
			return fmt.Errorf("governor: %w", err)
		}
		ix = indexers{index: rp.index, gov: rp.gov}
	}
	// ComplaintBlocks stays off in the FSM: what Apply writes must not depend on a node's own
	// config. The proposer adds the block entries instead (protection.complaint_blocks), so
	// every node applies the same log the same way.
	if rp.fsm, err = store.OpenFSM(store.FSMConfig{Dir: filepath.Join(dir, "fsm"), Indexer: ix, Logger: n.log}); err != nil {
		rp.index.Close()
		return err
	}
	if rp.log, err = store.OpenRaftLog(filepath.Join(dir, "log"), n.log); err != nil {
		_ = rp.fsm.Close()
		rp.index.Close()
		return err
	}
	self := cfg.ClusterNodeID()
	for _, p := range cfg.Cluster.Peers {
		rp.peers = append(rp.peers, cluster.Peer{ID: p.ID, Raft: p.Raft, Admin: p.Admin})
	}
	advertise := cfg.Cluster.Advertise
	if advertise == "" {
		advertise = cfg.Cluster.RaftAddr
	}
	if len(rp.peers) == 0 {
		rp.peers = []cluster.Peer{{ID: self, Raft: advertise, Admin: cfg.Listen.Admin}}
	}
	cc := cluster.DefaultConfig()
	cc.NodeID, cc.RaftAddr, cc.Advertise, cc.Dir, cc.Peers = self, cfg.Cluster.RaftAddr, advertise, dir, rp.peers
	cc.ApplyTimeout, cc.NoBootstrap = time.Duration(cfg.Cluster.ApplyTimeout), !cfg.Cluster.Bootstrap
	cc.SnapshotThreshold, cc.SnapshotInterval = uint64(cfg.Cluster.SnapshotThreshold), time.Duration(cfg.Cluster.SnapshotInterval)
	cc.TrailingLogs = uint64(cfg.Cluster.TrailingLogs) // validated: threshold ≥ 1, trailing ≥ 0
	cc.FSM, cc.Logs, cc.Stable, cc.Logger = rp.fsm, rp.log, rp.log, n.log
	if t := &cfg.Cluster.TLS; t.Enabled {
		if cc.TLS, err = t.Config(); err != nil {
			_ = rp.log.Close()
			_ = rp.fsm.Close()
			rp.index.Close()
			return fmt.Errorf("cluster.tls: %w", err)
		}
	}
	if rp.raft, err = cluster.New(cc); err != nil {
		_ = rp.log.Close()
		_ = rp.fsm.Close()
		rp.index.Close()
		return err
	}
	staleAfter := time.Duration(cfg.Cluster.StaleAfter)
	rp.stale = func() bool { return rp.raft.LastContact() > staleAfter }
	n.metrics.NewGauge(`smppd_cluster_stale`, func() float64 {
		if rp.stale() {
			return 1
		}
		return 0
	})
	n.metrics.NewGauge(`smppd_cluster_leader`, func() float64 {
		if rp.raft.IsLeader() {
			return 1
		}
		return 0
	})
	n.metrics.NewGauge(`smppd_cluster_applied_index`, func() float64 { return float64(rp.fsm.AppliedIndex()) })
	n.metrics.NewGauge(`smppd_protection_entries`, func() float64 { return float64(rp.index.Len()) })
	n.repl = rp
	return nil
}

// protectStage builds the pipeline stage that enforces the replicated state.
func (n *Node) protectStage() (router.Stage, error) {
	rp := n.repl
	pc := protect.Config{Status: smpp.Status(n.cfg.Protection.BlockedStatus), Metrics: n.metrics,
		Check: func(num uint64, account string, sender []byte) uint8 {
			return uint8(rp.index.Check(num, account, string(sender))) // Check keeps no string: no allocation
		}}
	if n.cfg.Cluster.StalePolicy == "refuse" {
		pc.Stale, pc.StaleStatus = rp.stale, smpp.Status(n.cfg.Cluster.StaleStatus)
	}
	return protect.New(pc)
}

// newGovernor builds the complaint-rate governor; it reads the replicated sent counts from
// rp.fsm and proposes this node's through the leader.
func (n *Node) newGovernor(rp *replicated) (*governor.Governor, error) {
	g := &n.cfg.Governor
	bucket := time.Duration(g.Bucket)
	return governor.New(governor.Config{Window: time.Duration(g.Window), Bucket: bucket, WarnPPM: g.WarnPPM,
		LimitPPM: g.LimitPPM, MinSent: g.MinSent, Action: g.Action, ChannelAction: g.ChannelAction,
		Status: smpp.Status(g.Status), ReportInterval: time.Duration(g.ReportInterval), EvalInterval: min(time.Second, bucket, time.Duration(g.ReportInterval)),
		// The boot time makes a restarted node a new reporter: what it reported before stays.
		Reporter: fmt.Sprintf("%s@%d", n.cfg.ClusterNodeID(), time.Now().UnixMilli()),
		Counts:   func(from int64, fn func(store.SentCount, string) bool) error { return rp.fsm.SentCounts(from, fn) },
		Propose:  func(c *store.Command) error { _, err := n.propose(c); return err },
		Metrics:  n.metrics, Logger: n.log})
}

// startLeaderJobs runs what only the leader does (expiry proposals) and announces this node's
// release and admin address to the cluster.
func (n *Node) startLeaderJobs() {
	rp := n.repl
	rp.wg.Add(1)
	go func() {
		defer rp.wg.Done()
		every := time.Duration(n.cfg.Cluster.ExpireInterval)
		tick := time.NewTicker(min(every, time.Second))
		defer tick.Stop()
		announced := false
		var lastExpire time.Time
		for {
			select {
			case <-rp.stop:
				return
			case <-tick.C:
			}
			if !announced {
				// Through the leader, like any write; retried until one is elected.
				cmd := store.Command{Type: store.CmdNodeVersion, Time: time.Now().UnixMilli(),
					NodeID: rp.raft.ID(), Version: announcement(Version, n.AdminAddr())}
				if _, err := n.propose(&cmd); err == nil {
					announced = true
				}
			}
			if rp.raft.IsLeader() && time.Since(lastExpire) >= every {
				lastExpire = time.Now()
				n.expire(lastExpire.UnixMilli())
			}
		}
	}()
}

// expire removes the entries due at now (unix ms), the leader's clock carried in the commands:
// in steps of store.MaxExpireItems (CmdExpireSome), so a million entries that expire together
// do not become one huge batch that stalls every node's Apply; with a member older than the
// release that knows CmdExpireSome, in one CmdExpire as before.
func (n *Node) expire(now int64) {
	rp := n.repl
	if next, ok, err := rp.fsm.NextExpiry(); err == nil && (!ok || next > now) {
		return // nothing due: no log entry
	}
	cmd := store.Command{Type: store.CmdExpireSome, Time: now, Cutoff: now, Limit: store.MaxExpireItems}
	if n.supported(store.CmdExpireSome) != nil {
		cmd = store.Command{Type: store.CmdExpire, Time: now, Cutoff: now}
	}
	b := cmd.Marshal()
	for {
		res, err := rp.raft.Apply(b)
		if err != nil {
			if !errors.Is(err, cluster.ErrNotLeader) {
				n.log.Warn("expiry proposal failed", "err", err)
			}
			return
		}
		ar, _ := res.(store.ApplyResult)
		n.metrics.GetOrCreateCounter(`smppd_cluster_expiry_commands_total`).Inc()
		n.metrics.GetOrCreateCounter(`smppd_cluster_expired_total`).Add(ar.Removed)
		if cmd.Type == store.CmdExpire || ar.Removed < cmd.Limit || ar.Err != nil {
			return
		}
		select {
		case <-rp.stop:
			return
		default:
		}
	}
}

// optOut records an MO opt-out through the cluster (in the background: the MO is answered
// already; a failure is logged, as the sender may send STOP again), then, with
// protection.optout_reply set, confirms it to the number through the upstream the MO came from.
func (n *Node) optOut(number uint64, mo *smpp.Submit, account, upstream string) {
	rp := n.repl
	if rp == nil {
		return
	}
	sender := string(mo.DstAddr)
	var reply []byte
	if text := n.cfg.Protection.OptOutReply; text != "" {
		// From the address the user wrote to, to the user: the confirmation is not subject to the
		// opt-out it confirms, so it bypasses the pipeline.
		parts, dc := smpp.EncodeText(text)
		sub := smpp.Submit{SrcTON: mo.DstTON, SrcNPI: mo.DstNPI, SrcAddr: mo.DstAddr, DstTON: mo.SrcTON, DstNPI: mo.SrcNPI,
			DstAddr: mo.SrcAddr, DataCoding: dc, ShortMessage: parts[0]}
		if len(parts) > 1 { // a long reply goes whole in message_payload
			sub.ShortMessage, sub.TLVs = nil, smpp.AppendTLV(nil, smpp.TagMessagePayload, bytes.Join(parts, nil))
		}
		reply = smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &sub)
	}
	now := time.Now().UnixMilli()
	cmd := store.Command{Type: store.CmdOptOut, Time: now, Entries: []store.Entry{{
		Key:    store.Key{Number: number, Kind: store.KindOptOut, Scope: store.Scope{Sender: sender}},
		Reason: "MO keyword", Source: "mo", Created: now}}}
	rp.wg.Add(1)
	go func() {
		defer rp.wg.Done()
		if _, err := n.propose(&cmd); err != nil {
			n.log.Warn("opt-out from MO not recorded", "sender", sender, "account", account, "err", err)
			return
		}
		n.log.Info("opt-out recorded from MO", "sender", sender, "account", account)
		if reply != nil {
			n.confirmOptOut(upstream, reply)
		}
	}()
}

// confirmOptOut submits the opt-out confirmation on a bound client of upstream, retrying while
// every bind is busy or down for up to cluster.apply_timeout; the outcome is counted in
// smppd_mo_optout_replies_total{result}.
func (n *Node) confirmOptOut(upstream string, pdu []byte) {
	done := make(submitOutcome, 1)
	deadline := time.Now().Add(time.Duration(n.cfg.Cluster.ApplyTimeout))
	for {
		for _, c := range n.upstreams[upstream] {
			if c.Bound() && c.Submit(pdu, done) == nil {
				o := <-done
				result := "ok"
				if o.err != nil || o.status != smpp.StatusOK {
					result = "refused"
					n.log.Warn("opt-out confirmation not accepted", "upstream", upstream, "status", o.status.String(), "err", o.err)
				}
				n.metrics.GetOrCreateCounter(`smppd_mo_optout_replies_total{result="` + result + `"}`).Inc()
				return
			}
		}
		select {
		case <-n.repl.stop:
		case <-time.After(50 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
		}
		n.log.Warn("opt-out confirmation not sent: no bind of the upstream took it", "upstream", upstream)
		n.metrics.GetOrCreateCounter(`smppd_mo_optout_replies_total{result="not_sent"}`).Inc()
		return
	}
}

// submitOutcome is an smpp.Waiter that hands the outcome over.
type submitOutcome chan struct {
	status smpp.Status
	err    error
}

func (w submitOutcome) SubmitDone(_ *smpp.Batch, st smpp.Status, _ []byte, err error) {
	w <- struct {
		status smpp.Status
		err    error
	}{st, err}
}

// announcement is the string a node announces as its version: its release and, after ";admin=",
// its admin address, so every member can forward writes to it when it leads (nodes joined later
// are in no one's cluster.peers).
func announcement(release, admin string) string {
	if admin == "" {
		return release
	}
	return release + ";admin=" + admin
}

// parseAnnouncement splits an announcement.
func parseAnnouncement(s string) (release, admin string) {
	release, admin, _ = strings.Cut(s, ";admin=")
	return release, admin
}

// commandSince maps a command type to the release that introduced it. A type listed here is
// proposed only once every member has announced a release at least that new (a rolling upgrade
// finishes before new commands flow); an old node that met one anyway would stop loudly (the
// FSM panics on an unknown required type) rather than diverge. The types of the first release
// are not listed: every node that can be in a cluster with this one knows them.
var commandSince = map[store.CmdType]string{
	store.CmdSentCounts: "0.5.0",
	store.CmdExpireSome: "0.5.0",
}

// supported reports, for a command of type t, the first member that does not run a release
// that knows t.
func (n *Node) supported(t store.CmdType) error {
	since, ok := commandSince[t]
	if !ok {
		return nil
	}
	versions := n.repl.fsm.NodeVersions()
	for _, m := range n.repl.raft.Status().Members {
		rel, _ := parseAnnouncement(versions[m.ID])
		if rel == "" || olderRelease(rel, since) {
			return &httpError{http.StatusConflict, fmt.Sprintf("command %s needs every node at release %s or newer; %s runs %q: finish the rolling upgrade first",
				t, since, m.ID, rel)}
		}
	}
	return nil
}

// olderRelease compares dotted release numbers ("0.4.0" < "0.10.1").
func olderRelease(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// closeCluster stops the leader jobs and Raft (leadership first), then the stores.
func (n *Node) closeCluster() error {
	rp := n.repl
	var errs []error
	rp.closeMu.Do(func() {
		close(rp.stop)
		rp.wg.Wait()
		if err := rp.raft.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("raft: %w", err))
		}
		if err := rp.log.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := rp.fsm.Close(); err != nil {
			errs = append(errs, err)
		}
		rp.index.Close()
	})
	return errors.Join(errs...)
}

// Cluster returns the node's Raft member (tests, status).
func (n *Node) Cluster() *cluster.Node { return n.repl.raft }

// FSM returns the replicated state.
func (n *Node) FSM() *store.FSM { return n.repl.fsm }

// Index returns the hot-path index.
func (n *Node) Index() *store.Index { return n.repl.index }
