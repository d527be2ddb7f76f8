package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// ErrKeyNotFound is returned by RaftLog.Get and GetUint64 for a key never set. Its text is
// exactly "not found": hashicorp/raft recognises a missing current term or vote by comparing
// err.Error() with that string (api.go NewRaft, HasExistingState; raft.go), as raft-boltdb's
// ErrKeyNotFound reads.
var ErrKeyNotFound = errors.New("not found")

// Raft log directory layout (its own Pebble DB, not shared with the FSM or Local):
//
//	'L' index(u64 BE)   log entry (raftLogVersion encoding, below); big-endian so that the
//	                    first and last index are one seek each
//	'S' key             stable store value (current term, last vote, ...)
//	'V'                 format version of the directory (raftLogFormat)
const (
	raftPrefixLog    = 'L'
	raftPrefixStable = 'S'
	raftLogFormat    = 1
	// raftLogVersion is the first byte of every stored entry; decodeLog refuses others.
	raftLogVersion = 1
)

// RaftLog is hashicorp/raft's LogStore and StableStore in a Pebble directory of its own.
// Every write is committed with pebble.Sync before it returns: raft answers a vote or an
// AppendEntries only after its log and term are durable. It is safe for concurrent use
// (raft reads entries from its replication goroutines while the main loop appends).
type RaftLog struct {
	db        *pebble.DB
	dir       string
	log       *slog.Logger
	closeOnce sync.Once
	closeErr  error
}

var (
	_ raft.LogStore    = (*RaftLog)(nil)
	_ raft.StableStore = (*RaftLog)(nil)
)

// OpenRaftLog opens (or creates) the Raft log in dir.
func OpenRaftLog(dir string, log *slog.Logger) (*RaftLog, error) {
	if dir == "" {
		return nil, errors.New("raft log: dir is required")
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "raftlog")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("raft log: %w", err)
	}
	cache := pebble.NewCache(8 << 20) // raft reads back only the entries it is replicating
	defer cache.Unref()
	db, err := pebble.Open(filepath.Clean(dir), &pebble.Options{Logger: pebbleLogger{log}, Cache: cache, MemTableSize: 64 << 20})
	if err != nil {
		return nil, fmt.Errorf("raft log: open %s: %w", dir, err)
	}
	if err := checkFormat(db, dir, raftLogFormat); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("raft log: %w", err)
	}
	return &RaftLog{db: db, dir: dir, log: log}, nil
}

// checkFormat writes the format version under 'V' in a new directory and refuses a directory
// written by a newer format.
func checkFormat(db *pebble.DB, dir string, format byte) error {
	v, closer, err := db.Get([]byte(keyVersion))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return db.Set([]byte(keyVersion), []byte{format}, pebble.Sync)
	case err != nil:
		return fmt.Errorf("read format version: %w", err)
	}
	defer closer.Close()
	if len(v) != 1 || v[0] > format {
		return fmt.Errorf("%s was written by a newer smppd (format %v, this one reads up to %d)", dir, v, format)
	}
	return nil
}

// Close closes the Pebble DB; later calls return the first call's result.
func (s *RaftLog) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.db.Close() })
	return s.closeErr
}

func logKey(dst []byte, index uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, raftPrefixLog), index)
}

// FirstIndex implements raft.LogStore: the lowest index stored, 0 if none.
func (s *RaftLog) FirstIndex() (uint64, error) { return s.edgeIndex(true) }

// LastIndex implements raft.LogStore: the highest index stored, 0 if none.
func (s *RaftLog) LastIndex() (uint64, error) { return s.edgeIndex(false) }

