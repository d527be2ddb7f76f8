// Command smppctl is smppd's command-line client.
//
//	smppctl send --to 4915112345678 --text "hello"   send one message over SMPP, print ids and results
//	smppctl status                                    node status from the admin API
//	smppctl message ID                                which upstream id stands behind a message_id
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/linxGnu/gosmpp/data"
	"github.com/smppd/smppd/smpp"
)

const usage = `usage:
  smppctl send [flags] --to NUMBER --text TEXT   send a message through smppd over SMPP
  smppctl status [--admin ADDR]                  show node status
  smppctl message [--admin ADDR] MESSAGE_ID      show the upstream id behind a message_id
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
		err = get(os.Args[2:], "status", func(fs *flag.FlagSet) string { return "/api/v1/status" })
	case "message":
		err = get(os.Args[2:], "message", func(fs *flag.FlagSet) string {
			if fs.NArg() != 1 {
				fmt.Fprintln(os.Stderr, "usage: smppctl message [--admin ADDR] MESSAGE_ID")
				os.Exit(2)
			}
			return "/api/v1/messages/" + fs.Arg(0)
		})
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
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + *admin + path(fs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	os.Stdout.Write(body)
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
	receipt := fs.Bool("receipt", false, "request a delivery receipt (registered_delivery=1)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	_ = fs.Parse(args)
	if *to == "" || *text == "" {
		return errors.New("--to and --text are required")
	}
	parts, dc := encode(*text)
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
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d parts not accepted", failed, len(parts))
	}
	return nil
}

// encode returns the message's segments (without UDH) and its data_coding: GSM 7-bit unpacked
// (one octet per septet) when every character has a GSM code, else UCS2.
func encode(text string) ([][]byte, byte) {
	if b, err := data.GSM7BIT.Encode(text); err == nil && gsmOnly(text) {
		return split(b, 160, 153, func(b []byte, i int) bool { return i > 0 && b[i-1] == 0x1B }), 0x00
	}
	b, _ := data.UCS2.Encode(text)
	return split(b, 140, 134, func(b []byte, i int) bool {
		// do not cut a surrogate pair
		return i >= 2 && utf16.IsSurrogate(rune(uint16(b[i-2])<<8|uint16(b[i-1]))) && b[i-2] < 0xDC
	}), 0x08
}

// gsmOnly reports whether text survives a GSM 7-bit round trip.
func gsmOnly(text string) bool {
	b, err := data.GSM7BIT.Encode(text)
	if err != nil {
		return false
	}
	back, err := data.GSM7BIT.Decode(b)
	return err == nil && back == text
}

// split cuts b into parts of at most per octets, or returns it whole if it fits single; bad(b, i)
// reports that cutting before i would split a character.
func split(b []byte, single, per int, bad func([]byte, int) bool) [][]byte {
	if len(b) <= single {
		return [][]byte{b}
	}
	var parts [][]byte
	for len(b) > per {
		n := per
		for n > 0 && bad(b, n) {
			n--
		}
		if n%2 == 1 && per%2 == 0 { // UCS2: keep code units whole
			n--
		}
		parts = append(parts, b[:n])
		b = b[n:]
	}
	return append(parts, b)
}
