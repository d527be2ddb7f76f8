package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// admin is the flags every admin command shares: which node, the token, the output format.
type admin struct {
	addr, token, out string
}

func adminFlags(fs *flag.FlagSet) *admin {
	a := &admin{}
	fs.StringVar(&a.addr, "addr", "127.0.0.1:8775", "admin HTTP address of any node")
	fs.StringVar(&a.addr, "admin", "127.0.0.1:8775", "same as --addr")
	fs.StringVar(&a.token, "token", os.Getenv("SMPPD_TOKEN"), "bearer token for writes (default $SMPPD_TOKEN)")
	fs.StringVar(&a.out, "o", "table", "output: table or json")
	return a
}

// parseInterleaved parses flags that may come after positional arguments
// ("blocklist add +4915112345678 --addr host:port") and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) []string {
	var pos []string
	for {
		_ = fs.Parse(args)
		if fs.NArg() == 0 {
			return pos
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// do sends a request and decodes the JSON answer into out (nil: print it raw).
func (a *admin) do(method, path string, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequest(method, "http://"+a.addr+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	c := http.Client{Timeout: 10 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	if a.out == "json" || out == nil {
		os.Stdout.Write(raw)
		if len(raw) > 0 && raw[len(raw)-1] != '\n' {
			fmt.Println()
		}
		return nil
	}
	return json.Unmarshal(raw, out)
}

func (a *admin) postJSON(path string, v, out any) error {
	b, _ := json.Marshal(v)
	return a.do(http.MethodPost, path, bytes.NewReader(b), "application/json", out)
}

func table(header string, rows [][]string) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	w.Flush()
}

type entry struct {
	Number uint64 `json:"number"`
	Kind   int    `json:"kind"`
	Scope  struct {
		Account string `json:"account"`
		Sender  string `json:"sender"`
	} `json:"scope"`
	Reason   string `json:"reason"`
	Source   string `json:"source"`
	Upstream string `json:"upstream"`
	Created  int64  `json:"created"`
	Expires  int64  `json:"expires"`
}

var kindNames = map[int]string{1: "block", 2: "complaint", 3: "optout"}

func entryRows(es []entry) [][]string {
	var rows [][]string
	for _, e := range es {
		exp := "never"
		if e.Expires != 0 {
			exp = time.UnixMilli(e.Expires).UTC().Format(time.RFC3339)
		}
		rows = append(rows, []string{fmt.Sprintf("+%d", e.Number), kindNames[e.Kind], orAll(e.Scope.Account), orAll(e.Scope.Sender),
			e.Reason, e.Source, time.UnixMilli(e.Created).UTC().Format(time.RFC3339), exp})
	}
	return rows
}

func orAll(s string) string {
	if s == "" {
		return "*"
	}
	return s
}

const entryHeader = "NUMBER\tKIND\tACCOUNT\tSENDER\tREASON\tSOURCE\tCREATED\tEXPIRES"

// entryWrite handles "add"-style commands: numbers as arguments, scope and reason as flags.
func entryWrite(name, path string, args []string, withUpstream bool) error {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	a := adminFlags(fs)
	account := fs.String("account", "", "only this account's messages (default: all)")
	sender := fs.String("sender", "", "only messages from this sender (default: all)")
	reason := fs.String("reason", "", "why (kept with the entry)")
	ttl := fs.String("ttl", "", "expire after this long, e.g. 720h (default: never)")
	var upstream *string
	if withUpstream {
		upstream = fs.String("upstream", "", "the upstream (its name in the config) the complaint came through; counts toward its complaint rate")
	}
	nums := parseInterleaved(fs, args)
	if len(nums) == 0 {
		return fmt.Errorf("usage: smppctl %s [flags] NUMBER [NUMBER ...]", name)
	}
	body := map[string]any{"numbers": nums, "account": *account, "sender": *sender, "reason": *reason, "ttl": *ttl}
	if upstream != nil {
		body["upstream"] = *upstream
	}
	var out map[string]int
	if err := a.postJSON(path, body, &out); err != nil {
		return err
	}
	if a.out != "json" {
		fmt.Printf("%d added (%d given)\n", out["added"], len(nums))
	}
	return nil
}

func entryRemove(name, path string, args []string, complaints bool) error {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	a := adminFlags(fs)
	account := fs.String("account", "", "the entry's account scope")
	sender := fs.String("sender", "", "the entry's sender scope")
	var withComplaints *bool
	if complaints {
		withComplaints = fs.Bool("complaints", false, "also forget the numbers' complaint records")
	}
	nums := parseInterleaved(fs, args)
	if len(nums) == 0 {
		return fmt.Errorf("usage: smppctl %s [flags] NUMBER [NUMBER ...]", name)
	}
	q := url.Values{"number": nums}
	if *account != "" {
		q.Set("account", *account)
	}
	if *sender != "" {
		q.Set("sender", *sender)
	}
	if withComplaints != nil && *withComplaints {
		q.Set("complaints", "true")
	}
	var out map[string]int
	if err := a.do(http.MethodDelete, path+"?"+q.Encode(), nil, "", &out); err != nil {
		return err
	}
	if a.out != "json" {
		fmt.Printf("%d removed\n", out["removed"])
	}
	return nil
}

func entryList(name, path string, args []string) error {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	a := adminFlags(fs)
	after := fs.String("after", "", "list numbers after this one (paging)")
	limit := fs.Int("limit", 100, "at most this many (1..10000)")
	_ = fs.Parse(args)
	q := url.Values{"limit": {fmt.Sprint(*limit)}}
	if *after != "" {
		q.Set("after", *after)
	}
	var out struct {
		Entries []entry `json:"entries"`
	}
	if err := a.do(http.MethodGet, path+"?"+q.Encode(), nil, "", &out); err != nil {
		return err
	}
	if a.out != "json" {
		table(entryHeader, entryRows(out.Entries))
	}
	return nil
}

func blocklist(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: smppctl blocklist add|remove|check|list|import|export")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "add":
		return entryWrite("blocklist add", "/api/v1/blocklist", args, false)
	case "remove":
		return entryRemove("blocklist remove", "/api/v1/blocklist", args, true)
	case "list":
		return entryList("blocklist list", "/api/v1/blocklist", args)
	case "check":
		fs := flag.NewFlagSet("blocklist check", flag.ExitOnError)
		a := adminFlags(fs)
		account := fs.String("account", "", "as a message of this account")
		sender := fs.String("sender", "", "as a message from this sender")
		pos := parseInterleaved(fs, args)
		if len(pos) != 1 {
			return errors.New("usage: smppctl blocklist check [--account A] [--sender S] NUMBER")
		}
		q := url.Values{}
		if *account != "" {
			q.Set("account", *account)
		}
		if *sender != "" {
			q.Set("sender", *sender)
		}
		var out struct {
			Refused bool    `json:"refused"`
			Entries []entry `json:"entries"`
			Applied uint64  `json:"applied_index"`
		}
		if err := a.do(http.MethodGet, "/api/v1/numbers/"+url.PathEscape(pos[0])+"?"+q.Encode(), nil, "", &out); err != nil {
			return err
		}
		if a.out != "json" {
			verdict := "allowed"
			if out.Refused {
				verdict = "REFUSED"
			}
			fmt.Printf("%s: %s on this node (state at index %d)\n", pos[0], verdict, out.Applied)
			if len(out.Entries) > 0 {
				table(entryHeader, entryRows(out.Entries))
			}
		}
		return nil
	case "import":
		fs := flag.NewFlagSet("blocklist import", flag.ExitOnError)
		a := adminFlags(fs)
		ttl := fs.String("ttl", "", "expire the imported entries after this long (default: never)")
		pos := parseInterleaved(fs, args)
		if len(pos) != 1 {
			return errors.New("usage: smppctl blocklist import [--ttl D] FILE.csv   (lines: number[,account,sender,reason]; - = stdin)")
		}
		var in io.Reader = os.Stdin
		if pos[0] != "-" {
			f, err := os.Open(pos[0])
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		q := ""
		if *ttl != "" {
			q = "?ttl=" + url.QueryEscape(*ttl)
		}
		start := time.Now()
		var out map[string]int
		if err := a.do(http.MethodPost, "/api/v1/blocklist/import"+q, in, "text/csv", &out); err != nil {
			return err
		}
		if a.out != "json" {
			el := time.Since(start)
			fmt.Printf("%d added from %d lines in %s (%.0f numbers/s)\n", out["added"], out["lines"], el.Round(time.Millisecond),
				float64(out["lines"])/el.Seconds())
		}
		return nil
	case "export":
		fs := flag.NewFlagSet("blocklist export", flag.ExitOnError)
		a := adminFlags(fs)
		_ = fs.Parse(args)
		a.out = "json" // raw CSV
		return a.do(http.MethodGet, "/api/v1/blocklist/export", nil, "", nil)
	}
	return fmt.Errorf("unknown blocklist command %q: want add, remove, check, list, import or export", sub)
}

func complaint(args []string) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "list") {
		return errors.New("usage: smppctl complaint add [--account A] [--sender S] [--upstream U] [--reason R] NUMBER [NUMBER ...] | complaint list")
	}
	if args[0] == "list" {
		return entryList("complaint list", "/api/v1/complaints", args[1:])
	}
	return entryWrite("complaint add", "/api/v1/complaints", args[1:], true)
}

func optout(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: smppctl optout list|add|remove")
	}
	switch args[0] {
	case "list":
		return entryList("optout list", "/api/v1/optouts", args[1:])
	case "add":
		return entryWrite("optout add", "/api/v1/optouts", args[1:], false)
	case "remove":
		return entryRemove("optout remove", "/api/v1/optouts", args[1:], false)
	}
	return fmt.Errorf("unknown optout command %q: want list, add or remove", args[0])
}

