// Package node assembles one smppd node from a config.Config: the ESME-facing SMPP listeners,
// the router, the upstream bind pools and the admin HTTP listener, and stops them in order.
// cmd/smppd runs it; end-to-end tests and benchmarks start it in-process.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/router/content"
	"github.com/smppd/smppd/router/dedup"
	"github.com/smppd/smppd/router/deliver"
	"github.com/smppd/smppd/router/lane"
	"github.com/smppd/smppd/router/number"
	"github.com/smppd/smppd/router/quiet"
	"github.com/smppd/smppd/router/recipient"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/store"
)

// Node is one running smppd.
type Node struct {
	cfg       *config.Config
	log       *slog.Logger
	metrics   *metrics.Set
	server    *smpp.Server
	router    *router.Router
	idmap     *router.MemIDMap
	store     *store.Local
	deliver   *deliver.Service
	repl      *replicated
	retried   *metrics.Counter // proposals tried again after a leadership change
	peersMu   sync.Mutex       // guards repl.peers
	clients   []*smpp.Client
	upstreams map[string][]*smpp.Client // clients by upstream name
	pools     []*router.Pool
	numbers   *number.Stage  // nil when numbers.enabled is false
	content   *content.Stage // nil without content rule files

	smppLn, tlsLn, adminLn net.Listener
	admin                  *http.Server
	draining               atomic.Bool
	wg                     sync.WaitGroup
	shutdownOnce           sync.Once
	shutdownErr            error
}

