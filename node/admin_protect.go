package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smppd/smppd/cluster"
	"github.com/smppd/smppd/store"
)

// Admin API for the replicated recipient-protection state and the cluster. Writes need the
// bearer token (admin.token) when one is configured, are audit-logged, and go to the leader:
// a follower builds the commands and forwards their bytes to the leader's
// POST /api/v1/cluster/apply.

func (n *Node) protectRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/blocklist", n.write(n.blocklistAdd))
	mux.HandleFunc("DELETE /api/v1/blocklist", n.write(n.blocklistRemove))
	mux.HandleFunc("POST /api/v1/blocklist/import", n.write(n.blocklistImport))
	// Reads that list phone numbers need the token too (they are personal data).
	mux.HandleFunc("GET /api/v1/blocklist", n.authed(n.entryList(0)))
	mux.HandleFunc("GET /api/v1/blocklist/export", n.authed(n.blocklistExport))
	mux.HandleFunc("GET /api/v1/numbers/{number}", n.authed(n.numberCheck))
	mux.HandleFunc("POST /api/v1/complaints", n.write(n.complaintAdd))
	mux.HandleFunc("POST /api/v1/optouts", n.write(n.optOutAdd))
	mux.HandleFunc("DELETE /api/v1/optouts", n.write(n.optOutRemove))
	mux.HandleFunc("GET /api/v1/optouts", n.authed(n.entryList(store.KindOptOut)))
	mux.HandleFunc("GET /api/v1/complaints", n.authed(n.entryList(store.KindComplaint)))
	mux.HandleFunc("GET /api/v1/cluster", n.clusterStatus)
	mux.HandleFunc("POST /api/v1/cluster/join", n.write(n.clusterJoin))
	mux.HandleFunc("POST /api/v1/cluster/remove", n.write(n.clusterRemove))
	mux.HandleFunc("POST /api/v1/cluster/transfer-leadership", n.write(n.clusterTransfer))
	mux.HandleFunc("POST /api/v1/cluster/apply", n.write(n.clusterApply))
}

// httpError is an error with its HTTP status.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// tokenOK checks the bearer token (when admin.token is set), answering 401 if it is wrong.
func (n *Node) tokenOK(w http.ResponseWriter, r *http.Request) bool {
	tok := string(n.cfg.Admin.Token)
	if tok == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ok && subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1 {
		return true
	}
	n.log.Warn("admin request refused: bad or missing token", "component", "audit", "remote", r.RemoteAddr,
		"method", r.Method, "path", r.URL.Path)
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Authorization: want \"Bearer <admin.token>\""})
	return false
}

// authed wraps a read handler with the token check.
func (n *Node) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if n.tokenOK(w, r) {
			h(w, r)
		}
	}
}

// write wraps a write handler: token check, audit log, error to status.
func (n *Node) write(h func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !n.tokenOK(w, r) {
			return
		}
		start := time.Now()
		out, err := h(r)
		if err != nil {
			code := http.StatusInternalServerError
			var he *httpError
			switch {
			case errors.As(err, &he):
				code = he.code
			case errors.Is(err, store.ErrInvalidCommand):
				code = http.StatusBadRequest
			case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotLeader):
				code = http.StatusServiceUnavailable
			}
			n.log.Info("admin write failed", "component", "audit", "remote", r.RemoteAddr, "method", r.Method,
				"path", r.URL.Path, "query", r.URL.RawQuery, "status", code, "err", err.Error())
			writeJSON(w, code, map[string]string{"error": err.Error()})
			return
		}
		n.log.Info("admin write", "component", "audit", "remote", r.RemoteAddr, "method", r.Method,
			"path", r.URL.Path, "query", r.URL.RawQuery, "result", out, "took", time.Since(start).Round(time.Microsecond))
		writeJSON(w, http.StatusOK, out)
	}
}

