package store

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from this release's encoders")

// goldenCommands are one command of each type as this release writes them. Each file in
// testdata/commands is kept forever: later releases must still decode it to the same Command
// (a new payload version adds new files; the old ones stay, with current false).
var goldenCommands = []struct {
	file    string
	cmd     Command
	current bool // written by this release's Marshal (CommandVersion)
}{
	{"block_add.v1.bin", Command{Type: CmdBlockAdd, Time: 1_764_115_200_000, Entries: []Entry{
		{Key: Key{Number: 4915112345678, Kind: KindBlock}, Reason: "fraud", Source: "admin:alice", Created: 1_764_115_200_000},
		{Key: Key{Number: 4915112345679, Kind: KindBlock, Scope: Scope{Account: "acme"}}, Reason: "fraud", Source: "admin:alice",
			Created: 1_764_115_200_000, Expires: 1_764_720_000_000},
		{Key: Key{Number: 447700900123, Kind: KindBlock, Scope: Scope{Account: "acme", Sender: "ACME"}}, Source: "api"},
	}}, true},
	{"block_remove.v1.bin", Command{Type: CmdBlockRemove, Time: 1_764_115_300_000, Keys: []Key{
		{Number: 4915112345678, Kind: KindBlock},
		{Number: 4915112345679, Kind: KindComplaint, Scope: Scope{Account: "acme"}},
	}}, true},
	{"complaint.v1.bin", Command{Type: CmdComplaint, Time: 1_764_115_400_000, Entries: []Entry{
		{Key: Key{Number: 33612345678, Kind: KindComplaint, Scope: Scope{Account: "acme"}}, Reason: "spam",
			Source: "mo", Upstream: "orange-fr", Created: 1_764_115_399_000, Expires: 1_771_891_200_000},
	}}, true},
	{"optout.v1.bin", Command{Type: CmdOptOut, Time: 1_764_115_500_000, Entries: []Entry{
		{Key: Key{Number: 4915112345678, Kind: KindOptOut, Scope: Scope{Sender: "SHOP"}}, Reason: "STOP", Source: "mo",
			Upstream: "tmobile-de", Created: 1_764_115_500_000},
	}}, true},
	{"optout_remove.v1.bin", Command{Type: CmdOptOutRemove, Time: 1_764_115_600_000, Keys: []Key{
		{Number: 4915112345678, Kind: KindOptOut, Scope: Scope{Sender: "SHOP"}},
	}}, true},
	{"expire.v1.bin", Command{Type: CmdExpire, Time: 1_764_115_700_000, Cutoff: 1_764_115_700_000}, true},
	{"node_version.v1.bin", Command{Type: CmdNodeVersion, Time: 1_764_115_800_000, NodeID: "node-1", Version: "v0.9.0"}, true},
	// Last: the golden snapshot fsm.v1.snap is the state of the commands before it.
	{"sent_counts.v1.bin", Command{Type: CmdSentCounts, Time: 1_764_115_900_000, NodeID: "node-1@1764110000000",
		Cutoff: 1_764_029_500_000, Counts: []SentCount{
			{Bucket: 1_764_115_800_000, Account: "acme", Channel: "orange-fr", Sent: 1200},
			{Bucket: 1_764_115_800_000, Account: "acme", Channel: "tmobile-de", Sent: 37},
			{Bucket: 1_764_115_860_000, Channel: "orange-fr", Sent: 5},
		}}, true},
	{"expire_some.v1.bin", Command{Type: CmdExpireSome, Time: 1_764_116_000_000, Cutoff: 1_764_116_000_000, Limit: 10_000}, true},
}

