package protect

import (
	"testing"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
	"github.com/smppd/smppd/store"
)

// newStage returns the stage over a real store.Index holding entries.
func newStage(t *testing.T, stale *bool, entries ...store.Entry) *Stage {
	t.Helper()
	x := store.NewIndex()
	t.Cleanup(x.Close)
	x.Update(entries, nil)
	cfg := Config{Status: 0x45, Check: func(num uint64, account string, sender []byte) uint8 {
		return uint8(x.Check(num, account, string(sender)))
	}}
	if stale != nil {
		cfg.Stale, cfg.StaleStatus = func() bool { return *stale }, 0x58
	}
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func msg(account, src, dst string, lane router.Lane) *router.Message {
	return &router.Message{Account: &smpp.Account{SystemID: account}, Lane: lane,
		Submit: smpp.Submit{SrcAddr: []byte(src), DstAddr: []byte(dst)}}
}

func entry(num uint64, k store.Kind, account, sender string) store.Entry {
	return store.Entry{Key: store.Key{Number: num, Kind: k, Scope: store.Scope{Account: account, Sender: sender}}}
}

func TestProcess(t *testing.T) {
	st := newStage(t, nil,
		entry(4915100000001, store.KindBlock, "", ""),
		entry(4915100000002, store.KindComplaint, "shop", ""),
		entry(4915100000003, store.KindOptOut, "", "ACME"))
	for _, tc := range []struct {
		name             string
		account, src, to string
		want             smpp.Status
		rule             string
	}{
		{"blocked for all", "bank", "BANK", "+4915100000001", 0x45, "blocklist"},
		{"complaint in scope", "shop", "SHOP", "4915100000002", 0x45, "complaint"},
		{"complaint other account", "bank", "SHOP", "4915100000002", 0, ""},
		{"opted out of the sender", "shop", "ACME", "4915100000003", 0x45, "optout"},
		{"other sender", "shop", "OTHER", "4915100000003", 0, ""},
		{"clean number", "shop", "ACME", "4915100000009", 0, ""},
		{"not a number", "shop", "ACME", "abc", 0, ""},
	} {
		v := st.Process(msg(tc.account, tc.src, tc.to, router.LaneBulk))
		if v.Status != tc.want || v.Rule != tc.rule {
			t.Errorf("%s: %+v, want status %v rule %q", tc.name, v, tc.want, tc.rule)
		}
	}
	// A dry run explains and decides the same.
	m := msg("bank", "BANK", "4915100000001", router.LaneBulk)
	m.Trace = &router.Trace{}
	if v := st.Process(m); v.Status != 0x45 || len(m.Trace.Steps) != 1 || m.Trace.Steps[0].Decision != "4915100000001: refused (blocklist)" {
		t.Fatalf("dry run: %+v %+v", v, m.Trace.Steps)
	}
}

// TestStale: a stale node refuses non-OTP traffic with the stale status; OTP is still checked.
func TestStale(t *testing.T) {
	stale := true
	st := newStage(t, &stale, entry(4915100000001, store.KindBlock, "", ""))
	if v := st.Process(msg("shop", "S", "4915100000009", router.LaneBulk)); v.Status != 0x58 || v.Rule != "stale" {
		t.Fatalf("bulk while stale: %+v", v)
	}
	if v := st.Process(msg("shop", "S", "4915100000009", router.LaneOTP)); v.Status != 0 {
		t.Fatalf("OTP while stale: %+v", v)
	}
	if v := st.Process(msg("shop", "S", "4915100000001", router.LaneOTP)); v.Status != 0x45 {
		t.Fatalf("OTP to a blocked number while stale: %+v", v)
	}
	stale = false
	if v := st.Process(msg("shop", "S", "4915100000009", router.LaneBulk)); v.Status != 0 {
		t.Fatalf("bulk after contact: %+v", v)
	}
}

// TestProcessAllocs: no allocation per message, passed or refused.
func TestProcessAllocs(t *testing.T) {
	st := newStage(t, nil, entry(4915100000001, store.KindBlock, "", ""))
	pass, refuse := msg("shop", "S", "4915100000009", router.LaneBulk), msg("shop", "S", "4915100000001", router.LaneBulk)
	if n := testing.AllocsPerRun(1000, func() { st.Process(pass); st.Process(refuse) }); n != 0 {
		t.Fatalf("%v allocations per message", n)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{Status: 0x45}); err == nil {
		t.Error("no Check accepted")
	}
	if _, err := New(Config{Check: func(uint64, string, []byte) uint8 { return 0 }}); err == nil {
		t.Error("status 0 accepted")
	}
}