// parseNumber reads an E.164 number: digits, optionally a leading +, at most 15 digits.
func parseNumber(field, s string) (uint64, error) {
	d := strings.TrimPrefix(strings.TrimSpace(s), "+")
	if d == "" || len(d) > 15 || strings.Trim(d, "0123456789") != "" || d[0] == '0' {
		msg := fmt.Sprintf("%q is not an E.164 number (digits with country code, optionally a leading +, at most 15)", s)
		if field == "" {
			return 0, errors.New(msg)
		}
		return 0, badRequest("%s: %s", field, msg)
	}
	v, _ := strconv.ParseUint(d, 10, 64)
	return v, nil
}

// entryRequest is the JSON body of blocklist, complaint and opt-out writes.
type entryRequest struct {
	Numbers  []string `json:"numbers"`
	Number   string   `json:"number"` // one number instead of numbers
	Account  string   `json:"account"`
	Sender   string   `json:"sender"`
	Reason   string   `json:"reason"`
	Source   string   `json:"source"`
	Upstream string   `json:"upstream"`
	TTL      string   `json:"ttl"` // e.g. "24h"; "" = never expires
}

func decodeEntryRequest(r *http.Request) (*entryRequest, []uint64, error) {
	var req entryRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, nil, badRequest("body: %v", err)
	}
	if req.Number != "" {
		req.Numbers = append(req.Numbers, req.Number)
	}
	if len(req.Numbers) == 0 {
		return nil, nil, badRequest("numbers: at least one number is required")
	}
	nums := make([]uint64, len(req.Numbers))
	for i, s := range req.Numbers {
		v, err := parseNumber("", s)
		if err != nil {
			return nil, nil, badRequest("numbers[%d]: %s", i, err.Error())
		}
		nums[i] = v
	}
	if req.TTL != "" {
		if d, err := time.ParseDuration(req.TTL); err != nil || d <= 0 {
			return nil, nil, badRequest("ttl: %q is not a positive duration such as 24h", req.TTL)
		}
	}
	return &req, nums, nil
}

// entries builds the entries of a request, of kind k, at time now (unix ms).
func (req *entryRequest) entries(k store.Kind, nums []uint64, now int64, source string) []store.Entry {
	var exp int64
	if req.TTL != "" {
		d, _ := time.ParseDuration(req.TTL)
		exp = now + d.Milliseconds()
	}
	if req.Source != "" {
		source = req.Source
	}
	out := make([]store.Entry, len(nums))
	for i, num := range nums {
		out[i] = store.Entry{Key: store.Key{Number: num, Kind: k, Scope: store.Scope{Account: req.Account, Sender: req.Sender}},
			Reason: req.Reason, Source: source, Upstream: req.Upstream, Created: now, Expires: exp}
	}
	return out
}

// proposeChunked proposes items in commands of type t of at most store.MaxCommandItems each
// (set puts a chunk into the command) and sums what they added and removed.
func proposeChunked[T any](n *Node, t store.CmdType, items []T, set func(*store.Command, []T)) (added, removed int, err error) {
	for len(items) > 0 {
		k := min(len(items), store.MaxCommandItems)
		cmd := store.Command{Type: t, Time: time.Now().UnixMilli()}
		set(&cmd, items[:k])
		res, err := n.propose(&cmd)
		if err != nil {
			return added, removed, err
		}
		added, removed = added+res.Added, removed+res.Removed
		items = items[k:]
	}
	return added, removed, nil
}

// proposeEntries proposes entries in commands of at most store.MaxCommandItems.
func (n *Node) proposeEntries(t store.CmdType, es []store.Entry) (map[string]int, error) {
	added, _, err := proposeChunked(n, t, es, func(c *store.Command, e []store.Entry) { c.Entries = e })
	return map[string]int{"added": added}, err
}

