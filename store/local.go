package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// Config configures a Local store.
type Config struct {
	Dir        string        // Pebble directory; created if missing
	MappingTTL time.Duration // mappings live at least this long, at most an hour more
	OutboxTTL  time.Duration // outbox items older than this are removed by Expire
	// QueueSize bounds the writes waiting for the writer; Do blocks when it is full
	// (backpressure on the caller, never a dropped write).
	QueueSize int
	// MaxGroup bounds the writes committed in one batch.
	MaxGroup int
	Logger   *slog.Logger
	// Now is the clock (tests move it); nil: time.Now.
	Now func() time.Time
	// CacheBytes is Pebble's block cache; MemTableBytes its memtable size.
	CacheBytes, MemTableBytes int64
	// RecentMappings is how many of the newest mappings are also kept in memory (in two
	// generations of half each), so the receipts that follow their messages within seconds
	// are matched without reading Pebble.
	RecentMappings int
}

// DefaultConfig returns the defaults documented in configs/dev.yaml (Dir is the caller's).
func DefaultConfig() Config {
	return Config{MappingTTL: 72 * time.Hour, OutboxTTL: 72 * time.Hour, QueueSize: 16384, MaxGroup: 4096,
		CacheBytes: 32 << 20, MemTableBytes: 32 << 20, RecentMappings: 1 << 18}
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("store: dir is required")
	case c.MappingTTL < time.Minute:
		return fmt.Errorf("mapping ttl: must be at least 1m, got %s", c.MappingTTL)
	case c.OutboxTTL < time.Minute:
		return fmt.Errorf("outbox ttl: must be at least 1m, got %s", c.OutboxTTL)
	case c.QueueSize < 1 || c.MaxGroup < 1:
		return errors.New("store: queue size and max group must be positive")
	case c.CacheBytes < 1<<20 || c.MemTableBytes < 1<<20:
		return errors.New("store: cache and memtable must be at least 1 MiB")
	case c.RecentMappings < 0:
		return errors.New("store: recent mappings must not be negative")
	}
	return nil
}

// ErrClosed is returned by Do after Close: the write was not made.
var ErrClosed = errors.New("store: closed")

// formatVersion is written under 'V' when a directory is created; Open refuses newer ones.
const formatVersion = 1

const (
	prefixMapping = 'M'
	prefixOutbox  = 'Q'
	keyVersion    = "V"
)

// Op is a write run by the writer goroutine. Ops run one at a time, in the order Do received
// them; several are grouped into one batch and committed together.
type Op interface {
	// Apply makes the op's reads and writes through tx; reads see the writes of the ops
	// before it, committed or in the same group.
	Apply(tx *Tx)
	// Done is called once the group holding the op is committed and synced (err nil) or failed;
	// in order, on the store's syncer goroutine (not the one Apply runs on), so it must not
	// block and must not touch what only Apply may.
	Done(err error)
}

// Local is the node's durable local state (see the package doc). Do is safe for concurrent
// use; Tx methods only inside Apply; the read methods (Outbox, Pending) see committed state.
type Local struct {
	cfg  Config
	log  *slog.Logger
	db   *pebble.DB
	ops  chan Op
	stop chan struct{}
	done chan struct{}

	// owned by the writer goroutine (and by Open before it starts)
	lastSeq      uint64
	tx           Tx
	recent, prev map[string]recentMapping // the newest mappings, by upstream 0x00 id

	commits, committed atomic.Uint64 // groups and ops committed

	closeOnce sync.Once
	mu        sync.Mutex // guards closed against Do racing Close
	closed    bool
}

// Open opens (or creates) the store in cfg.Dir and starts its writer.
func Open(cfg Config) (*Local, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger.With("component", "store")
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	cache := pebble.NewCache(cfg.CacheBytes)
	defer cache.Unref()
	opts := &pebble.Options{Logger: pebbleLogger{log}, Cache: cache, MemTableSize: uint64(cfg.MemTableBytes)}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10) // receipts look up ids that may be absent
	}
	db, err := pebble.Open(filepath.Clean(cfg.Dir), opts)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Dir, err)
	}
	l := &Local{cfg: cfg, log: log, db: db, ops: make(chan Op, cfg.QueueSize),
		stop: make(chan struct{}), done: make(chan struct{}), recent: map[string]recentMapping{}}
	if err := l.checkVersion(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if l.lastSeq, err = l.maxSeq(); err != nil {
		_ = db.Close()
		return nil, err
	}
	go l.writer()
	return l, nil
}

