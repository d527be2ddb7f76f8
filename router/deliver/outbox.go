package deliver

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/store"
)

// loadBatch is how many items an outbox reads from the store at a time.
const loadBatch = 256

// outbox delivers one account's items. Its goroutine (run) sends; the sessions' read loops
// answer (sent's callback); mu guards everything below it.
type outbox struct {
	s       *Service
	account string
	wake    chan struct{}

	mu       sync.Mutex
	sessions []*smpp.Session // bound receivers and transceivers
	rr       int
	pending  int     // in the store, not yet acknowledged
	queue    []*item // loaded, waiting to be sent, by seq
	inflight int
	// unconfirmed: acknowledged by the client, removal not yet synced. At most Config.Window
	// per session, like inflight (the sessions' windows bound that), so a crash re-delivers at
	// most twice the window per session.
	unconfirmed int
	cursor      uint64 // the highest seq loaded
	durable     uint64 // the highest seq known synced: nothing above it is loaded
	more        bool   // the store may hold items in (cursor, durable]
	running     bool

	delivered, expiredC, retries *metrics.Counter
}

func (s *Service) outbox(account string) *outbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	ob := s.accounts[account]
	if ob == nil {
		ob = &outbox{s: s, account: account, wake: make(chan struct{}, 1), more: true}
		ob.delivered = s.m.GetOrCreateCounter(fmt.Sprintf(`smppd_outbox_delivered_total{system_id=%q}`, account))
		ob.expiredC = s.m.GetOrCreateCounter(fmt.Sprintf(`smppd_outbox_expired_total{system_id=%q}`, account))
		ob.retries = s.m.GetOrCreateCounter(fmt.Sprintf(`smppd_outbox_retries_total{system_id=%q}`, account))
		s.m.GetOrCreateGauge(fmt.Sprintf(`smppd_outbox_pending{system_id=%q}`, account), func() float64 {
			ob.mu.Lock()
			defer ob.mu.Unlock()
			return float64(ob.pending)
		})
		s.accounts[account] = ob
		if s.started {
			ob.startLocked()
		}
	}
	return ob
}

// startLocked starts the goroutine; s.mu held.
func (ob *outbox) startLocked() {
	if ob.running || ob.s.closed {
		return
	}
	ob.running = true
	ob.s.wg.Add(1)
	go ob.run()
}

func (ob *outbox) kick() {
	select {
	case ob.wake <- struct{}{}:
	default:
	}
}

// addPending counts n items found on disk at startup; all are durable.
func (ob *outbox) addPending(n int) {
	ob.mu.Lock()
	ob.pending += n
	ob.durable = ^uint64(0) - 1
	ob.mu.Unlock()
}

// notify: the item with sequence number seq is durable.
func (ob *outbox) notify(seq uint64) {
	ob.mu.Lock()
	ob.pending++
	ob.durable = max(ob.durable, seq)
	ob.more = true
	ob.mu.Unlock()
	ob.kick()
}

// expired: the store removed n items past the TTL.
func (ob *outbox) expired(n int) {
	ob.expiredC.Add(n)
	ob.mu.Lock()
	ob.pending = max(ob.pending-n, 0)
	ob.mu.Unlock()
	ob.s.log.Warn("outbox items expired undelivered", "system_id", ob.account, "count", n)
}

