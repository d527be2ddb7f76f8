package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// CmdType is a replicated command's first byte. The values are stored in the Raft log and
// read by every later release: append only, never reuse or renumber one.
//
// The high bit (CmdOptional) marks a command an older node may skip: it carries nothing the
// recipient-protection state depends on (node versions, say). A node that meets a type it
// does not know without that bit cannot apply the log, and stops (FSM.Apply panics) rather
// than silently diverge from the others. A rolling upgrade therefore upgrades every node
// before any proposer uses a new required type (NodeVersions tells which releases run).
type CmdType uint8

// CmdOptional is the flag bit of the command types an older node may skip.
const CmdOptional CmdType = 0x80

// Command types. Append only.
const (
	CmdBlockAdd     CmdType = 1 // Entries of KindBlock: added or replaced
	CmdBlockRemove  CmdType = 2 // Keys of KindBlock or KindComplaint: removed
	CmdComplaint    CmdType = 3 // Entries of KindComplaint (and a global block, by FSMConfig.ComplaintBlocks)
	CmdOptOut       CmdType = 4 // Entries of KindOptOut
	CmdOptOutRemove CmdType = 5 // Keys of KindOptOut: removed (the user opted back in)
	CmdExpire       CmdType = 6 // remove every entry with 0 < Expires <= Cutoff
	CmdSentCounts   CmdType = 7 // Counts sent by reporter NodeID (absolute: max wins); prune buckets < Cutoff
	CmdExpireSome   CmdType = 8 // remove at most Limit entries with 0 < Expires <= Cutoff, the earliest first

	CmdNodeVersion = CmdOptional | 1 // NodeID runs Version (rolling upgrades)
)

// Optional reports whether a node that does not know the type may skip it.
func (t CmdType) Optional() bool { return t&CmdOptional != 0 }

func (t CmdType) String() string {
	switch t {
	case CmdBlockAdd:
		return "block_add"
	case CmdBlockRemove:
		return "block_remove"
	case CmdComplaint:
		return "complaint"
	case CmdOptOut:
		return "optout"
	case CmdOptOutRemove:
		return "optout_remove"
	case CmdExpire:
		return "expire"
	case CmdSentCounts:
		return "sent_counts"
	case CmdExpireSome:
		return "expire_some"
	case CmdNodeVersion:
		return "node_version"
	}
	return fmt.Sprintf("CmdType(%#x)", uint8(t))
}

func (t CmdType) known() bool {
	switch t {
	case CmdBlockAdd, CmdBlockRemove, CmdComplaint, CmdOptOut, CmdOptOutRemove, CmdExpire, CmdSentCounts, CmdExpireSome, CmdNodeVersion:
		return true
	}
	return false
}

func (t CmdType) hasEntries() bool { return t == CmdBlockAdd || t == CmdComplaint || t == CmdOptOut }
func (t CmdType) hasKeys() bool    { return t == CmdBlockRemove || t == CmdOptOutRemove }

// CommandVersion is the payload version this release writes. It reads every version from 1 to
// CommandVersion; a payload of a newer version is ErrCommandVersion.
const CommandVersion = 1

// Limits a valid command keeps (Validate). They are part of the command format: a release
// that relaxes one must also raise CommandVersion, or nodes of different releases would judge
// the same log entry differently.
const (
	MaxCommandItems = 1000                // entries, keys or counts per command; proposers split larger sets
	MaxExpireItems  = 10_000              // entries one CmdExpireSome removes at most
	MaxFieldLen     = 1024                // bytes of any string field
	MaxNumber       = 999_999_999_999_999 // E.164: at most 15 digits
)

// Command errors.
var (
	// ErrUnknownCommand: the type byte is not one this release knows. Apply skips it if the
	// type is optional and panics otherwise.
	ErrUnknownCommand = errors.New("store: unknown command type")
	// ErrCommandVersion: the payload was written by a newer release; upgrade this node.
	ErrCommandVersion = errors.New("store: command payload version is newer than this release reads")
	// ErrMalformedCommand: the bytes do not decode (truncated, trailing bytes, bad length).
	ErrMalformedCommand = errors.New("store: malformed command")
	// ErrInvalidCommand: the command decodes but breaks a rule of Validate; Apply leaves the
	// state unchanged and returns it in ApplyResult.Err.
	ErrInvalidCommand = errors.New("store: invalid command")
)

