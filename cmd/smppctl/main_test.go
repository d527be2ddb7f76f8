package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/node"
	"github.com/smppd/smppd/smpp/smpptest"
)

// startNode runs a one-node smppd in front of the simulator, as `make run` does.
func startNode(t *testing.T) *node.Node {
	t.Helper()
	sim, err := smpptest.Start(smpptest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	cfg := config.Default()
	cfg.Node.DataDir = t.TempDir()
	cfg.Listen.SMPP, cfg.Listen.Admin = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Cluster.RaftAddr = smpptest.FreeAddr(t)
	cfg.Upstreams[0].Address = sim.Addr()
	cfg.Governor.ReportInterval = config.Duration(50 * time.Millisecond)
	n, err := node.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	smpptest.WaitFor(t, "leader and upstream", 10*time.Second, func() bool { return n.Cluster().IsLeader() && n.Ready() })
	return n
}

// run calls one smppctl command and returns what it printed on stdout.
func run(t *testing.T, cmd func([]string) error, args ...string) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	out := make(chan string)
	go func() { b, _ := io.ReadAll(r); out <- string(b) }()
	err = cmd(args)
	os.Stdout = stdout
	w.Close()
	return <-out, err
}

// TestCommands drives smppctl against a running node: blocklist add and check, a send the
// blocklist refuses, a complaint that puts the account at the governor's limit, and status in
// both table and JSON form.
func TestCommands(t *testing.T) {
	n := startNode(t)
	admin, smppAddr := n.AdminAddr(), n.SMPPAddr()

	if out, err := run(t, blocklist, "add", "+4915112345678", "--addr", admin, "--reason", "by phone"); err != nil || out != "1 added (1 given)\n" {
		t.Fatalf("blocklist add: %q %v", out, err)
	}
	if out, err := run(t, blocklist, "check", "4915112345678", "--addr", admin); err != nil || !strings.Contains(out, "REFUSED") || !strings.Contains(out, "by phone") {
		t.Fatalf("blocklist check: %q %v", out, err)
	}
	out, err := run(t, send, "--addr", smppAddr, "--to", "4915112345678", "--text", "hello")
	if err == nil || !strings.Contains(out, "refused: ESME_RSUBMITFAIL (0x00000045)") {
		t.Fatalf("send to a blocked number: %q %v, want refused 0x45 and an error", out, err)
	}
	if out, err := run(t, send, "--addr", smppAddr, "--to", "4915112345679", "--text", "hello"); err != nil || !strings.Contains(out, "status=ESME_ROK") {
		t.Fatalf("send: %q %v", out, err)
	}
	// A complaint about demo's traffic through sim: 1 in 1 message sent, far past 2 ppm.
	if out, err := run(t, complaint, "add", "4915100000001", "--account", "demo", "--upstream", "sim", "--addr", admin); err != nil || !strings.HasPrefix(out, "1 added") {
		t.Fatalf("complaint add: %q %v", out, err)
	}
	smpptest.WaitFor(t, "the governor at the limit", 10*time.Second, func() bool {
		out, err := run(t, status, "--addr", admin)
		return err == nil && strings.Contains(out, "limit (refusing non-OTP)")
	})
	out, err = run(t, status, "--addr", admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ready true", "demo", "sim       2/2", "LEVEL    ACCOUNT  UPSTREAM  SENT  COMPLAINTS  PPM", "pair     demo     sim       1     1           1000000.00  limit (refusing non-OTP)"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, status, "--addr", admin, "-o", "json")
	var st nodeStatus
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Governor == nil || len(st.Governor.Rows) != 3 {
		t.Fatalf("status -o json: %v %q", err, out)
	}
	out, err = run(t, clusterCmd, "status", "--addr", admin)
	if err != nil || !strings.Contains(out, "Leader") || !strings.Contains(out, "VERSION  APPLIED  LAG") || strings.Contains(out, "unreachable") {
		t.Fatalf("cluster status: %q %v", out, err)
	}
}