func (n *Node) proposeKeys(t store.CmdType, keys []store.Key) (map[string]int, error) {
	_, removed, err := proposeChunked(n, t, keys, func(c *store.Command, k []store.Key) { c.Keys = k })
	return map[string]int{"removed": removed}, err
}

func source(r *http.Request) string { return "admin@" + r.RemoteAddr }

func (n *Node) blocklistAdd(r *http.Request) (any, error) {
	req, nums, err := decodeEntryRequest(r)
	if err != nil {
		return nil, err
	}
	return n.proposeEntries(store.CmdBlockAdd, req.entries(store.KindBlock, nums, time.Now().UnixMilli(), source(r)))
}

func (n *Node) complaintAdd(r *http.Request) (any, error) {
	req, nums, err := decodeEntryRequest(r)
	if err != nil {
		return nil, err
	}
	// The upstream is the channel the complaint counts against (the governor's rates): a name
	// no upstream has would count for no channel, and grow the metrics with a label of its own.
	if _, ok := n.upstreams[req.Upstream]; req.Upstream != "" && !ok {
		names := make([]string, 0, len(n.upstreams))
		for name := range n.upstreams {
			names = append(names, name)
		}
		slices.Sort(names)
		return nil, badRequest("upstream: %q is not a configured upstream (%s)", req.Upstream, strings.Join(names, ", "))
	}
	now := time.Now().UnixMilli()
	out, err := n.proposeEntries(store.CmdComplaint, req.entries(store.KindComplaint, nums, now, source(r)))
	if err != nil || !n.cfg.Protection.ComplaintBlocks {
		return out, err
	}
	// The complaint also blocklists the number for everyone (decided here, by the proposer,
	// so every node applies the same commands).
	block := *req
	block.Account, block.Sender, block.TTL = "", "", ""
	if block.Reason == "" {
		block.Reason = "complaint"
	}
	b, err := n.proposeEntries(store.CmdBlockAdd, block.entries(store.KindBlock, nums, now, source(r)))
	out["blocked"] = b["added"]
	return out, err
}

func (n *Node) optOutAdd(r *http.Request) (any, error) {
	req, nums, err := decodeEntryRequest(r)
	if err != nil {
		return nil, err
	}
	return n.proposeEntries(store.CmdOptOut, req.entries(store.KindOptOut, nums, time.Now().UnixMilli(), source(r)))
}

// keysOf reads ?number=N&account=A&sender=S (number repeatable).
func keysOf(r *http.Request, k store.Kind) ([]store.Key, error) {
	q := r.URL.Query()
	nums := q["number"]
	if len(nums) == 0 {
		return nil, badRequest("number: required (repeat it for several)")
	}
	keys := make([]store.Key, len(nums))
	for i, s := range nums {
		v, err := parseNumber("number", s)
		if err != nil {
			return nil, err
		}
		keys[i] = store.Key{Number: v, Kind: k, Scope: store.Scope{Account: q.Get("account"), Sender: q.Get("sender")}}
	}
	return keys, nil
}

func (n *Node) blocklistRemove(r *http.Request) (any, error) {
	keys, err := keysOf(r, store.KindBlock)
	if err != nil {
		return nil, err
	}
	if r.URL.Query().Get("complaints") == "true" { // also forget complaint records of these numbers
		for _, k := range keys {
			c := k
			c.Kind = store.KindComplaint
			keys = append(keys, c)
		}
	}
	return n.proposeKeys(store.CmdBlockRemove, keys)
}

func (n *Node) optOutRemove(r *http.Request) (any, error) {
	keys, err := keysOf(r, store.KindOptOut)
	if err != nil {
		return nil, err
	}
	return n.proposeKeys(store.CmdOptOutRemove, keys)
}

