// Command smppctl is smppd's command-line client.
//
//	smppctl send --to 4915112345678 --text "hello"   send one message over SMPP, print ids and results
//	smppctl status                                    node status from the admin API
//	smppctl message ID                                which upstream id stands behind a message_id
//	smppctl explain --account A --to N --text T       dry-run the pipeline and print each decision
//	smppctl blocklist add|remove|check|list|import|export, complaint add|list, optout list|add|remove
//	smppctl cluster status|join|remove|transfer-leadership
//
// Admin commands talk to a node's admin API (--addr, default 127.0.0.1:8775; any node: writes are
// forwarded to the leader), print tables (-o json for scripts), and send --token (default
// $SMPPD_TOKEN) as the bearer token writes need.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/smppd/smppd/smpp"
)

const usage = `usage:
  smppctl send [flags] --to NUMBER --text TEXT   send a message through smppd over SMPP
  smppctl status [--addr ADDR] [-o json]         node status: sessions, accounts, upstreams, complaint rates
  smppctl message [--admin ADDR] MESSAGE_ID      show the upstream id behind a message_id
  smppctl explain --account A --to N --text T    dry-run the pipeline: each stage's decision
  smppctl blocklist add [--account A] [--sender S] [--reason R] [--ttl D] NUMBER...
  smppctl blocklist remove|check|list|import FILE.csv|export
  smppctl complaint add [--upstream U] [--reason R] NUMBER... | complaint list
  smppctl optout list|add|remove
  smppctl cluster status|join --id ID --raft ADDR --node-admin ADDR|remove --id ID|transfer-leadership
Admin commands take --addr NODE_ADMIN (default 127.0.0.1:8775), --token (default $SMPPD_TOKEN), -o json.
Run "smppctl CMD -h" for a command's flags.`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "send":
		err = send(os.Args[2:])
	case "status":
		err = status(os.Args[2:])
	case "message":
		err = get(os.Args[2:], "message", func(fs *flag.FlagSet) string {
			if fs.NArg() != 1 {
				fmt.Fprintln(os.Stderr, "usage: smppctl message [--admin ADDR] MESSAGE_ID")
				os.Exit(2)
			}
			return "/api/v1/messages/" + fs.Arg(0)
		})
	case "explain":
		err = explain(os.Args[2:])
	case "blocklist":
		err = blocklist(os.Args[2:])
	case "complaint":
		err = complaint(os.Args[2:])
	case "optout":
		err = optout(os.Args[2:])
	case "cluster":
		err = clusterCmd(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Println(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n%s\n", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "smppctl:", err)
		os.Exit(1)
	}
}

func get(args []string, name string, path func(*flag.FlagSet) string) error {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	admin := fs.String("admin", "127.0.0.1:8775", "smppd admin HTTP address")
	_ = fs.Parse(args)
	return call(http.MethodGet, "http://"+*admin+path(fs), nil)
}