func clusterCmd(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: smppctl cluster status|join|remove|transfer-leadership")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("cluster "+sub, flag.ExitOnError)
	a := adminFlags(fs)
	id := fs.String("id", "", "the node's Raft id (join, remove)")
	raftAddr := fs.String("raft", "", "join: the new node's Raft address host:port")
	adminAddr := fs.String("node-admin", "", "join: the new node's admin HTTP address (so writes can be forwarded to it when it leads)")
	_ = fs.Parse(args)
	switch sub {
	case "status":
		var out struct {
			Raft struct {
				ID           string `json:"id"`
				State        string `json:"state"`
				Leader       string `json:"leader"`
				Term         uint64 `json:"term"`
				LastIndex    uint64 `json:"last_index"`
				CommitIndex  uint64 `json:"commit_index"`
				AppliedIndex uint64 `json:"applied_index"`
				LastContact  string `json:"last_contact"`
				Members      []struct {
					ID       string `json:"id"`
					Raft     string `json:"raft"`
					Suffrage string `json:"suffrage"`
					Leader   bool   `json:"leader"`
				} `json:"members"`
			} `json:"raft"`
			Entries  map[string]int    `json:"entries"`
			Versions map[string]string `json:"versions"`
			Stale    bool              `json:"stale"`
			Members  []struct {
				ID      string `json:"id"`
				State   string `json:"state"`
				Applied uint64 `json:"applied_index"`
				Lag     uint64 `json:"lag"`
				Error   string `json:"error"`
			} `json:"members"`
		}
		if err := a.do(http.MethodGet, "/api/v1/cluster", nil, "", &out); err != nil {
			return err
		}
		if a.out == "json" {
			return nil
		}
		r := out.Raft
		fmt.Printf("node %s: %s, leader %s, term %d, log %d, commit %d, applied %d, last contact %s, stale %v\n",
			r.ID, r.State, orNone(r.Leader), r.Term, r.LastIndex, r.CommitIndex, r.AppliedIndex, r.LastContact, out.Stale)
		fmt.Printf("entries: block %d, complaint %d, optout %d\n", out.Entries["block"], out.Entries["complaint"], out.Entries["optout"])
		var rows [][]string
		for _, m := range r.Members {
			role := "follower"
			if m.Leader {
				role = "leader"
			}
			applied, lag := "?", "unreachable"
			for _, p := range out.Members {
				if p.ID == m.ID && p.Error == "" {
					applied, lag = strconv.FormatUint(p.Applied, 10), strconv.FormatUint(p.Lag, 10)
				}
			}
			rows = append(rows, []string{m.ID, m.Raft, m.Suffrage, role, orNone(out.Versions[m.ID]), applied, lag})
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i][0] < rows[j][0] })
		table("ID\tRAFT\tSUFFRAGE\tROLE\tVERSION\tAPPLIED\tLAG", rows)
		return nil
	case "join":
		if *id == "" || *raftAddr == "" {
			return errors.New("usage: smppctl cluster join --id ID --raft HOST:PORT [--node-admin HOST:PORT] [--addr NODE_ADMIN]")
		}
		return a.postJSON("/api/v1/cluster/join", map[string]string{"id": *id, "raft": *raftAddr, "admin": *adminAddr}, nil)
	case "remove":
		if *id == "" {
			return errors.New("usage: smppctl cluster remove --id ID")
		}
		return a.postJSON("/api/v1/cluster/remove", map[string]string{"id": *id}, nil)
	case "transfer-leadership":
		return a.postJSON("/api/v1/cluster/transfer-leadership", map[string]string{}, nil)
	}
	return fmt.Errorf("unknown cluster command %q: want status, join, remove or transfer-leadership", sub)
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