// blocklistImport streams a CSV body (number[,account,sender,reason]; a header line starting
// with "number" is skipped) into commands of store.MaxCommandItems entries.
func (n *Node) blocklistImport(r *http.Request) (any, error) {
	cr := csv.NewReader(bufio.NewReaderSize(r.Body, 1<<20))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	now := time.Now().UnixMilli()
	src := source(r)
	ttl := r.URL.Query().Get("ttl")
	var exp int64
	if ttl != "" {
		d, err := time.ParseDuration(ttl)
		if err != nil || d <= 0 {
			return nil, badRequest("ttl: %q is not a positive duration such as 24h", ttl)
		}
		exp = now + d.Milliseconds()
	}
	// Commands go out importParallel at a time: Raft batches concurrent proposals into one log
	// write and one round trip, so a bulk import is not one commit latency per 1,000 numbers.
	// (Numbers repeated within one import may then land in either order.)
	const importParallel = 8
	var (
		mu       sync.Mutex
		total    int
		retried  int // numbers in commands proposed again after a leadership change
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, importParallel)
	send := func(b []store.Entry) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			res, again, err := n.proposeRetried(&store.Command{Type: store.CmdBlockAdd, Time: time.Now().UnixMilli(), Entries: b})
			mu.Lock()
			total += res.Added
			if again {
				retried += len(b)
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}()
	}
	failed := func() error { mu.Lock(); defer mu.Unlock(); return firstErr }
	batch := make([]store.Entry, 0, store.MaxCommandItems)
	line := 0
	var readErr error
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line++
		if err != nil {
			readErr = badRequest("line %d: %v", line, err)
			break
		}
		if line == 1 && strings.EqualFold(strings.TrimSpace(rec[0]), "number") {
			continue
		}
		num, err := parseNumber("", rec[0])
		if err != nil { // the field's name only now: no formatting per number
			readErr = badRequest("line %d: number: %s", line, err.Error())
			break
		}
		e := store.Entry{Key: store.Key{Number: num, Kind: store.KindBlock}, Source: src, Created: now, Expires: exp}
		if len(rec) > 1 {
			e.Scope.Account = strings.TrimSpace(rec[1])
		}
		if len(rec) > 2 {
			e.Scope.Sender = strings.TrimSpace(rec[2])
		}
		if len(rec) > 3 {
			e.Reason = strings.TrimSpace(rec[3])
		}
		batch = append(batch, e)
		if len(batch) == store.MaxCommandItems {
			if failed() != nil {
				break
			}
			send(batch)
			batch = make([]store.Entry, 0, store.MaxCommandItems)
		}
	}
	if readErr == nil && len(batch) > 0 && failed() == nil {
		send(batch)
	}
	wg.Wait()
	if readErr == nil {
		readErr = firstErr
	}
	// "added" counts numbers that were not in the state before; "retried" the numbers in commands
	// proposed again after a leadership change (an earlier attempt may have added them, so the
	// one that answered found them present).
	if readErr != nil {
		return map[string]int{"added": total, "retried": retried}, readErr
	}
	return map[string]int{"added": total, "lines": line, "retried": retried}, nil
}

func (n *Node) blocklistExport(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/csv")
	if err := n.repl.fsm.Export(w); err != nil {
		n.log.Error("export failed", "err", err)
	}
}

func (n *Node) entryList(k store.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		kind := k
		if s := q.Get("kind"); s != "" && k == 0 {
			switch s {
			case "block":
				kind = store.KindBlock
			case "complaint":
				kind = store.KindComplaint
			case "optout":
				kind = store.KindOptOut
			default:
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "kind: want block, complaint or optout, got " + strconv.Quote(s)})
				return
			}
		} else if k == 0 {
			kind = store.KindBlock
		}
		var after uint64
		if s := q.Get("after"); s != "" {
			v, err := parseNumber("after", s)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			after = v
		}
		limit := 100
		if s := q.Get("limit"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 1 || v > 10000 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit: want 1..10000, got " + strconv.Quote(s)})
				return
			}
			limit = v
		}
		es, err := n.repl.fsm.List(kind, after, limit)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		if es == nil {
			es = []store.Entry{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"entries": es})
	}
}

