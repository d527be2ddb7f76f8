package node

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/router"
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
	mux.HandleFunc("GET /api/v1/messages/{id}", n.message)
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
	SystemID string `json:"system_id"`
	Binds    int    `json:"binds"`
}

func (n *Node) status(w http.ResponseWriter, _ *http.Request) {
	st := struct {
		NodeID    int              `json:"node_id"`
		Ready     bool             `json:"ready"`
		Sessions  int              `json:"sessions"`
		Accounts  []accountStatus  `json:"accounts"`
		Upstreams []upstreamStatus `json:"upstreams"`
	}{NodeID: n.cfg.Node.ID, Ready: n.Ready(), Sessions: n.server.SessionCount()}
	for _, a := range n.cfg.Accounts {
		st.Accounts = append(st.Accounts, accountStatus{a.SystemID, n.server.Account(a.SystemID).Binds()})
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