// call sends one admin API request, prints the answer and fails on a status other than 200.
func call(method, url string, body []byte) error {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	os.Stdout.Write(out)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// result collects one submit's answer.
type result struct {
	status smpp.Status
	id     string
	err    error
}

type waiter chan result

func (w waiter) SubmitDone(_ *smpp.Batch, st smpp.Status, id []byte, err error) {
	w <- result{st, string(id), err}
}

func send(args []string) error {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:2775", "smppd SMPP address")
	sysID := fs.String("system-id", "demo", "account system_id")
	pw := fs.String("password", "demo", "account password")
	to := fs.String("to", "", "destination number (required)")
	from := fs.String("from", "smppd", "source address")
	text := fs.String("text", "", "message text (GSM 7-bit when possible, else UCS2; split when long)")
	receipt := fs.Bool("receipt", false, "request a delivery receipt (registered_delivery=1) and wait for it")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	_ = fs.Parse(args)
	if *to == "" || *text == "" {
		return errors.New("--to and --text are required")
	}
	parts, dc := smpp.EncodeText(*text)
	up := make(chan struct{}, 1)
	cc := smpp.DefaultClientConfig()
	cc.Name, cc.Addr, cc.SystemID, cc.Password = "smppd", *addr, *sysID, *pw
	cc.Window, cc.ResponseTimeout = 1, *timeout
	cc.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cc.OnFree = func() {
		select {
		case up <- struct{}{}:
		default:
		}
	}
	receipts := make(chan string, 64)
	cc.OnDeliver = func(c *smpp.Client, ref smpp.DeliverRef, pdu []byte) {
		var s smpp.Submit
		if smpp.ParseSubmit(pdu[smpp.HeaderLen:], &s) == nil {
			if rc, err := smpp.ParseReceipt(&s); err == nil && smpp.IsReceipt(&s) {
				fmt.Printf("receipt: message_id=%s stat=%s err=%s\n", rc.ID, rc.Stat, rc.Err)
				select {
				case receipts <- string(rc.ID):
				default:
				}
			} else {
				fmt.Printf("deliver_sm from %s to %s: %q\n", s.SrcAddr, s.DstAddr, s.Payload())
			}
		}
		_ = c.RespondDeliver(ref, smpp.StatusOK)
	}
	c := smpp.NewClient(cc)
	c.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	}()
	deadline := time.After(*timeout)
	for !c.Bound() {
		select {
		case <-up:
		case <-deadline:
			return fmt.Errorf("could not bind to %s as %q within %s (see the log above)", *addr, *sysID, *timeout)
		}
	}
	ton, npi := byte(1), byte(1)
	if strings.TrimLeft(*to, "+0123456789") != "" {
		return fmt.Errorf("--to %q: digits only (optionally a leading +)", *to)
	}
	srcTON := byte(5) // alphanumeric
	if strings.TrimLeft(*from, "+0123456789") == "" {
		srcTON = 1
	}
	ref := byte(time.Now().UnixNano())
	failed := 0
	want := map[string]bool{}
	for i, p := range parts {
		s := smpp.Submit{SrcTON: srcTON, SrcNPI: 0, SrcAddr: []byte(strings.TrimPrefix(*from, "+")), DstTON: ton, DstNPI: npi,
			DstAddr: []byte(strings.TrimPrefix(*to, "+")), DataCoding: dc, ShortMessage: p}
		if *receipt {
			s.RegisteredDelivery = 1
		}
		if len(parts) > 1 {
			s.ESMClass = 0x40
			s.ShortMessage = append([]byte{5, 0, 3, ref, byte(len(parts)), byte(i + 1)}, p...)
		}
		w := make(waiter, 1)
		for {
			err := c.Submit(smpp.AppendSubmitPDU(nil, smpp.SubmitSM, 0, &s), w)
			if err == nil {
				break
			}
			if !c.Bound() {
				return fmt.Errorf("part %d: %w", i+1, err)
			}
			<-up // window of 1: wait for the previous answer to clear
		}
		var r result
		select {
		case r = <-w:
		case <-deadline:
			return fmt.Errorf("part %d: no answer within %s", i+1, *timeout)
		}
		switch {
		case r.err != nil:
			failed++
			fmt.Printf("part %d/%d: outcome unknown: %v\n", i+1, len(parts), r.err)
		case r.status != smpp.StatusOK:
			failed++
			fmt.Printf("part %d/%d: refused: %s (0x%08X)\n", i+1, len(parts), r.status, uint32(r.status))
		default:
			fmt.Printf("part %d/%d: message_id=%s status=ESME_ROK\n", i+1, len(parts), r.id)
			want[r.id] = true
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d parts not accepted", failed, len(parts))
	}
	for *receipt && len(want) > 0 {
		select {
		case id := <-receipts:
			delete(want, id)
		case <-deadline:
			return fmt.Errorf("%d receipts did not arrive within %s", len(want), *timeout)
		}
	}
	return nil
}

func explain(args []string) error {
	fs := flag.NewFlagSet("explain", flag.ExitOnError)
	admin := fs.String("admin", "127.0.0.1:8775", "smppd admin HTTP address")
	acct := fs.String("account", "demo", "account system_id")
	to := fs.String("to", "", "destination number (required)")
	from := fs.String("from", "smppd", "source address")
	text := fs.String("text", "", "message text (required)")
	_ = fs.Parse(args)
	body, _ := json.Marshal(map[string]string{"account": *acct, "to": *to, "from": *from, "text": *text})
	return call(http.MethodPost, "http://"+*admin+"/api/v1/explain", body)
}