// numberCheck: GET /api/v1/numbers/{number}?account=A&sender=S: the entries of a number and
// whether a message of account from sender would be refused here.
func (n *Node) numberCheck(w http.ResponseWriter, r *http.Request) {
	num, err := parseNumber("number", r.PathValue("number"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	es, err := n.repl.fsm.Lookup(num)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	if es == nil {
		es = []store.Entry{}
	}
	q := r.URL.Query()
	m := n.repl.index.Check(num, q.Get("account"), q.Get("sender"))
	writeJSON(w, http.StatusOK, map[string]any{"number": num, "refused": m != 0,
		"blocked": m.Has(store.KindBlock), "complaint": m.Has(store.KindComplaint), "optout": m.Has(store.KindOptOut),
		"entries": es, "applied_index": n.repl.fsm.AppliedIndex()})
}

func (n *Node) clusterStatus(w http.ResponseWriter, r *http.Request) {
	counts, _ := n.repl.fsm.Count()
	c := map[string]int{}
	for k, v := range counts {
		c[k.String()] = v
	}
	versions, admins := map[string]string{}, map[string]string{}
	for id, a := range n.repl.fsm.NodeVersions() {
		versions[id], admins[id] = parseAnnouncement(a)
	}
	n.peersMu.Lock()
	peers := append([]cluster.Peer(nil), n.repl.peers...)
	n.peersMu.Unlock()
	st := n.repl.raft.Status()
	out := map[string]any{"raft": st, "fsm_applied_index": n.repl.fsm.AppliedIndex(),
		"entries": c, "versions": versions, "admins": admins, "stale": n.repl.stale(), "peers": peers}
	if r.URL.Query().Get("local") == "" { // ?local=1: this node only (what members ask each other)
		for _, p := range peers {
			if admins[p.ID] == "" {
				admins[p.ID] = p.Admin
			}
		}
		out["members"] = n.memberProgress(r.Context(), st, admins)
	}
	writeJSON(w, http.StatusOK, out)
}

// memberProgress is one member's replication state as the member itself reports it.
type memberProgress struct {
	ID           string `json:"id"`
	State        string `json:"state,omitempty"`
	AppliedIndex uint64 `json:"applied_index"`
	// Lag is how many committed log entries (as this node knows the commit index) the member
	// has not applied yet.
	Lag   uint64 `json:"lag"`
	Error string `json:"error,omitempty"` // the member did not answer (down, or no admin address known)
}

// memberProgress asks every member's admin API, at once and briefly, how far it has applied.
func (n *Node) memberProgress(ctx context.Context, st cluster.Status, admins map[string]string) []memberProgress {
	out := make([]memberProgress, len(st.Members))
	var wg sync.WaitGroup
	for i, m := range st.Members {
		out[i].ID = m.ID
		if m.ID == st.ID {
			out[i].State, out[i].AppliedIndex = st.State, n.repl.fsm.AppliedIndex()
			continue
		}
		addr := admins[m.ID]
		if addr == "" {
			out[i].Error = "no admin address known"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/v1/cluster?local=1", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			defer resp.Body.Close()
			var v struct {
				Raft    cluster.Status `json:"raft"`
				Applied uint64         `json:"fsm_applied_index"`
			}
			if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v); err != nil {
				out[i].Error = "bad answer: " + err.Error()
				return
			}
			out[i].State, out[i].AppliedIndex = v.Raft.State, v.Applied
		}()
	}
	wg.Wait()
	for i := range out {
		if out[i].Error == "" && st.CommitIndex > out[i].AppliedIndex {
			out[i].Lag = st.CommitIndex - out[i].AppliedIndex
		}
	}
	return out
}

type memberRequest struct {
	ID    string `json:"id"`
	Raft  string `json:"raft"`
	Admin string `json:"admin"`
}

func decodeMember(r *http.Request, needAddr bool) (*memberRequest, error) {
	var m memberRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, badRequest("body: %v", err)
	}
	if m.ID == "" {
		return nil, badRequest("id: required")
	}
	if needAddr && m.Raft == "" {
		return nil, badRequest("raft: required (host:port of the new node's Raft transport)")
	}
	return &m, nil
}