func (l *Local) checkVersion() error {
	v, closer, err := l.db.Get([]byte(keyVersion))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return l.db.Set([]byte(keyVersion), []byte{formatVersion}, pebble.Sync)
	case err != nil:
		return fmt.Errorf("store: read version: %w", err)
	}
	defer closer.Close()
	if len(v) != 1 || v[0] > formatVersion {
		return fmt.Errorf("store: %s was written by a newer smppd (format %v, this one reads up to %d)", l.cfg.Dir, v, formatVersion)
	}
	return nil
}

// maxSeq returns the largest outbox sequence number on disk, so new ones stay unique even if
// the clock went back.
func (l *Local) maxSeq() (uint64, error) {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixOutbox}, UpperBound: []byte{prefixOutbox + 1}})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var max uint64
	for ok := it.First(); ok; {
		k := it.Key()
		acct := append([]byte(nil), k[1:len(k)-9]...)
		if it.SeekLT(outboxKey(nil, acct, ^uint64(0))); it.Valid() {
			k = it.Key()
			if s := binary.BigEndian.Uint64(k[len(k)-8:]); s > max {
				max = s
			}
		}
		ok = it.SeekGE(append(append([]byte{prefixOutbox}, acct...), 1))
	}
	return max, it.Error()
}

// Do hands op to the writer; it blocks while the queue is full. After Close, op.Done(ErrClosed)
// is called at once.
func (l *Local) Do(op Op) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		op.Done(ErrClosed)
		return
	}
	// Holding mu while blocked on a full queue is fine: only Close takes mu, and the writer,
	// which drains the queue, never does.
	l.ops <- op
	l.mu.Unlock()
}

// Close finishes the queued writes, stops the writer and closes Pebble.
func (l *Local) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.stop)
		l.mu.Unlock()
		<-l.done
		err = l.db.Close()
	})
	return err
}

// group is a batch of ops applied together, on its way to the syncer.
type group struct {
	ops []Op
	b   *pebble.Batch // nil: nothing to write
	err error
}

// writer applies groups of ops and hands each to the syncer once Pebble has it in the memtable
// (visible to the next group's reads) and in the WAL, its fsync under way: the next group is
// built while this one's fsync runs, and Pebble folds the syncs of consecutive groups together.
func (l *Local) writer() {
	syncq := make(chan *group, 2) // groups whose fsync is awaited; bounds the pipeline
	synced := make(chan struct{})
	go l.syncer(syncq, synced)
	defer func() {
		close(syncq)
		<-synced
		close(l.done)
	}()
	for {
		var op Op
		select {
		case op = <-l.ops:
		case <-l.stop:
			// Do cannot add more (closed is set under mu before stop closes): drain what is queued.
			for {
				select {
				case op = <-l.ops:
					syncq <- l.apply([]Op{op})
				default:
					return
				}
			}
		}
		ops := append(make([]Op, 0, 64), op)
	fill:
		for len(ops) < l.cfg.MaxGroup {
			select {
			case op = <-l.ops:
				ops = append(ops, op)
			default:
				break fill
			}
		}
		syncq <- l.apply(ops)
	}
}

// apply runs the ops into one batch and starts its commit without waiting for the fsync.
func (l *Local) apply(ops []Op) *group {
	g := &group{ops: ops}
	b := l.db.NewIndexedBatch()
	l.tx = Tx{l: l, b: b, now: l.cfg.Now()}
	for _, op := range ops {
		op.Apply(&l.tx)
	}
	switch {
	case l.tx.err != nil:
		g.err = l.tx.err // nothing of the group is written
		_ = b.Close()
	case b.Empty():
		_ = b.Close()
	default:
		if g.err = l.db.ApplyNoSyncWait(b, pebble.Sync); g.err != nil {
			_ = b.Close()
		} else {
			g.b = b
		}
	}
	l.tx = Tx{}
	return g
}

// syncer waits for each group's fsync, in order, and tells its ops.
func (l *Local) syncer(syncq <-chan *group, synced chan<- struct{}) {
	defer close(synced)
	for g := range syncq {
		if g.b != nil {
			g.err = g.b.SyncWait()
			_ = g.b.Close()
		}
		if g.err != nil {
			l.log.Error("store write failed", "ops", len(g.ops), "err", g.err)
		} else {
			l.commits.Add(1)
			l.committed.Add(uint64(len(g.ops)))
		}
		for _, op := range g.ops {
			op.Done(g.err)
		}
	}
}

