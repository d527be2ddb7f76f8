package quiet

import (
	"testing"
	"time"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

func TestQuietHours(t *testing.T) {
	var now int64
	s, err := New(Config{Start: "21:00", End: "08:00", Now: func() int64 { return now }, Accounts: []string{"promo"},
		Zones: map[string]string{"US": "America/Los_Angeles"}})
	if err != nil {
		t.Fatal(err)
	}
	at := func(utc string) { tm, _ := time.Parse(time.RFC3339, utc); now = tm.UnixNano() }
	msg := func(acct, country string, lane router.Lane) smpp.Status {
		return s.Process(&router.Message{Account: &smpp.Account{SystemID: acct}, Country: country, Lane: lane}).Status
	}
	for _, tc := range []struct {
		utc, acct, country string
		lane               router.Lane
		want               smpp.Status
	}{
		{"2026-11-25T21:30:00Z", "promo", "DE", router.LaneBulk, smpp.StatusThrottled}, // 22:30 Berlin
		{"2026-11-25T12:00:00Z", "promo", "DE", router.LaneBulk, 0},                    // 13:00 Berlin
		{"2026-11-25T06:59:00Z", "promo", "DE", router.LaneBulk, smpp.StatusThrottled}, // 07:59 Berlin
		{"2026-11-25T07:00:00Z", "promo", "DE", router.LaneBulk, 0},                    // 08:00 Berlin
		{"2026-11-25T21:30:00Z", "promo", "DE", router.LaneOTP, 0},                     // codes never held
		{"2026-11-25T21:30:00Z", "bank", "DE", router.LaneBulk, 0},                     // not a listed account
		{"2026-11-25T14:00:00Z", "promo", "CN", router.LaneBulk, smpp.StatusThrottled}, // 22:00 Shanghai
		{"2026-11-25T20:00:00Z", "promo", "US", router.LaneBulk, 0},                    // 12:00 Los Angeles (override)
		{"2026-11-25T05:00:00Z", "promo", "US", router.LaneBulk, smpp.StatusThrottled}, // 21:00 LA (override)
		{"2026-11-25T21:30:00Z", "promo", "", router.LaneBulk, 0},                      // unknown country
	} {
		at(tc.utc)
		if got := msg(tc.acct, tc.country, tc.lane); got != tc.want {
			t.Errorf("%s %s %s lane %v: %v, want %v", tc.utc, tc.acct, tc.country, tc.lane, got, tc.want)
		}
	}
}

func TestBuiltInZonesLoad(t *testing.T) {
	s, err := New(Config{Start: "21:00", End: "08:00"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.locs) < 200 || s.locs["DE"].String() != "Europe/Berlin" || s.locs["CN"].String() != "Asia/Shanghai" {
		t.Fatalf("%d zones, DE %v, CN %v", len(s.locs), s.locs["DE"], s.locs["CN"])
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{Start: "25:00", End: "08:00"}, {Start: "21:00", End: "8"},
		{Start: "21:00", End: "08:00", Zones: map[string]string{"DE": "Mars/Olympus"}}} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func BenchmarkStage(b *testing.B) {
	s, _ := New(Config{Start: "21:00", End: "08:00", Now: func() int64 { return 1_764_100_000_000_000_000 }})
	m := &router.Message{Account: &smpp.Account{SystemID: "x"}, Country: "DE"}
	b.ReportAllocs()
	for b.Loop() {
		s.Process(m)
	}
}
