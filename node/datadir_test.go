package node

import (
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smppd/smppd/config"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/smpp/smpptest"
	"github.com/smppd/smppd/store"
)

var updateDataDir = flag.Bool("update-datadir", false, "rewrite testdata/datadir/"+Version)

// TestOpensDataDirOfThisRelease: the data directory every release wrote (kept under
// testdata/datadir/<version>, one per release) opens with this one, and its state is there: a
// blocklist entry enforced, a receipt still waiting for its client, and from 0.5.0 on the
// governor's replicated sent counts.
// `go test ./node -run OpensDataDir -args -update-datadir` writes this release's.
func TestOpensDataDirOfThisRelease(t *testing.T) {
	if *updateDataDir {
		writeDataDir(t, filepath.Join("testdata", "datadir", Version))
		return
	}
	versions, err := os.ReadDir(filepath.Join("testdata", "datadir"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range versions {
		found = found || v.Name() == Version
		t.Run(v.Name(), func(t *testing.T) { openDataDir(t, v.Name()) })
	}
	if !found {
		t.Fatalf("no testdata/datadir/%s: write it with -update-datadir", Version)
	}
}

func writeDataDir(t *testing.T, golden string) {
	sim := startSim(t, smpptest.Config{ReceiptDelay: time.Millisecond})
	dir := t.TempDir()
	n := startNode(t, sim, func(c *config.Config) {
		c.Node.DataDir, c.Governor.ReportInterval = dir, config.Duration(50*time.Millisecond)
	})
	waitFor(t, "leader", 10*time.Second, n.Cluster().IsLeader)
	if code, out := adminPost(t, n, "/api/v1/blocklist", "", map[string]any{"numbers": []string{"4915112345678"}}); code != 200 {
		t.Fatalf("add: %d %v", code, out)
	}
	tx := dialESMEWith(t, n.SMPPAddr(), "demo", "demo", 10, func(cc *smpp.ClientConfig) { cc.BindType = smpp.Transmitter })
	sendWithReceipts(t, tx, 1, "kept")
	waitFor(t, "receipt stored", 10*time.Second, func() bool { return pending(n, "demo") == 1 })
	waitFor(t, "sent count replicated", 10*time.Second, func() bool { return sentCount(t, n) == 1 })
	if err := n.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(golden)
	if err := os.CopyFS(golden, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
}

func openDataDir(t *testing.T, version string) {
	sim := startSim(t, smpptest.Config{ReceiptDelay: time.Millisecond})
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "datadir", version))); err != nil {
		t.Fatal(err)
	}
	// CopyFS keeps read-only modes; Pebble needs to write.
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, _ error) error { return os.Chmod(p, 0o750) })
	n := startNode(t, sim, func(c *config.Config) { c.Node.DataDir = dir })
	waitFor(t, "leader", 10*time.Second, n.Cluster().IsLeader)
	if !n.Index().Check(4915112345678, "demo", "shop").Has(store.KindBlock) {
		t.Fatal("blocklist entry of the stored release not enforced")
	}
	if p := pending(n, "demo"); p != 1 {
		t.Fatalf("%d receipts pending from the stored release, want 1", p)
	}
	if !olderRelease(version, "0.5.0") {
		if sent := sentCount(t, n); sent != 1 {
			t.Fatalf("replicated sent count of demo/sim: %d, want 1", sent)
		}
	}
	ib := newInbox()
	receiverESME(t, n, "demo", smpp.Receiver, ib)
	if _, s := ib.next(t); !smpp.IsReceipt(&s) {
		t.Fatal("the stored receipt was not delivered")
	}
}

// sentCount sums the replicated sent counts of demo/sim.
func sentCount(t *testing.T, n *Node) uint64 {
	var sent uint64
	if err := n.FSM().SentCounts(0, func(c store.SentCount, _ string) bool {
		if c.Account == "demo" && c.Channel == "sim" {
			sent += c.Sent
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return sent
}