// New builds a node; nothing listens until Start. stages, if any, run in the router's pipeline.
func New(cfg *config.Config, log *slog.Logger, stages ...router.Stage) (*Node, error) {
	if log == nil {
		log = slog.Default()
	}
	n := &Node{cfg: cfg, log: log, metrics: metrics.NewSet(), upstreams: map[string][]*smpp.Client{}}
	n.retried = n.metrics.NewCounter(`smppd_cluster_proposals_retried_total`)
	if err := os.MkdirAll(cfg.Node.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("node.data_dir: %w", err)
	}
	ids, err := router.NewIDGen(cfg.Node.ID, cfg.Node.DataDir)
	if err != nil {
		return nil, err
	}
	n.idmap = router.NewMemIDMap(time.Duration(cfg.Router.IDMapTTL), 1<<20)
	if err := n.openDeliver(); err != nil {
		return nil, err
	}
	if err := n.openCluster(); err != nil {
		_ = n.store.Close()
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = n.closeCluster()
			_ = n.store.Close()
		}
	}()

	byName := map[string]*router.Pool{}
	for _, u := range cfg.Upstreams {
		pool, clients, err := n.newPool(&u)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", u.Name, err)
		}
		byName[u.Name] = pool
		n.pools = append(n.pools, pool)
		n.clients = append(n.clients, clients...)
		n.upstreams[u.Name] = clients
	}

	if cfg.Numbers.Enabled {
		nb := &cfg.Numbers
		nc := number.DefaultConfig()
		nc.DefaultCountry, nc.UnknownTON, nc.MinDigits = nb.DefaultCountry, nb.UnknownTON, nb.MinDigits
		nc.RangeFiles, nc.PortFiles, nc.Fallback = nb.RangeFiles, nb.PortFiles, nb.Fallback
		nc.NoRouteStatus, nc.Logger, nc.Metrics = smpp.Status(nb.NoRouteStatus), log, n.metrics
		for _, r := range nb.Routes {
			nc.Routes = append(nc.Routes, number.Rule{Operator: r.Operator, Country: r.Country, Account: r.Account, Pool: r.Upstream})
		}
		st, err := number.NewStage(nc, byName)
		if err != nil {
			return nil, fmt.Errorf("numbers: %w", err)
		}
		n.numbers = st
		stages = append([]router.Stage{st}, stages...)
	}

	if len(cfg.Content.RuleFiles) > 0 {
		cc := content.DefaultConfig()
		cc.Rules, cc.DefaultStatus = cfg.Content.RuleFiles, smpp.Status(cfg.Content.RejectStatus)
		cc.StripSeparators, cc.Logger, cc.Metrics = cfg.Content.StripSeparators, log, n.metrics
		cc.Concat = content.DefaultConcatConfig()
		cc.Concat.Hold, cc.Concat.MaxMessages, cc.Concat.MaxBytes = time.Duration(cfg.Content.Hold), cfg.Content.MaxHeldMessages, cfg.Content.MaxHeldBytes
		st, err := content.NewStage(cc)
		if err != nil {
			return nil, fmt.Errorf("content: %w", err)
		}
		n.content = st
		stages = append(stages, st)
	}

	if cfg.Lanes.Enabled {
		st, err := lane.New(lane.Config{OTPAccounts: cfg.Lanes.OTPAccounts, BulkAccounts: cfg.Lanes.BulkAccounts,
			Templates: cfg.Lanes.Templates, Metrics: n.metrics})
		if err != nil {
			return nil, err
		}
		stages = append(stages, st)
	}

	if cfg.Protection.Enabled {
		st, err := n.protectStage()
		if err != nil {
			return nil, err
		}
		stages = append(stages, st)
	}

	if n.repl.gov != nil { // after the number and lane stages: it needs the pool and the lane
		stages = append(stages, n.repl.gov)
	}

	if q := &cfg.QuietHours; q.Enabled {
		st, err := quiet.New(quiet.Config{Start: q.Start, End: q.End, Accounts: q.Accounts, Zones: q.ZoneMap(),
			Status: smpp.Status(q.Status), Metrics: n.metrics})
		if err != nil {
			return nil, err
		}
		stages = append(stages, st)
	}
	if d := &cfg.Dedup; d.Enabled {
		dc := dedup.DefaultConfig()
		dc.Window, dc.MaxEntries, dc.RejectStatus = time.Duration(d.Window), d.MaxEntries, smpp.Status(d.RejectStatus)
		if d.Policy == "reject" {
			dc.Policy = dedup.Reject
		}
		// An original may stay in flight for max_wait plus the upstream's answer time.
		dc.InFlightTimeout = max(dc.InFlightTimeout, 2*time.Duration(cfg.Router.MaxWait)+maxResponseTimeout(cfg))
		dc.NearDup = dedup.DefaultNearConfig()
		dc.NearDup.Enabled, dc.NearDup.Max, dc.NearDup.Window = d.NearEnabled, d.NearMax, time.Duration(d.NearWindow)
		dc.NearDup.MaxDistance, dc.NearDup.Status = d.NearDistance, smpp.Status(d.NearStatus)
		dc.Metrics = n.metrics
		st, err := dedup.NewStage(dc)
		if err != nil {
			return nil, fmt.Errorf("dedup: %w", err)
		}
		stages = append(stages, st)
	}

	if rc := &cfg.Recipients; rc.DailyCap > 0 {
		st, err := recipient.New(recipient.Config{DailyCap: rc.DailyCap, MaxEntries: rc.MaxEntries,
			Status: smpp.Status(rc.Status), Metrics: n.metrics})
		if err != nil {
			return nil, err
		}
		stages = append(stages, st)
	}

	rc := router.DefaultConfig()
	rc.MaxWait = time.Duration(cfg.Router.MaxWait)
	rc.InDoubtStatus = smpp.Status(cfg.Router.InDoubtStatus)
	rc.IDs, rc.IDMap, rc.Logger, rc.Metrics, rc.Stages = ids, n.idmap, log, n.metrics, stages
	rc.Journal = n.deliver
	if n.router, err = router.New(rc, n.pools); err != nil {
		return nil, err
	}

	sc := smpp.DefaultServerConfig()
	sc.SystemID = cfg.Server.SystemID
	sc.MaxPDUSize = cfg.Server.MaxPDUSize
	sc.BindTimeout = time.Duration(cfg.Server.BindTimeout)
	sc.ReadTimeout = time.Duration(cfg.Server.ReadTimeout)
	sc.EnquireLinkInterval = time.Duration(cfg.Server.EnquireLinkInterval)
	sc.ResponseTimeout = time.Duration(cfg.Server.ResponseTimeout)
	sc.MaxSessions = cfg.Server.MaxSessions
	sc.OutboundWindow = cfg.Server.DeliverWindow
	sc.Logger, sc.Metrics = log, n.metrics
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	n.server = smpp.NewServer(sc, handler{n.router, n.deliver})
	accts := make([]*smpp.Account, 0, len(cfg.Accounts))
	for i := range cfg.Accounts {
		a := &cfg.Accounts[i]
		accts = append(accts, &smpp.Account{SystemID: a.SystemID, Password: a, AllowedNets: a.AllowedCIDRs,
			MaxBinds: a.MaxBinds, Window: a.Window, Limiter: smpp.NewLimiter(float64(a.Throughput)),
			Value: &router.Route{Pool: byName[a.Upstream]}})
	}
	n.server.SetAccounts(accts)
	ok = true
	return n, nil
}