// clusterJoin adds a node (on the leader; forwarded there from a follower).
func (n *Node) clusterJoin(r *http.Request) (any, error) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	r.Body = io.NopCloser(bytes.NewReader(body))
	m, err := decodeMember(r, true)
	if err != nil {
		return nil, err
	}
	if err := n.repl.raft.Join(m.ID, m.Raft); errors.Is(err, cluster.ErrNotLeader) {
		return n.forward(r.Context(), "/api/v1/cluster/join", body)
	} else if err != nil {
		return nil, err
	}
	n.addPeer(cluster.Peer{ID: m.ID, Raft: m.Raft, Admin: m.Admin})
	return map[string]string{"joined": m.ID}, nil
}

func (n *Node) clusterRemove(r *http.Request) (any, error) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	r.Body = io.NopCloser(bytes.NewReader(body))
	m, err := decodeMember(r, false)
	if err != nil {
		return nil, err
	}
	if err := n.repl.raft.Remove(m.ID); errors.Is(err, cluster.ErrNotLeader) {
		return n.forward(r.Context(), "/api/v1/cluster/remove", body)
	} else if err != nil {
		return nil, err
	}
	return map[string]string{"removed": m.ID}, nil
}

func (n *Node) clusterTransfer(r *http.Request) (any, error) {
	if err := n.repl.raft.TransferLeadership(); errors.Is(err, cluster.ErrNotLeader) {
		return n.forward(r.Context(), "/api/v1/cluster/transfer-leadership", nil)
	} else if err != nil {
		return nil, err
	}
	id, _ := n.repl.raft.Leader()
	return map[string]string{"leader": id}, nil
}

// clusterApply applies command bytes a follower forwarded (only on the leader).
func (n *Node) clusterApply(r *http.Request) (any, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		return nil, badRequest("body: %v", err)
	}
	cmd, err := store.UnmarshalCommand(b)
	if err != nil {
		return nil, badRequest("body: %v", err)
	}
	res, err := n.repl.raft.Apply(b)
	if err != nil {
		return nil, err
	}
	ar, _ := res.(store.ApplyResult)
	if ar.Err != nil {
		return nil, ar.Err
	}
	return applyAnswer{Added: ar.Added, Removed: ar.Removed, Type: cmd.Type.String()}, nil
}

type applyAnswer struct {
	Added   int    `json:"added"`
	Removed int    `json:"removed"`
	Type    string `json:"type"`
}

// propose applies cmd through Raft: here if this node leads, else on the leader. While
// leadership moves (an election, a leader stepping down under load) it tries again until
// cluster.apply_timeout: every command is idempotent (an upsert or a removal by key), so one that
// committed before its answer was lost does no harm when applied twice.
func (n *Node) propose(cmd *store.Command) (store.ApplyResult, error) {
	ar, _, err := n.proposeRetried(cmd)
	return ar, err
}

// proposeRetried is propose that also says whether cmd was proposed more than once: then its
// ApplyResult may count as already present what an earlier attempt added.
func (n *Node) proposeRetried(cmd *store.Command) (store.ApplyResult, bool, error) {
	if err := n.supported(cmd.Type); err != nil {
		return store.ApplyResult{}, false, err
	}
	b := cmd.Marshal()
	deadline := time.Now().Add(time.Duration(n.cfg.Cluster.ApplyTimeout))
	for attempt := 0; ; attempt++ {
		ar, err := n.proposeOnce(b)
		if err == nil || !leadershipMoved(err) || time.Now().After(deadline) {
			return ar, attempt > 0, err
		}
		n.retried.Inc()
		select {
		case <-time.After(20 * time.Millisecond): // let the election settle before trying again
		case <-n.repl.stop:
			return ar, attempt > 0, err
		}
	}
}