func (ob *outbox) run() {
	defer ob.s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := ob.pump()
		if next > 0 {
			timer.Reset(next)
		}
		select {
		case <-ob.s.stop:
			return
		case <-ob.wake:
		case <-timer.C:
		}
		if next > 0 && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// pump loads and sends what it can; it returns how long until the next retry is due (0: none).
func (ob *outbox) pump() time.Duration {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if len(ob.sessions) == 0 {
		return 0
	}
	if len(ob.queue) < loadBatch/2 && ob.more {
		ob.more = false
		after, upto := ob.cursor, ob.durable
		ob.mu.Unlock()
		loaded, last, n, err := ob.load(after, upto)
		ob.mu.Lock()
		if err != nil {
			ob.s.log.Error("outbox read failed", "system_id", ob.account, "err", err)
			ob.more = true
			return time.Second
		}
		if n == loadBatch {
			ob.more = true
		}
		if last > ob.cursor {
			ob.cursor = last
		}
		ob.queue = append(ob.queue, loaded...)
	}
	now := time.Now()
	cutoff := uint64(now.Add(-ob.s.cfg.OutboxTTL).UnixNano())
	var next time.Duration
	kept := ob.queue[:0]
	limit := ob.s.cfg.Window * len(ob.sessions)
	full := ob.unconfirmed >= limit
	for _, it := range ob.queue {
		switch {
		case it.seq < cutoff:
			continue // expired: the store's expiry removes and counts it
		case full:
		case it.due.After(now):
			if d := it.due.Sub(now); next == 0 || d < next {
				next = d
			}
		default:
			sent, anyRoom := ob.send(it)
			if sent {
				full = ob.unconfirmed >= limit
				continue
			}
			full = !anyRoom
		}
		kept = append(kept, it)
	}
	clear(ob.queue[len(kept):])
	ob.queue = kept
	return next
}

// load reads up to loadBatch items in (after, upto].
func (ob *outbox) load(after, upto uint64) (items []*item, last uint64, n int, err error) {
	err = ob.s.st.Outbox(ob.account, after, upto, loadBatch, func(seq uint64, v []byte) bool {
		n++
		last = seq
		if it, ok := parseItem(seq, v); ok {
			items = append(items, &it)
		} else {
			ob.s.log.Error("outbox item unreadable, skipped", "system_id", ob.account, "seq", seq)
		}
		return true
	})
	return items, last, n, err
}

// send tries it on a session with room (mu held): the parts of a concatenated MO always on the
// same session, others round robin. anyRoom reports whether some session still has room.
func (ob *outbox) send(it *item) (sent, anyRoom bool) {
	n := len(ob.sessions)
	if it.concat {
		sess := ob.sessions[int(it.ref)%n]
		sent = ob.request(sess, it)
		return sent, true // others may have room for other items
	}
	for i := range n {
		sess := ob.sessions[(ob.rr+i)%n]
		if ob.request(sess, it) {
			ob.rr = (ob.rr + i + 1) % n
			return true, true
		}
	}
	return false, false
}

func (ob *outbox) request(sess *smpp.Session, it *item) bool {
	err := sess.Request(smpp.DeliverSM, it.body, func(st smpp.Status, err error) { ob.answered(it, st, err) })
	if err != nil {
		if !errors.Is(err, smpp.ErrWindowFull) && !errors.Is(err, smpp.ErrSessionClosed) {
			ob.s.log.Warn("deliver_sm not sent", "system_id", ob.account, "err", err)
		}
		return false
	}
	ob.inflight++
	return true
}

// answered is a session's answer to it's deliver_sm (on its read loop, or at its close).
func (ob *outbox) answered(it *item, st smpp.Status, err error) {
	if err == nil && st == smpp.StatusOK {
		ob.mu.Lock()
		ob.inflight--
		ob.unconfirmed++
		ob.mu.Unlock()
		ob.s.st.Do(&removeOp{ob: ob, seq: it.seq})
		return
	}
	ob.retries.Inc()
	it.attempts++
	backoff := ob.s.cfg.RetryMin << min(it.attempts-1, 20)
	it.due = time.Now().Add(min(backoff, ob.s.cfg.RetryMax))
	if err != nil {
		ob.s.log.Debug("deliver_sm unanswered, will retry", "system_id", ob.account, "err", err)
	} else {
		ob.s.log.Debug("deliver_sm refused by client, will retry", "system_id", ob.account, "status", st.String())
	}
	ob.mu.Lock()
	ob.inflight--
	i, _ := slices.BinarySearchFunc(ob.queue, it.seq, func(a *item, seq uint64) int {
		switch {
		case a.seq < seq:
			return -1
		case a.seq > seq:
			return 1
		}
		return 0
	})
	ob.queue = slices.Insert(ob.queue, i, it)
	ob.mu.Unlock()
	ob.kick()
}

// removeOp deletes an acknowledged item.
type removeOp struct {
	ob  *outbox
	seq uint64
}

func (r *removeOp) Apply(tx *store.Tx) { tx.Remove(r.ob.account, r.seq) }

func (r *removeOp) Done(err error) {
	if err != nil {
		// Delivered, but it stays in the store: delivered again after a restart.
		r.ob.s.storeFailed("outbox removal", err)
	}
	r.ob.delivered.Inc()
	r.ob.mu.Lock()
	r.ob.pending = max(r.ob.pending-1, 0)
	r.ob.unconfirmed--
	r.ob.mu.Unlock()
	r.ob.kick()
}

// Bound registers a receiver or transceiver session of its account for deliveries.
func (s *Service) Bound(sess *smpp.Session) {
	if !sess.BindType().CanReceive() {
		return
	}
	ob := s.outbox(sess.Account().SystemID)
	ob.mu.Lock()
	ob.sessions = append(ob.sessions, sess)
	ob.mu.Unlock()
	ob.kick()
}

// Unbound forgets a session; its unanswered deliver_sm are retried on others (their
// callbacks report ErrSessionClosed).
func (s *Service) Unbound(sess *smpp.Session) {
	if !sess.BindType().CanReceive() {
		return
	}
	ob := s.outbox(sess.Account().SystemID)
	ob.mu.Lock()
	if i := slices.Index(ob.sessions, sess); i >= 0 {
		ob.sessions = slices.Delete(ob.sessions, i, i+1)
	}
	ob.mu.Unlock()
}

// AccountStatus is one account's outbox, for the status API.
type AccountStatus struct {
	SystemID  string `json:"system_id"`
	Pending   int    `json:"pending"`   // receipts and MO stored, not yet acknowledged by the client
	Inflight  int    `json:"inflight"`  // sent, awaiting deliver_sm_resp
	Receivers int    `json:"receivers"` // bound sessions that can receive
}

// Status returns every account's outbox that has items or receivers, by system_id.
func (s *Service) Status() []AccountStatus {
	s.mu.Lock()
	obs := make([]*outbox, 0, len(s.accounts))
	for _, ob := range s.accounts {
		obs = append(obs, ob)
	}
	s.mu.Unlock()
	out := []AccountStatus{}
	for _, ob := range obs {
		ob.mu.Lock()
		st := AccountStatus{ob.account, ob.pending, ob.inflight, len(ob.sessions)}
		ob.mu.Unlock()
		if st.Pending > 0 || st.Receivers > 0 || st.Inflight > 0 {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b AccountStatus) int {
		switch {
		case a.SystemID < b.SystemID:
			return -1
		case a.SystemID > b.SystemID:
			return 1
		}
		return 0
	})
	return out
}