// handler is the router for submits, and the deliver service for which sessions can receive.
type handler struct {
	*router.Router
	d *deliver.Service
}

func (h handler) Bound(s *smpp.Session)   { h.Router.Bound(s); h.d.Bound(s) }
func (h handler) Unbound(s *smpp.Session) { h.d.Unbound(s); h.Router.Unbound(s) }

// openDeliver opens the local store (data_dir/local) and the receipt and MO service on it.
func (n *Node) openDeliver() error {
	cfg := n.cfg
	sc := store.DefaultConfig()
	sc.Dir, sc.Logger = filepath.Join(cfg.Node.DataDir, "local"), n.log
	sc.MappingTTL, sc.OutboxTTL = time.Duration(cfg.Router.IDMapTTL), time.Duration(cfg.Receipts.TTL)
	st, err := store.Open(sc)
	if err != nil {
		return err
	}
	dc := deliver.DefaultConfig()
	r := &cfg.Receipts
	dc.Store, dc.Hold, dc.MaxHeld, dc.UnmatchedStatus = st, time.Duration(r.Hold), r.MaxHeld, smpp.Status(r.UnmatchedStatus)
	dc.RetryMin, dc.RetryMax, dc.OutboxTTL = time.Duration(r.RetryMin), time.Duration(r.RetryMax), time.Duration(r.TTL)
	dc.UnroutableStatus, dc.Logger, dc.Metrics = smpp.Status(cfg.MO.UnroutableStatus), n.log, n.metrics
	dc.Window = cfg.Server.DeliverWindow
	dc.OptOutWords = cfg.Protection.OptOutKeywords
	dc.OnOptOut = n.optOut
	for _, mr := range cfg.MO.Routes {
		dc.MORoutes = append(dc.MORoutes, deliver.MORoute{To: mr.To, Keyword: mr.Keyword, Account: mr.Account})
	}
	d, err := deliver.New(dc)
	if err != nil {
		_ = st.Close()
		return err
	}
	n.store, n.deliver = st, d
	return nil
}

func maxResponseTimeout(cfg *config.Config) time.Duration {
	var d time.Duration
	for _, u := range cfg.Upstreams {
		d = max(d, time.Duration(u.ResponseTimeout))
	}
	return d
}