// leadershipMoved reports errors that a retry on the (new) leader may cure.
func leadershipMoved(err error) bool {
	var he *httpError
	return errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrNoLeader) ||
		errors.As(err, &he) && he.code == http.StatusServiceUnavailable
}

func (n *Node) proposeOnce(b []byte) (store.ApplyResult, error) {
	res, err := n.repl.raft.Apply(b)
	if err == nil {
		ar, _ := res.(store.ApplyResult)
		return ar, ar.Err
	}
	if !errors.Is(err, cluster.ErrNotLeader) {
		return store.ApplyResult{}, err
	}
	out, err := n.forward(context.Background(), "/api/v1/cluster/apply", b)
	if err != nil {
		return store.ApplyResult{}, err
	}
	a := out.(*applyAnswer)
	return store.ApplyResult{Added: a.Added, Removed: a.Removed}, nil
}

// waitLeader returns the leader's id, waiting (during an election) up to cluster.apply_timeout
// for one to be known.
func (n *Node) waitLeader(ctx context.Context) (string, error) {
	deadline := time.NewTimer(time.Duration(n.cfg.Cluster.ApplyTimeout))
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if id, _ := n.repl.raft.Leader(); id != "" {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-deadline.C:
			return "", cluster.ErrNoLeader
		case <-tick.C: // raft offers no "leader known" notification for followers
		}
	}
}

// forward posts body to the leader's admin API at path and returns its JSON answer.
func (n *Node) forward(ctx context.Context, path string, body []byte) (any, error) {
	id, err := n.waitLeader(ctx)
	if err != nil {
		return nil, err
	}
	if id == n.repl.raft.ID() {
		// Elected here since the caller tried: apply locally.
		if path == "/api/v1/cluster/apply" {
			res, err := n.repl.raft.Apply(body)
			if err != nil {
				return nil, err
			}
			ar, _ := res.(store.ApplyResult)
			if ar.Err != nil {
				return nil, ar.Err
			}
			return &applyAnswer{Added: ar.Added, Removed: ar.Removed}, nil
		}
		return nil, &httpError{http.StatusServiceUnavailable, "leadership changed during the request; try again"}
	}
	admin := n.adminOf(id)
	if admin == "" {
		return nil, &httpError{http.StatusServiceUnavailable, fmt.Sprintf("leader %s: its admin address is unknown here (add it to cluster.peers, or join it with --admin)", id)}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(n.cfg.Cluster.ApplyTimeout)+time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+admin+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if tok := string(n.cfg.Admin.Token); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, &httpError{http.StatusServiceUnavailable, fmt.Sprintf("forward to leader %s: %v", id, err)}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return nil, &httpError{resp.StatusCode, fmt.Sprintf("leader %s: %s", id, e.Error)}
	}
	if path == "/api/v1/cluster/apply" {
		var a applyAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		return &a, nil
	}
	var v any
	_ = json.Unmarshal(raw, &v)
	return v, nil
}

// adminOf returns a member's admin address: from cluster.peers and the joins this node handled,
// else from the member's replicated announcement.
func (n *Node) adminOf(id string) string {
	n.peersMu.Lock()
	for _, p := range n.repl.peers {
		if p.ID == id && p.Admin != "" {
			n.peersMu.Unlock()
			return p.Admin
		}
	}
	n.peersMu.Unlock()
	_, admin := parseAnnouncement(n.repl.fsm.NodeVersions()[id])
	return admin
}

func (n *Node) addPeer(p cluster.Peer) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	for i := range n.repl.peers {
		if n.repl.peers[i].ID == p.ID {
			n.repl.peers[i] = p
			return
		}
	}
	n.repl.peers = append(n.repl.peers, p)
}
