package main

import (
	"flag"
	"fmt"
	"net/http"
	"strconv"
)

// nodeStatus is GET /api/v1/status.
type nodeStatus struct {
	NodeID   int  `json:"node_id"`
	Ready    bool `json:"ready"`
	Sessions int  `json:"sessions"`
	Accounts []struct {
		SystemID  string `json:"system_id"`
		Binds     int    `json:"binds"`
		Receivers int    `json:"receivers"`
		Pending   int    `json:"outbox_pending"`
		Inflight  int    `json:"outbox_inflight"`
	} `json:"accounts"`
	Upstreams []struct {
		Name     string `json:"name"`
		BindsUp  int    `json:"binds_up"`
		Binds    int    `json:"binds"`
		InUse    int    `json:"window_in_use"`
		InDoubt  uint64 `json:"in_doubt"`
		Connects uint64 `json:"connects"`
	} `json:"upstreams"`
	Governor *struct {
		Window   string  `json:"window"`
		WarnPPM  float64 `json:"warn_ppm"`
		LimitPPM float64 `json:"limit_ppm"`
		Rows     []struct {
			Level      string  `json:"level"`
			Account    string  `json:"account"`
			Channel    string  `json:"channel"`
			Sent       uint64  `json:"sent"`
			Complaints int     `json:"complaints"`
			PPM        float64 `json:"ppm"`
			State      string  `json:"state"`
			Refusing   bool    `json:"refusing"`
		} `json:"rows"`
	} `json:"governor"`
}

// status prints a node's status: sessions, accounts, upstreams and complaint rates.
func status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ExitOnError)
	a := adminFlags(fs)
	_ = fs.Parse(args)
	var st nodeStatus
	if err := a.do(http.MethodGet, "/api/v1/status", nil, "", &st); err != nil || a.out == "json" {
		return err
	}
	fmt.Printf("node %d: ready %v, %d sessions\n\n", st.NodeID, st.Ready, st.Sessions)
	var rows [][]string
	for _, ac := range st.Accounts {
		rows = append(rows, []string{ac.SystemID, strconv.Itoa(ac.Binds), strconv.Itoa(ac.Receivers), strconv.Itoa(ac.Pending), strconv.Itoa(ac.Inflight)})
	}
	table("ACCOUNT\tBINDS\tRECEIVERS\tOUTBOX PENDING\tOUTBOX IN FLIGHT", rows)
	fmt.Println()
	rows = rows[:0]
	for _, u := range st.Upstreams {
		rows = append(rows, []string{u.Name, fmt.Sprintf("%d/%d", u.BindsUp, u.Binds), strconv.Itoa(u.InUse),
			strconv.FormatUint(u.InDoubt, 10), strconv.FormatUint(u.Connects, 10)})
	}
	table("UPSTREAM\tBINDS UP\tWINDOW IN USE\tIN DOUBT\tCONNECTS", rows)
	g := st.Governor
	if g == nil {
		return nil
	}
	fmt.Printf("\ncomplaint rates over %s (warn at %g ppm, limit %g ppm):\n", g.Window, g.WarnPPM, g.LimitPPM)
	if len(g.Rows) == 0 {
		fmt.Println("nothing sent and no complaints in the window")
		return nil
	}
	rows = rows[:0]
	for _, r := range g.Rows {
		state := r.State
		if r.Refusing {
			state += " (refusing non-OTP)"
		}
		rows = append(rows, []string{r.Level, orAll(r.Account), orAll(r.Channel), strconv.FormatUint(r.Sent, 10),
			strconv.Itoa(r.Complaints), strconv.FormatFloat(r.PPM, 'f', 2, 64), state})
	}
	table("LEVEL\tACCOUNT\tUPSTREAM\tSENT\tCOMPLAINTS\tPPM\tSTATE", rows)
	return nil
}