func (n *Node) newPool(u *config.Upstream) (*router.Pool, []*smpp.Client, error) {
	var tlsCfg *tls.Config
	if u.TLS.Enabled {
		var err error
		if tlsCfg, err = u.TLSConfig(); err != nil {
			return nil, nil, err
		}
	}
	bt := map[string]smpp.BindType{config.BindTransmitter: smpp.Transmitter, config.BindReceiver: smpp.Receiver,
		config.BindTransceiver: smpp.Transceiver}[u.BindType]
	mode, err := smpp.ParseIDMode(u.ReceiptID)
	if err != nil {
		return nil, nil, fmt.Errorf("receipt_id: %w", err)
	}
	var pool *router.Pool
	notify := func() { pool.Notify() }
	clients := make([]*smpp.Client, u.Binds)
	ups := make([]router.Upstream, u.Binds)
	for i := range clients {
		cc := smpp.DefaultClientConfig()
		cc.Name, cc.Index, cc.Addr = u.Name, i, u.Address
		cc.SystemID, cc.Password, cc.SystemType, cc.BindType = u.SystemID, string(u.Password), u.SystemType, bt
		cc.Window, cc.Throughput = u.Window, float64(u.Throughput)
		cc.EnquireLinkInterval, cc.ResponseTimeout = time.Duration(u.EnquireLinkInterval), time.Duration(u.ResponseTimeout)
		cc.ReconnectMin, cc.ReconnectMax = time.Duration(u.ReconnectMin), time.Duration(u.ReconnectMax)
		cc.MaxPDUSize, cc.TLS, cc.Logger, cc.OnFree = n.cfg.Server.MaxPDUSize, tlsCfg, n.log, notify
		cc.OnDeliver = n.deliver.OnDeliver(u.Name, mode)
		if err := cc.Validate(); err != nil {
			return nil, nil, err
		}
		clients[i] = smpp.NewClient(cc)
		ups[i] = clients[i]
	}
	pool = router.NewPool(u.Name, ups, n.cfg.Router.OTPReservePercent)
	n.metrics.NewGauge(fmt.Sprintf(`smppd_upstream_window_size{upstream=%q}`, u.Name), func() float64 { return float64(u.Binds * u.Window) })
	return pool, clients, nil
}