// Command is one replicated change. Which fields are used depends on Type (see the CmdType
// constants); the others must be empty. Time is the proposer's clock (unix milliseconds):
// Apply never reads a clock, so every node computes the same state from the same log.
type Command struct {
	Type    CmdType
	Time    int64       // proposer's time, unix ms; entries with Created 0 get it
	Entries []Entry     // CmdBlockAdd, CmdComplaint, CmdOptOut
	Keys    []Key       // CmdBlockRemove, CmdOptOutRemove
	Counts  []SentCount // CmdSentCounts: the reporter's absolute counts
	// CmdExpire, CmdExpireSome: entries with 0 < Expires <= Cutoff are removed. CmdSentCounts:
	// counters of buckets before Cutoff are removed (0: none), after Counts are applied.
	Cutoff  int64
	Limit   int    // CmdExpireSome: at most this many entries are removed (1..MaxExpireItems)
	NodeID  string // CmdNodeVersion; CmdSentCounts: the reporter (node id and boot time, "n1@1764110000000")
	Version string // CmdNodeVersion: the node's release
}

// Marshal encodes the command (payload version CommandVersion):
//
//	type(1) version(1) time(uvarint)
//	entries:  count(uvarint) { number(uvarint) kind(1) account sender reason source upstream
//	          created(uvarint) expires(uvarint) }
//	keys:     count(uvarint) { number(uvarint) kind(1) account sender }
//	expire:   cutoff(uvarint)
//	expire_some: cutoff(uvarint) limit(uvarint)
//	node:     node_id version
//	sent:     node_id cutoff(uvarint) count(uvarint) { bucket(uvarint) account channel sent(uvarint) }
//
// Strings are uvarint length then bytes; signed numbers are written as their uint64 bit
// pattern. Marshal does not validate: Apply does, the same way on every node.
func (c *Command) Marshal() []byte {
	n := 12
	for i := range c.Entries {
		e := &c.Entries[i]
		n += 30 + len(e.Scope.Account) + len(e.Scope.Sender) + len(e.Reason) + len(e.Source) + len(e.Upstream)
	}
	for i := range c.Keys {
		n += 14 + len(c.Keys[i].Scope.Account) + len(c.Keys[i].Scope.Sender)
	}
	for i := range c.Counts {
		n += 24 + len(c.Counts[i].Account) + len(c.Counts[i].Channel)
	}
	b := make([]byte, 0, n+len(c.NodeID)+len(c.Version)+4)
	b = append(b, byte(c.Type), CommandVersion)
	b = binary.AppendUvarint(b, uint64(c.Time))
	switch {
	case c.Type.hasEntries():
		b = binary.AppendUvarint(b, uint64(len(c.Entries)))
		for i := range c.Entries {
			e := &c.Entries[i]
			b = appendKey(b, e.Key)
			b = appendString(appendString(appendString(b, e.Reason), e.Source), e.Upstream)
			b = binary.AppendUvarint(binary.AppendUvarint(b, uint64(e.Created)), uint64(e.Expires))
		}
	case c.Type.hasKeys():
		b = binary.AppendUvarint(b, uint64(len(c.Keys)))
		for _, k := range c.Keys {
			b = appendKey(b, k)
		}
	case c.Type == CmdExpire:
		b = binary.AppendUvarint(b, uint64(c.Cutoff))
	case c.Type == CmdExpireSome:
		b = binary.AppendUvarint(binary.AppendUvarint(b, uint64(c.Cutoff)), uint64(c.Limit))
	case c.Type == CmdNodeVersion:
		b = appendString(appendString(b, c.NodeID), c.Version)
	case c.Type == CmdSentCounts:
		b = binary.AppendUvarint(appendString(b, c.NodeID), uint64(c.Cutoff))
		b = binary.AppendUvarint(b, uint64(len(c.Counts)))
		for i := range c.Counts {
			s := &c.Counts[i]
			b = binary.AppendUvarint(b, uint64(s.Bucket))
			b = appendString(appendString(b, s.Account), s.Channel)
			b = binary.AppendUvarint(b, s.Sent)
		}
	}
	return b
}