// Tx is the writer's view inside Op.Apply: one Pebble batch for the group.
type Tx struct {
	l   *Local
	b   *pebble.Batch
	now time.Time
	key []byte // scratch
	err error  // the first write error; fails the group
}

// Now is the group's time, read once per group.
func (tx *Tx) Now() time.Time { return tx.now }

func (tx *Tx) fail(err error) {
	if err != nil && tx.err == nil {
		tx.err = err
	}
}

func hourOf(t time.Time) uint32 { return uint32(t.Unix() / 3600) }

func mappingKey(dst []byte, hour uint32, upstream string, id []byte) []byte {
	dst = append(dst, prefixMapping)
	dst = binary.BigEndian.AppendUint32(dst, hour)
	dst = append(append(dst, upstream...), 0)
	return append(dst, id...)
}

// Mapping identifies a stored mapping for SetMapping.
type Mapping struct{ hour uint32 }

type recentMapping struct {
	hour  uint32
	value []byte
}

// remember keeps a mapping in the recent generation, rotating generations when it is full.
func (l *Local) remember(upstream string, id []byte, hour uint32, value []byte) {
	if l.cfg.RecentMappings == 0 {
		return
	}
	if len(l.recent) >= l.cfg.RecentMappings/2 {
		l.prev, l.recent = l.recent, make(map[string]recentMapping, l.cfg.RecentMappings/2)
	}
	l.recent[upstream+"\x00"+string(id)] = recentMapping{hour, append([]byte(nil), value...)}
}

// recall finds a mapping in memory; its key is built in scratch.
func (l *Local) recall(scratch []byte, upstream string, id []byte) (recentMapping, []byte, bool) {
	scratch = append(append(append(scratch[:0], upstream...), 0), id...)
	if m, ok := l.recent[string(scratch)]; ok {
		return m, scratch, true
	}
	m, ok := l.prev[string(scratch)]
	return m, scratch, ok
}

// PutMapping stores value under (upstream, id) in the bucket of the group's time.
func (tx *Tx) PutMapping(upstream string, id, value []byte) Mapping {
	h := hourOf(tx.now)
	tx.key = mappingKey(tx.key[:0], h, upstream, id)
	tx.fail(tx.b.Set(tx.key, value, nil))
	tx.l.remember(upstream, id, h, value)
	return Mapping{h}
}

// SetMapping replaces the value of a mapping GetMapping found.
func (tx *Tx) SetMapping(m Mapping, upstream string, id, value []byte) {
	tx.key = mappingKey(tx.key[:0], m.hour, upstream, id)
	tx.fail(tx.b.Set(tx.key, value, nil))
	tx.l.remember(upstream, id, m.hour, value)
}

// GetMapping finds the newest mapping of (upstream, id) younger than the TTL and appends its
// value to dst.
func (tx *Tx) GetMapping(dst []byte, upstream string, id []byte) ([]byte, Mapping, bool) {
	now := int64(hourOf(tx.now))
	oldest := int64(hourOf(tx.now.Add(-tx.l.cfg.MappingTTL)))
	var rm recentMapping
	var ok bool
	if rm, tx.key, ok = tx.l.recall(tx.key, upstream, id); ok && int64(rm.hour) >= oldest {
		return append(dst, rm.value...), Mapping{rm.hour}, true
	}
	for h := now + 1; h >= oldest; h-- { // now+1: a clock that stepped back an hour
		tx.key = mappingKey(tx.key[:0], uint32(h), upstream, id)
		v, closer, err := tx.b.Get(tx.key)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			tx.fail(err)
			return dst, Mapping{}, false
		}
		dst = append(dst, v...)
		_ = closer.Close()
		return dst, Mapping{uint32(h)}, true
	}
	return dst, Mapping{}, false
}

func outboxKey(dst []byte, account []byte, seq uint64) []byte {
	dst = append(dst, prefixOutbox)
	dst = append(append(dst, account...), 0)
	return binary.BigEndian.AppendUint64(dst, seq)
}

// Enqueue appends value to account's outbox and returns its sequence number.
func (tx *Tx) Enqueue(account string, value []byte) uint64 {
	l := tx.l
	l.lastSeq = max(l.lastSeq+1, uint64(tx.now.UnixNano()))
	tx.key = outboxKey(tx.key[:0], []byte(account), l.lastSeq)
	tx.fail(tx.b.Set(tx.key, value, nil))
	return l.lastSeq
}