// Start binds upstreams and opens the listeners.
func (n *Node) Start() error {
	var err error
	if a := n.cfg.Listen.Admin; a != "" {
		if n.adminLn, err = net.Listen("tcp", a); err != nil {
			return fmt.Errorf("listen.admin: %w", err)
		}
		n.admin = &http.Server{Handler: n.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		n.goRun(func() { _ = n.admin.Serve(n.adminLn) })
	}
	n.router.Start()
	if n.content != nil {
		n.content.Start()
	}
	n.deliver.Start()
	if n.repl.gov != nil {
		n.repl.gov.Start()
	}
	n.startLeaderJobs()
	for _, c := range n.clients {
		c.Start()
	}
	if a := n.cfg.Listen.SMPP; a != "" {
		if n.smppLn, err = net.Listen("tcp", a); err != nil {
			n.closeListeners()
			return fmt.Errorf("listen.smpp: %w", err)
		}
		n.goRun(func() { n.serve(n.smppLn) })
	}
	if t := n.cfg.Listen.TLS; t.Addr != "" {
		tc, err := t.ServerConfig()
		if err != nil {
			n.closeListeners()
			return fmt.Errorf("listen.tls: %w", err)
		}
		if n.tlsLn, err = tls.Listen("tcp", t.Addr, tc); err != nil {
			n.closeListeners()
			return fmt.Errorf("listen.tls.addr: %w", err)
		}
		n.goRun(func() { n.serve(n.tlsLn) })
	}
	n.log.Info("smppd started", "smpp", n.SMPPAddr(), "smpp_tls", addrOf(n.tlsLn), "admin", n.AdminAddr(), "node_id", n.cfg.Node.ID)
	return nil
}

func (n *Node) goRun(f func()) {
	n.wg.Add(1)
	go func() { defer n.wg.Done(); f() }()
}

func (n *Node) serve(ln net.Listener) {
	if err := n.server.Serve(ln); err != nil {
		n.log.Error("smpp listener failed", "addr", ln.Addr().String(), "err", err)
	}
}

func (n *Node) closeListeners() {
	for _, ln := range []net.Listener{n.smppLn, n.tlsLn, n.adminLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Reload re-reads the files stages load (operator range and port files) and swaps them in
// atomically; on an error the old data stays and the error names the file and line.
func (n *Node) Reload() error {
	var errs []error
	if n.numbers != nil {
		if err := n.numbers.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("numbers: %w", err))
		}
	}
	if n.content != nil {
		if err := n.content.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("content: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		n.log.Error("reload failed, keeping the previous data where it failed", "err", err)
		return err
	}
	n.log.Info("reloaded")
	return nil
}

// SMPPAddr is the plain SMPP listener's address ("" if off).
func (n *Node) SMPPAddr() string { return addrOf(n.smppLn) }

// TLSAddr is the SMPP-over-TLS listener's address ("" if off).
func (n *Node) TLSAddr() string { return addrOf(n.tlsLn) }

// AdminAddr is the admin HTTP listener's address ("" if off).
func (n *Node) AdminAddr() string { return addrOf(n.adminLn) }

// Metrics returns the node's metric set.
func (n *Node) Metrics() *metrics.Set { return n.metrics }

// IDMap returns the message id mapping.
func (n *Node) IDMap() router.IDMap { return n.idmap }

// Deliver returns the receipt and MO service.
func (n *Node) Deliver() *deliver.Service { return n.deliver }

// Ready reports whether the node takes traffic: not draining and at least one upstream bound.
func (n *Node) Ready() bool {
	if n.draining.Load() {
		return false
	}
	for _, c := range n.clients {
		if c.Bound() {
			return true
		}
	}
	return false
}

// Shutdown stops the node in order, each step timed: readiness false; the SMPP server drains
// (new submits refused with ESME_RTHROTTLED, in-flight ones answered with their upstream
// outcome until the deadline, the rest ESME_RSYSERR; sessions unbound); the router's retry
// queue; upstream binds (unbind after their in-flight answers); the admin listener.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutdownOnce.Do(func() { n.shutdownErr = n.shutdown(ctx) })
	return n.shutdownErr
}

func (n *Node) shutdown(ctx context.Context) error {
	n.draining.Store(true)
	step := func(name string, f func()) {
		t := time.Now()
		f()
		n.log.Info("shutdown step done", "step", name, "took", time.Since(t).Round(time.Millisecond))
	}
	var errs []error
	step("leadership", func() {
		// First, so the cluster keeps taking writes while this node drains its sessions.
		if n.repl.raft.IsLeader() && len(n.repl.raft.Status().Members) > 1 {
			if err := n.repl.raft.TransferLeadership(); err != nil {
				n.log.Warn("leadership transfer failed; the others elect after a timeout", "err", err)
			}
		}
	})
	if n.content != nil {
		// Segments still held are judged as they are and sent or refused now, so the server's
		// drain sees them answered; from here on no segment is held.
		step("content", n.content.Close)
	}
	step("smpp server", func() {
		sctx, cancel := context.WithTimeout(ctx, time.Duration(n.cfg.Server.ShutdownTimeout))
		defer cancel()
		if err := n.server.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			errs = append(errs, err)
		}
	})
	step("router", n.router.Close)
	step("upstreams", func() {
		ctx, cancel := context.WithTimeout(ctx, time.Duration(n.cfg.Server.ShutdownTimeout))
		defer cancel()
		var wg sync.WaitGroup
		for _, c := range n.clients {
			wg.Add(1)
			go func() { defer wg.Done(); _ = c.Close(ctx) }()
		}
		wg.Wait()
	})
	step("receipts", n.deliver.Close)
	if n.repl.gov != nil {
		step("governor", n.repl.gov.Close) // a last report of this node's sent counts
	}
	step("cluster", func() {
		if err := n.closeCluster(); err != nil {
			errs = append(errs, err)
		}
	})
	step("store", func() {
		if err := n.store.Close(); err != nil {
			errs = append(errs, err)
		}
	})
	step("admin", func() {
		if n.admin != nil {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_ = n.admin.Shutdown(actx)
		}
	})
	n.wg.Wait()
	return errors.Join(errs...)
}