func appendKey(b []byte, k Key) []byte {
	b = append(binary.AppendUvarint(b, k.Number), byte(k.Kind))
	return appendString(appendString(b, k.Scope.Account), k.Scope.Sender)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// UnmarshalCommand decodes a command. An unknown type returns the Command with only Type set
// and an error wrapping ErrUnknownCommand (the caller looks at Type.Optional); a newer payload
// version wraps ErrCommandVersion; bytes that do not decode wrap ErrMalformedCommand.
func UnmarshalCommand(b []byte) (Command, error) {
	if len(b) == 0 {
		return Command{}, fmt.Errorf("%w: empty", ErrMalformedCommand)
	}
	c := Command{Type: CmdType(b[0])}
	if !c.Type.known() {
		return c, fmt.Errorf("%w %#x (optional: %t)", ErrUnknownCommand, b[0], c.Type.Optional())
	}
	if len(b) < 2 {
		return c, fmt.Errorf("%w: %s: no payload version", ErrMalformedCommand, c.Type)
	}
	switch v := b[1]; {
	case v == 0:
		return c, fmt.Errorf("%w: %s: payload version 0", ErrMalformedCommand, c.Type)
	case v > CommandVersion:
		return c, fmt.Errorf("%w: %s payload version %d, this release reads up to %d", ErrCommandVersion, c.Type, v, CommandVersion)
	}
	d := decoder{b: b[2:]}
	c.Time = int64(d.uvarint())
	where, item := "time", -1 // what is being decoded, for the error
	switch {
	case c.Type.hasEntries():
		where = "entry count"
		n := d.count()
		c.Entries = make([]Entry, n)
		var prev Entry // consecutive entries mostly share their strings: decode them once
		for i := range c.Entries {
			if d.err != nil {
				break
			}
			where, item = "entry", i
			e := &c.Entries[i]
			e.Number, e.Kind = d.uvarint(), Kind(d.byte())
			e.Scope.Account, e.Scope.Sender = d.str(prev.Scope.Account), d.str(prev.Scope.Sender)
			e.Reason, e.Source, e.Upstream = d.str(prev.Reason), d.str(prev.Source), d.str(prev.Upstream)
			e.Created, e.Expires = int64(d.uvarint()), int64(d.uvarint())
			prev = *e
		}
	case c.Type.hasKeys():
		where = "key count"
		n := d.count()
		c.Keys = make([]Key, n)
		var prev Key
		for i := range c.Keys {
			if d.err != nil {
				break
			}
			where, item = "key", i
			k := &c.Keys[i]
			k.Number, k.Kind = d.uvarint(), Kind(d.byte())
			k.Scope.Account, k.Scope.Sender = d.str(prev.Scope.Account), d.str(prev.Scope.Sender)
			prev = *k
		}
	case c.Type == CmdExpire:
		where = "cutoff"
		c.Cutoff = int64(d.uvarint())
	case c.Type == CmdExpireSome:
		where = "cutoff and limit"
		c.Cutoff = int64(d.uvarint())
		if l := d.uvarint(); l <= MaxExpireItems { // larger: invalid, and must not overflow int
			c.Limit = int(l)
		} else {
			c.Limit = MaxExpireItems + 1
		}
	case c.Type == CmdNodeVersion:
		where = "node version"
		c.NodeID, c.Version = d.str(""), d.str("")
	case c.Type == CmdSentCounts:
		where = "reporter"
		c.NodeID, c.Cutoff = d.str(""), int64(d.uvarint())
		where = "number of counts"
		n := d.count()
		c.Counts = make([]SentCount, n)
		var prev SentCount
		for i := range c.Counts {
			if d.err != nil {
				break
			}
			where, item = "count", i
			s := &c.Counts[i]
			s.Bucket = int64(d.uvarint())
			s.Account, s.Channel = d.str(prev.Account), d.str(prev.Channel)
			s.Sent = d.uvarint()
			prev = *s
		}
	}
	if d.err == nil && len(d.b) > 0 {
		return c, fmt.Errorf("%w: %s: %d trailing bytes", ErrMalformedCommand, c.Type, len(d.b))
	}
	if d.err != nil {
		if item >= 0 {
			where = fmt.Sprintf("%s %d", where, item)
		}
		return c, fmt.Errorf("%w: %s: %s: %v", ErrMalformedCommand, c.Type, where, d.err)
	}
	return c, nil
}

// Validate reports the first rule the command breaks (wrapping ErrInvalidCommand): a known
// type; a positive Time; 1..MaxCommandItems entries or keys of the kinds the type takes, with
// numbers in 1..MaxNumber, strings of at most MaxFieldLen bytes and no negative times; a
// positive Cutoff (expire); a node id. Sent counts: a reporter (NodeID) of at most MaxFieldLen
// bytes, Cutoff >= 0, 1..MaxCommandItems counts with Bucket >= 0, a non-empty Channel and
// strings of at most MaxFieldLen bytes. Fields the type does not use must be empty.
func (c *Command) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidCommand, c.Type, fmt.Sprintf(format, args...))
	}
	if !c.Type.known() {
		return fmt.Errorf("%w: type %#x", ErrInvalidCommand, uint8(c.Type))
	}
	if c.Time <= 0 {
		return bad("time %d: the proposer's unix ms time is required", c.Time)
	}
	if !c.Type.hasEntries() && len(c.Entries) > 0 || !c.Type.hasKeys() && len(c.Keys) > 0 ||
		c.Type != CmdSentCounts && len(c.Counts) > 0 || c.Type != CmdExpireSome && c.Limit != 0 ||
		c.Type != CmdExpire && c.Type != CmdExpireSome && c.Type != CmdSentCounts && c.Cutoff != 0 ||
		c.Type != CmdNodeVersion && c.Version != "" || c.Type != CmdNodeVersion && c.Type != CmdSentCounts && c.NodeID != "" {
		return bad("fields of another command type are set")
	}
	switch {
	case c.Type.hasEntries():
		if len(c.Entries) == 0 || len(c.Entries) > MaxCommandItems {
			return bad("%d entries: must be 1..%d", len(c.Entries), MaxCommandItems)
		}
		for i := range c.Entries {
			e := &c.Entries[i]
			if err := validKey(c.Type, e.Key); err != nil {
				return bad("entry %d: %v", i, err)
			}
			if len(e.Reason) > MaxFieldLen || len(e.Source) > MaxFieldLen || len(e.Upstream) > MaxFieldLen {
				return bad("entry %d: a string is longer than %d bytes", i, MaxFieldLen)
			}
			if e.Created < 0 || e.Expires < 0 {
				return bad("entry %d: negative time", i)
			}
		}
	case c.Type.hasKeys():
		if len(c.Keys) == 0 || len(c.Keys) > MaxCommandItems {
			return bad("%d keys: must be 1..%d", len(c.Keys), MaxCommandItems)
		}
		for i, k := range c.Keys {
			if err := validKey(c.Type, k); err != nil {
				return bad("key %d: %v", i, err)
			}
		}
	case c.Type == CmdExpire:
		if c.Cutoff <= 0 {
			return bad("cutoff %d: must be positive", c.Cutoff)
		}
	case c.Type == CmdExpireSome:
		if c.Cutoff <= 0 {
			return bad("cutoff %d: must be positive", c.Cutoff)
		}
		if c.Limit < 1 || c.Limit > MaxExpireItems {
			return bad("limit %d: must be 1..%d", c.Limit, MaxExpireItems)
		}
	case c.Type == CmdNodeVersion:
		if c.NodeID == "" || len(c.NodeID) > MaxFieldLen || len(c.Version) > MaxFieldLen {
			return bad("node id required, strings at most %d bytes", MaxFieldLen)
		}
	case c.Type == CmdSentCounts:
		if c.NodeID == "" || len(c.NodeID) > MaxFieldLen {
			return bad("reporter (node id) required, at most %d bytes", MaxFieldLen)
		}
		if c.Cutoff < 0 {
			return bad("cutoff %d: must not be negative", c.Cutoff)
		}
		if len(c.Counts) == 0 || len(c.Counts) > MaxCommandItems {
			return bad("%d counts: must be 1..%d", len(c.Counts), MaxCommandItems)
		}
		for i := range c.Counts {
			s := &c.Counts[i]
			switch {
			case s.Bucket < 0:
				return bad("count %d: bucket %d: must not be negative", i, s.Bucket)
			case s.Channel == "":
				return bad("count %d: channel required", i)
			case len(s.Account) > MaxFieldLen || len(s.Channel) > MaxFieldLen:
				return bad("count %d: a string is longer than %d bytes", i, MaxFieldLen)
			}
		}
	}
	return nil
}