// Remove deletes an outbox item.
func (tx *Tx) Remove(account string, seq uint64) {
	tx.key = outboxKey(tx.key[:0], []byte(account), seq)
	tx.fail(tx.b.Delete(tx.key, nil))
}

// ExpireOp removes mappings older than the mapping TTL and outbox items older than the outbox
// TTL, as of the group's time; Expired is called (in Apply) with each account's count.
type ExpireOp struct {
	Expired func(account string, n int)
	Err     func(error)
}

// Apply implements Op.
func (e *ExpireOp) Apply(tx *Tx) {
	l := tx.l
	oldest := hourOf(tx.now.Add(-l.cfg.MappingTTL))
	for _, m := range []map[string]recentMapping{l.recent, l.prev} {
		for k, v := range m {
			if v.hour < oldest {
				delete(m, k)
			}
		}
	}
	tx.fail(tx.b.DeleteRange([]byte{prefixMapping}, binary.BigEndian.AppendUint32([]byte{prefixMapping}, oldest), nil))
	cutoff := uint64(tx.now.Add(-l.cfg.OutboxTTL).UnixNano())
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixOutbox}, UpperBound: []byte{prefixOutbox + 1}})
	if err != nil {
		tx.fail(err)
		return
	}
	defer it.Close()
	for ok := it.First(); ok; {
		k := it.Key()
		acct := append([]byte(nil), k[1:len(k)-9]...)
		n := 0
		for ; ok && bytes.Equal(it.Key()[1:len(it.Key())-9], acct) && binary.BigEndian.Uint64(it.Key()[len(it.Key())-8:]) < cutoff; ok = it.Next() {
			n++
		}
		if n > 0 {
			tx.fail(tx.b.DeleteRange(outboxKey(nil, acct, 0), outboxKey(nil, acct, cutoff), nil))
			if e.Expired != nil {
				e.Expired(string(acct), n)
			}
		}
		ok = it.SeekGE(append(append([]byte{prefixOutbox}, acct...), 1))
	}
	tx.fail(it.Error())
}

// Done implements Op.
func (e *ExpireOp) Done(err error) {
	if err != nil && e.Err != nil {
		e.Err(err)
	}
}

// Outbox calls fn with account's outbox items whose sequence number is in (after, upto], in
// order, until fn returns false or limit items were seen. value is valid only during fn.
// Items become visible to Outbox when their group is applied, before its fsync: callers
// bound upto by the sequence numbers they were told are durable.
func (l *Local) Outbox(account string, after, upto uint64, limit int, fn func(seq uint64, value []byte) bool) error {
	if upto <= after {
		return nil
	}
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: outboxKey(nil, []byte(account), after+1),
		UpperBound: outboxKey(nil, []byte(account), upto+1)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok && limit > 0; ok = it.Next() {
		k := it.Key()
		if !fn(binary.BigEndian.Uint64(k[len(k)-8:]), it.Value()) {
			break
		}
		limit--
	}
	return it.Error()
}

// Pending counts the outbox items per account (at startup: what is waiting, all durable).
func (l *Local) Pending() (map[string]int, error) {
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixOutbox}, UpperBound: []byte{prefixOutbox + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string]int{}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		out[string(k[1:len(k)-9])]++
	}
	return out, it.Error()
}

// Commits returns the number of groups committed and the ops they held.
func (l *Local) Commits() (groups, ops uint64) { return l.commits.Load(), l.committed.Load() }

// DiskBytes returns the store's size on disk: tables, write-ahead logs (Pebble keeps a few
// old ones to recycle), manifest.
func (l *Local) DiskBytes() uint64 { return l.db.Metrics().DiskSpaceUsage() }

// TableBytes returns the size of the store's tables: its data, without the logs.
func (l *Local) TableBytes() uint64 { m := l.db.Metrics(); return uint64(m.Total().TablesSize) }

// Flush flushes memtables to sstables (tests and benchmarks measuring disk use).
func (l *Local) Flush() error { return l.db.Flush() }

// Compact compacts the whole key space (tests and benchmarks measuring reclaimed space).
func (l *Local) Compact() error {
	return l.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true)
}

type pebbleLogger struct{ log *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.log.Debug(fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.log.Error(fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.log.Error(fmt.Sprintf(format, args...))
	os.Exit(1)
}

var _ io.Closer = (*Local)(nil)