func TestCommandGolden(t *testing.T) {
	dir := filepath.Join("testdata", "commands")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[CmdType]bool{}
	for _, g := range goldenCommands {
		t.Run(g.file, func(t *testing.T) {
			path := filepath.Join(dir, g.file)
			if *update && g.current {
				if err := os.WriteFile(path, g.cmd.Marshal(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./store/ -run TestCommandGolden -update to write it)", err)
			}
			got, err := UnmarshalCommand(b)
			if err != nil {
				t.Fatalf("decode %s: %v", g.file, err)
			}
			if !reflect.DeepEqual(got, g.cmd) {
				t.Fatalf("decoded %s:\n got %+v\nwant %+v", g.file, got, g.cmd)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("golden command invalid: %v", err)
			}
			if g.current && !bytes.Equal(g.cmd.Marshal(), b) {
				t.Fatalf("Marshal no longer writes %s: the encoding changed without a new payload version\n got %x\nwant %x",
					g.file, g.cmd.Marshal(), b)
			}
			seen[g.cmd.Type] = true
		})
	}
	for _, typ := range []CmdType{CmdBlockAdd, CmdBlockRemove, CmdComplaint, CmdOptOut, CmdOptOutRemove, CmdExpire, CmdSentCounts, CmdNodeVersion} {
		if !seen[typ] {
			t.Errorf("no golden command of type %s", typ)
		}
	}
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range []Command{
		{Type: CmdBlockAdd, Time: 1, Entries: []Entry{{Key: Key{Number: 1, Kind: KindBlock}}}},
		{Type: CmdBlockAdd, Time: -1, Entries: []Entry{{Key: Key{Number: 1<<64 - 1, Kind: Kind(200)}, Created: -5, Expires: -1 << 63}}},
		{Type: CmdOptOutRemove, Time: 9, Keys: []Key{{Number: 5, Kind: KindOptOut, Scope: Scope{Account: "a\x00b", Sender: "\xff"}}}},
		{Type: CmdExpire, Cutoff: 1<<63 - 1},
		{Type: CmdNodeVersion, NodeID: strings.Repeat("n", 300)},
		{Type: CmdSentCounts, Time: 3, NodeID: "n1@1", Cutoff: -1, Counts: []SentCount{
			{Bucket: -7, Channel: "c", Sent: 1<<64 - 1}, {Account: "a\x00", Channel: "c"}, {Bucket: 1<<63 - 1, Account: "a\x00", Channel: "d"}}},
	} {
		got, err := UnmarshalCommand(c.Marshal())
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, c)
		}
	}
}

// TestCommandDecodeShares: the strings repeated by consecutive entries of a bulk command are
// decoded once.
func TestCommandDecodeShares(t *testing.T) {
	c := Command{Type: CmdBlockAdd, Time: 1}
	for i := range 100 {
		c.Entries = append(c.Entries, Entry{Key: Key{Number: uint64(1000 + i), Kind: KindBlock, Scope: Scope{Account: "acme"}},
			Reason: "imported list 2026-11", Source: "admin:bob"})
	}
	b := c.Marshal()
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := UnmarshalCommand(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 5 {
		t.Fatalf("decoding 100 entries sharing their strings: %.0f allocations, want at most 5", allocs)
	}
}

func TestUnmarshalCommandErrors(t *testing.T) {
	good := goldenCommands[0].cmd.Marshal()
	for _, tc := range []struct {
		name     string
		b        []byte
		want     error
		optional bool
		msg      string
	}{
		{"empty", nil, ErrMalformedCommand, false, "empty"},
		{"unknown required type", []byte{0x09, 1, 1}, ErrUnknownCommand, false, "0x9"},
		{"unknown optional type", []byte{0x85, 1, 1, 0xde, 0xad}, ErrUnknownCommand, true, "optional: true"},
		{"no payload version", []byte{byte(CmdBlockAdd)}, ErrMalformedCommand, false, "no payload version"},
		{"payload version 0", []byte{byte(CmdExpire), 0, 1, 1}, ErrMalformedCommand, false, "version 0"},
		{"newer payload version", []byte{byte(CmdExpire), CommandVersion + 1, 1, 1}, ErrCommandVersion, false, "reads up to 1"},
		{"newer payload of an optional type", []byte{byte(CmdNodeVersion), CommandVersion + 1}, ErrCommandVersion, true, "node_version"},
		{"truncated entry", good[:len(good)-1], ErrMalformedCommand, false, "entry 2: truncated"},
		{"trailing bytes", append(append([]byte(nil), good...), 0), ErrMalformedCommand, false, "1 trailing bytes"},
		{"count larger than the bytes", []byte{byte(CmdBlockRemove), 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}, ErrMalformedCommand, false, "count"},
		{"string longer than the bytes", []byte{byte(CmdNodeVersion), 1, 1, 0x7f, 'a'}, ErrMalformedCommand, true, "length 127"},
		{"varint overflow", []byte{byte(CmdExpire), 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrMalformedCommand, false, "overflows"},
		{"truncated sent count", []byte{byte(CmdSentCounts), 1, 1, 1, 'n', 0, 2, 5, 0, 1, 'c', 9, 5, 0}, ErrMalformedCommand, false, "count 1: truncated"},
		{"sent counts without a count", []byte{byte(CmdSentCounts), 1, 1, 1, 'n', 0}, ErrMalformedCommand, false, "number of counts: truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := UnmarshalCommand(tc.b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %q does not say %q", err, tc.msg)
			}
			if len(tc.b) > 0 && c.Type.Optional() != tc.optional {
				t.Fatalf("Type %s optional %t, want %t", c.Type, c.Type.Optional(), tc.optional)
			}
		})
	}
	// Every prefix of a valid command is an error, never a panic.
	for _, g := range goldenCommands {
		b := g.cmd.Marshal()
		for i := range b {
			if _, err := UnmarshalCommand(b[:i]); err == nil {
				t.Fatalf("%s cut to %d bytes decoded without error", g.file, i)
			}
		}
	}
}