func validKey(t CmdType, k Key) error {
	if k.Number == 0 || k.Number > MaxNumber {
		return fmt.Errorf("number %d: must be 1..%d", k.Number, uint64(MaxNumber))
	}
	ok := false
	switch t {
	case CmdBlockAdd:
		ok = k.Kind == KindBlock
	case CmdComplaint:
		ok = k.Kind == KindComplaint
	case CmdOptOut, CmdOptOutRemove:
		ok = k.Kind == KindOptOut
	case CmdBlockRemove:
		ok = k.Kind == KindBlock || k.Kind == KindComplaint
	}
	if !ok {
		return fmt.Errorf("number %d: kind %s does not belong in a %s command", k.Number, k.Kind, t)
	}
	if len(k.Scope.Account) > MaxFieldLen || len(k.Scope.Sender) > MaxFieldLen {
		return fmt.Errorf("number %d: scope longer than %d bytes", k.Number, MaxFieldLen)
	}
	return nil
}

// decoder reads the varint encodings of commands, stored entries, Raft log entries and
// snapshots. The first error sticks; later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

var (
	errTruncated = errors.New("truncated")
	errOverflow  = errors.New("varint overflows 64 bits")
)

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.err = errTruncated
		return 0
	case n < 0:
		d.err = errOverflow
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varint reads a zig-zag signed varint (encoding/binary's Varint format).
func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errTruncated
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// bytes reads a length-prefixed byte string; the result aliases the input.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("length %d exceeds the %d bytes left", n, len(d.b))
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

// str reads a length-prefixed string, returning prev itself when the bytes are equal to it
// (no allocation for the repeated fields of a bulk command).
func (d *decoder) str(prev string) string {
	s := d.bytes()
	if string(s) == prev {
		return prev
	}
	return string(s)
}

// count reads an item count; every item takes at least one byte, so a count larger than the
// bytes left is malformed (and never sizes an allocation).
func (d *decoder) count() int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = fmt.Errorf("count %d exceeds the %d bytes left", n, len(d.b))
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}
