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

// TestOpensDataDirOfThisRelease: a data directory written by this release (kept under
// testdata/datadir/<version>; later releases keep theirs and this test for each) opens, and
// its state is there: a blocklist entry enforced, a receipt still waiting for its client.
// `go test ./node -run OpensDataDir -args -update-datadir` rewrites it.
func TestOpensDataDirOfThisRelease(t *testing.T) {
	golden := filepath.Join("testdata", "datadir", Version)
	sim := startSim(t, smpptest.Config{ReceiptDelay: time.Millisecond})
	if *updateDataDir {
		dir := t.TempDir()
		n := startNode(t, sim, func(c *config.Config) { c.Node.DataDir = dir })
		waitFor(t, "leader", 10*time.Second, n.Cluster().IsLeader)
		if code, out := adminPost(t, n, "/api/v1/blocklist", "", map[string]any{"numbers": []string{"4915112345678"}}); code != 200 {
			t.Fatalf("add: %d %v", code, out)
		}
		tx := dialESMEWith(t, n.SMPPAddr(), "demo", "demo", 10, func(cc *smpp.ClientConfig) { cc.BindType = smpp.Transmitter })
		sendWithReceipts(t, tx, 1, "kept")
		waitFor(t, "receipt stored", 10*time.Second, func() bool { return pending(n, "demo") == 1 })
		if err := n.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		_ = os.RemoveAll(golden)
		if err := os.CopyFS(golden, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		return
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(golden)); err != nil {
		t.Fatalf("%v (write it with -update-datadir)", err)
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
	ib := newInbox()
	receiverESME(t, n, "demo", smpp.Receiver, ib)
	if _, s := ib.next(t); !smpp.IsReceipt(&s) {
		t.Fatal("the stored receipt was not delivered")
	}
}