func (s *RaftLog) edgeIndex(first bool) (uint64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{raftPrefixLog}, UpperBound: []byte{raftPrefixLog + 1}})
	if err != nil {
		return 0, fmt.Errorf("raft log: %w", err)
	}
	defer it.Close()
	var ok bool
	if first {
		ok = it.First()
	} else {
		ok = it.Last()
	}
	if !ok {
		if err := it.Error(); err != nil {
			return 0, fmt.Errorf("raft log: %w", err)
		}
		return 0, nil
	}
	k := it.Key()
	if len(k) != 9 {
		return 0, fmt.Errorf("raft log: corrupt key %x", k)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

// GetLog implements raft.LogStore; a missing index is raft.ErrLogNotFound.
func (s *RaftLog) GetLog(index uint64, l *raft.Log) error {
	var kb [9]byte
	v, closer, err := s.db.Get(logKey(kb[:0], index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raft log: get %d: %w", index, err)
	}
	defer closer.Close()
	if err := decodeLog(v, l); err != nil {
		return fmt.Errorf("raft log: entry %d: %w", index, err)
	}
	if l.Index != index {
		return fmt.Errorf("raft log: entry under index %d says index %d", index, l.Index)
	}
	return nil
}

// StoreLog implements raft.LogStore.
func (s *RaftLog) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore: all entries in one batch, committed with Sync.
func (s *RaftLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, l := range logs {
		op := b.SetDeferred(9, encodedLogLen(l))
		logKey(op.Key[:0], l.Index)
		appendLog(op.Value[:0], l)
		if err := op.Finish(); err != nil {
			return fmt.Errorf("raft log: store %d: %w", l.Index, err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raft log: store %d..%d: %w", logs[0].Index, logs[len(logs)-1].Index, err)
	}
	return nil
}

// DeleteRange implements raft.LogStore: removes [min, max] with one range deletion. Synced:
// raft also calls it to cut a conflicting suffix before appending the leader's entries.
func (s *RaftLog) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	end := []byte{raftPrefixLog + 1}
	if max < math.MaxUint64 {
		end = logKey(nil, max+1)
	}
	if err := s.db.DeleteRange(logKey(nil, min), end, pebble.Sync); err != nil {
		return fmt.Errorf("raft log: delete %d..%d: %w", min, max, err)
	}
	return nil
}

func stableKey(key []byte) []byte { return append([]byte{raftPrefixStable}, key...) }

// Set implements raft.StableStore (synced).
func (s *RaftLog) Set(key, val []byte) error {
	if err := s.db.Set(stableKey(key), val, pebble.Sync); err != nil {
		return fmt.Errorf("raft log: set %q: %w", key, err)
	}
	return nil
}

// Get implements raft.StableStore; a key never set is ErrKeyNotFound (as raft-boltdb).
func (s *RaftLog) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raft log: get %q: %w", key, err)
	}
	defer closer.Close()
	return append(make([]byte, 0, len(v)), v...), nil
}

// SetUint64 implements raft.StableStore (8 bytes big-endian, synced).
func (s *RaftLog) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 implements raft.StableStore; a key never set is ErrKeyNotFound, which raft reads
// as 0.
func (s *RaftLog) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raft log: %q holds %d bytes, not a uint64", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Log entry encoding, version 1:
//
//	0x01 index(uvarint) term(uvarint) type(byte) len(data)(uvarint) data
//	len(extensions)(uvarint) extensions appended_at(varint unix ns; 0 = zero time)
//
// A nil and an empty Data (or Extensions) both read back as nil.
func encodedLogLen(l *raft.Log) int {
	return 1 + uvarintLen(l.Index) + uvarintLen(l.Term) + 1 +
		uvarintLen(uint64(len(l.Data))) + len(l.Data) +
		uvarintLen(uint64(len(l.Extensions))) + len(l.Extensions) +
		varintLen(appendedAt(l.AppendedAt))
}

func appendedAt(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func appendLog(dst []byte, l *raft.Log) []byte {
	dst = append(dst, raftLogVersion)
	dst = binary.AppendUvarint(dst, l.Index)
	dst = binary.AppendUvarint(dst, l.Term)
	dst = append(dst, byte(l.Type))
	dst = binary.AppendUvarint(dst, uint64(len(l.Data)))
	dst = append(dst, l.Data...)
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	dst = append(dst, l.Extensions...)
	return binary.AppendVarint(dst, appendedAt(l.AppendedAt))
}

var errCorrupt = errors.New("corrupt")

// decodeLog decodes v into l; l's byte slices are copies (one allocation for both).
func decodeLog(v []byte, l *raft.Log) error {
	if len(v) == 0 || v[0] != raftLogVersion {
		if len(v) > 0 && v[0] > raftLogVersion {
			return fmt.Errorf("entry encoding version %d is newer than this smppd reads (%d)", v[0], raftLogVersion)
		}
		return fmt.Errorf("%w: encoding version byte %x", errCorrupt, v[:min(1, len(v))])
	}
	d := decoder{b: v[1:]}
	index, term, typ := d.uvarint(), d.uvarint(), d.byte()
	data := d.bytes()
	ext := d.bytes()
	at := d.varint()
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	if d.err != nil {
		return d.err
	}
	var buf []byte
	if n := len(data) + len(ext); n > 0 {
		buf = make([]byte, 0, n)
	}
	*l = raft.Log{Index: index, Term: term, Type: raft.LogType(typ)}
	if len(data) > 0 {
		buf = append(buf, data...)
		l.Data = buf[:len(data):len(data)]
	}
	if len(ext) > 0 {
		l.Extensions = append(buf[len(buf):], ext...)
	}
	if at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	return nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

var _ io.Closer = (*RaftLog)(nil)
