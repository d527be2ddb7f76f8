package node

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"

	"github.com/VictoriaMetrics/metrics"
	"strconv"
	"strings"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/router/deliver"
	"github.com/smppd/smppd/router/governor"
	"github.com/smppd/smppd/smpp"
)

// adminHandler serves /metrics, /healthz, /readyz, /debug/pprof/ and the read-only API.
func (n *Node) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		n.metrics.WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case n.draining.Load():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case !n.Ready():
			http.Error(w, "no upstream bind is up", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /api/v1/status", n.status)
	n.protectRoutes(mux)
	mux.HandleFunc("GET /api/v1/messages/{id}", n.message)
	mux.HandleFunc("POST /api/v1/explain", n.explain)
	mux.HandleFunc("POST /api/v1/reload", func(w http.ResponseWriter, _ *http.Request) {
		if err := n.Reload(); err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
	})
	return mux
}

type upstreamStatus struct {
	Name      string `json:"name"`
	BindsUp   int    `json:"binds_up"`
	Binds     int    `json:"binds"`
	InUse     int    `json:"window_in_use"`
	InDoubt   uint64 `json:"in_doubt"`
	Reconnect uint64 `json:"connects"`
}

type accountStatus struct {
	SystemID  string `json:"system_id"`
	Binds     int    `json:"binds"`
	Receivers int    `json:"receivers"`      // binds that take receipts and MO
	Pending   int    `json:"outbox_pending"` // receipts and MO stored for it, not yet acknowledged
	Inflight  int    `json:"outbox_inflight"`
}

func (n *Node) status(w http.ResponseWriter, _ *http.Request) {
	st := struct {
		NodeID    int              `json:"node_id"`
		Ready     bool             `json:"ready"`
		Sessions  int              `json:"sessions"`
		Accounts  []accountStatus  `json:"accounts"`
		Upstreams []upstreamStatus `json:"upstreams"`
		Governor  *governor.Report `json:"governor,omitempty"` // complaint rates (governor.enabled)
	}{NodeID: n.cfg.Node.ID, Ready: n.Ready(), Sessions: n.server.SessionCount()}
	if n.repl.gov != nil {
		r := n.repl.gov.Report()
		st.Governor = &r
	}
	ob := map[string]deliver.AccountStatus{}
	for _, a := range n.deliver.Status() {
		ob[a.SystemID] = a
	}
	for _, a := range n.cfg.Accounts {
		o := ob[a.SystemID]
		st.Accounts = append(st.Accounts, accountStatus{a.SystemID, n.server.Account(a.SystemID).Binds(), o.Receivers, o.Pending, o.Inflight})
		delete(ob, a.SystemID)
	}
	for _, o := range ob { // accounts removed from the config with items still stored
		st.Accounts = append(st.Accounts, accountStatus{o.SystemID, 0, o.Receivers, o.Pending, o.Inflight})
	}
	k := 0
	for _, p := range n.pools {
		u := upstreamStatus{Name: p.Name(), Binds: len(p.Binds()), InUse: p.InUse()}
		for range p.Binds() {
			c := n.clients[k]
			k++
			if c.Bound() {
				u.BindsUp++
			}
			u.InDoubt += c.InDoubt.Load()
			u.Reconnect += c.Connects.Load()
		}
		st.Upstreams = append(st.Upstreams, u)
	}
	writeJSON(w, http.StatusOK, st)
}

func (n *Node) message(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := router.ParseID(raw)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "id: " + err.Error()})
		return
	}
	up, upID, ok := n.idmap.Get(id)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "id: no mapping for " + raw + " (unknown, or expired)"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"message_id": raw, "node_id": router.IDNode(id),
		"issued_at": router.IDTime(id), "upstream": up, "upstream_message_id": upID})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// explainRequest is the body of POST /api/v1/explain.
type explainRequest struct {
	Account string `json:"account"`
	To      string `json:"to"`
	From    string `json:"from"`
	Text    string `json:"text"`
}

// explain runs the pipeline as a dry run for a message the account could send.
func (n *Node) explain(w http.ResponseWriter, r *http.Request) {
	var req explainRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	acct := n.server.Account(req.Account)
	var bad string
	switch {
	case req.Account == "":
		bad = "account: required"
	case acct == nil:
		bad = "account: no account with system_id " + strconv.Quote(req.Account)
	case req.To == "":
		bad = "to: required"
	case len(req.To) > 20:
		bad = "to: at most 20 characters"
	case req.Text == "":
		bad = "text: required"
	case len(req.From) > 20:
		bad = "from: at most 20 characters"
	}
	if bad != "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": bad})
		return
	}
	parts, dc := smpp.EncodeText(req.Text)
	// "+49…" is sent as TON international; anything else as TON unknown, as clients send
	// national or 00-prefixed numbers, so number cleaning sees what it would see on the wire.
	sub := smpp.Submit{SrcTON: 5, SrcAddr: []byte(req.From), DstNPI: 1,
		DstAddr: []byte(strings.TrimPrefix(req.To, "+")), DataCoding: dc}
	if strings.HasPrefix(req.To, "+") {
		sub.DstTON = 1
	}
	if len(parts) == 1 {
		sub.ShortMessage = parts[0]
	} else { // the whole text, as the content stages judge reassembled messages
		sub.TLVs = smpp.AppendTLV(nil, smpp.TagMessagePayload, bytes.Join(parts, nil))
	}
	ex, err := n.router.Explain(acct, smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 1, &sub))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "message: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ex)
}