func TestCommandValidate(t *testing.T) {
	e := func(n uint64, k Kind) Entry { return Entry{Key: Key{Number: n, Kind: k}} }
	many := make([]Entry, MaxCommandItems+1)
	for i := range many {
		many[i] = e(uint64(i+1), KindBlock)
	}
	sc := func(cs ...SentCount) Command {
		return Command{Type: CmdSentCounts, Time: 1, NodeID: "n1@1764110000000", Counts: cs}
	}
	okCount := SentCount{Bucket: 1, Account: "acme", Channel: "orange", Sent: 3}
	manyCounts := make([]SentCount, MaxCommandItems+1)
	for i := range manyCounts {
		manyCounts[i] = SentCount{Bucket: int64(i), Channel: "c"}
	}
	long := strings.Repeat("x", MaxFieldLen+1)
	withCutoff := func(c Command, cutoff int64) Command { c.Cutoff = cutoff; return c }
	withNode := func(c Command, id, version string) Command { c.NodeID, c.Version = id, version; return c }
	for _, tc := range []struct {
		name string
		c    Command
		msg  string // "" = valid
	}{
		{"expire_some without limit", Command{Type: CmdExpireSome, Time: 1, Cutoff: 5}, "limit 0"},
		{"expire_some over the limit", Command{Type: CmdExpireSome, Time: 1, Cutoff: 5, Limit: MaxExpireItems + 1}, "limit 10001"},
		{"expire_some without cutoff", Command{Type: CmdExpireSome, Time: 1, Limit: 5}, "cutoff 0"},
		{"limit on another type", Command{Type: CmdExpire, Time: 1, Cutoff: 5, Limit: 5}, "another command type"},
		{"valid sent counts", sc(okCount, SentCount{Channel: "c"}), ""},
		{"sent counts with a cutoff", withCutoff(sc(okCount), 1_764_000_000_000), ""},
		{"sent counts, max items", sc(manyCounts[:MaxCommandItems]...), ""},
		{"sent counts, max reporter", withNode(sc(okCount), strings.Repeat("n", MaxFieldLen), ""), ""},
		{"sent counts without a reporter", withNode(sc(okCount), "", ""), "reporter (node id) required"},
		{"sent counts, long reporter", withNode(sc(okCount), long, ""), "reporter (node id) required"},
		{"sent counts with a version", withNode(sc(okCount), "n1", "v1"), "another command type"},
		{"sent counts, negative cutoff", withCutoff(sc(okCount), -1), "cutoff -1"},
		{"no counts", sc(), "0 counts"},
		{"too many counts", sc(manyCounts...), "1001 counts"},
		{"count without a channel", sc(okCount, SentCount{Account: "acme", Sent: 1}), "count 1: channel required"},
		{"count, long account", sc(SentCount{Account: long, Channel: "c"}), "count 0: a string is longer"},
		{"count, long channel", sc(SentCount{Channel: long}), "count 0: a string is longer"},
		{"count, negative bucket", sc(SentCount{Bucket: -1, Channel: "c"}), "bucket -1"},
		{"entries on sent counts", Command{Type: CmdSentCounts, Time: 1, NodeID: "n", Counts: []SentCount{okCount}, Entries: []Entry{e(1, KindBlock)}}, "another command type"},
		{"keys on sent counts", Command{Type: CmdSentCounts, Time: 1, NodeID: "n", Counts: []SentCount{okCount}, Keys: []Key{{Number: 1, Kind: KindBlock}}}, "another command type"},
		{"counts on a block add", Command{Type: CmdBlockAdd, Time: 1, Entries: []Entry{e(1, KindBlock)}, Counts: []SentCount{okCount}}, "another command type"},
		{"counts on a node version", Command{Type: CmdNodeVersion, Time: 1, NodeID: "n", Counts: []SentCount{okCount}}, "another command type"},
		{"cutoff on a block add", Command{Type: CmdBlockAdd, Time: 1, Entries: []Entry{e(1, KindBlock)}, Cutoff: 5}, "another command type"},
		{"node id on an expire", Command{Type: CmdExpire, Time: 1, Cutoff: 5, NodeID: "n"}, "another command type"},
		{"sent counts without time", Command{Type: CmdSentCounts, NodeID: "n", Counts: []SentCount{okCount}}, "time 0"},
		{"valid block add", Command{Type: CmdBlockAdd, Time: 1, Entries: []Entry{e(1, KindBlock)}}, ""},
		{"max items", Command{Type: CmdBlockAdd, Time: 1, Entries: many[:MaxCommandItems]}, ""},
		{"block remove of a complaint", Command{Type: CmdBlockRemove, Time: 1, Keys: []Key{{Number: 1, Kind: KindComplaint}}}, ""},
		{"unknown type", Command{Type: 0x33, Time: 1}, "type 0x33"},
		{"no time", Command{Type: CmdBlockAdd, Entries: []Entry{e(1, KindBlock)}}, "time 0"},
		{"no entries", Command{Type: CmdBlockAdd, Time: 1}, "0 entries"},
		{"too many entries", Command{Type: CmdBlockAdd, Time: 1, Entries: many}, "1001 entries"},
		{"wrong kind", Command{Type: CmdBlockAdd, Time: 1, Entries: []Entry{e(1, KindOptOut)}}, "kind optout does not belong"},
		{"complaint kind", Command{Type: CmdComplaint, Time: 1, Entries: []Entry{e(1, KindBlock)}}, "does not belong"},
		{"optout remove of a block", Command{Type: CmdOptOutRemove, Time: 1, Keys: []Key{{Number: 1, Kind: KindBlock}}}, "does not belong"},
		{"number 0", Command{Type: CmdBlockAdd, Time: 1, Entries: []Entry{e(0, KindBlock)}}, "number 0"},
		{"number too long", Command{Type: CmdOptOut, Time: 1, Entries: []Entry{e(MaxNumber+1, KindOptOut)}}, "must be 1.."},
		{"long reason", Command{Type: CmdBlockAdd, Time: 1, Entries: []Entry{{Key: Key{Number: 1, Kind: KindBlock}, Reason: strings.Repeat("r", MaxFieldLen+1)}}}, "longer than"},
		{"long scope", Command{Type: CmdBlockRemove, Time: 1, Keys: []Key{{Number: 1, Kind: KindBlock, Scope: Scope{Sender: strings.Repeat("s", MaxFieldLen+1)}}}}, "scope longer"},
		{"negative expiry", Command{Type: CmdBlockAdd, Time: 1, Entries: []Entry{{Key: Key{Number: 1, Kind: KindBlock}, Expires: -1}}}, "negative time"},
		{"keys on an add", Command{Type: CmdBlockAdd, Time: 1, Entries: []Entry{e(1, KindBlock)}, Keys: []Key{{Number: 1}}}, "another command type"},
		{"no keys", Command{Type: CmdOptOutRemove, Time: 1}, "0 keys"},
		{"expire without cutoff", Command{Type: CmdExpire, Time: 1}, "cutoff 0"},
		{"node version without id", Command{Type: CmdNodeVersion, Time: 1, Version: "v1"}, "node id required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("valid command: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidCommand) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Validate = %v, want ErrInvalidCommand saying %q", err, tc.msg)
			}
		})
	}
}

func FuzzUnmarshalCommand(f *testing.F) {
	for _, g := range goldenCommands {
		f.Add(g.cmd.Marshal())
	}
	f.Add([]byte{0x85, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := UnmarshalCommand(b)
		if err != nil {
			return
		}
		again, err := UnmarshalCommand(c.Marshal())
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", c, err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("re-decoded %+v, want %+v", again, c)
		}
	})
}
