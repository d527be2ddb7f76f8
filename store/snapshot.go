package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	"github.com/zeebo/xxh3"
)

// FSM snapshot stream, formats 1 and 2:
//
//	header:  magic "SMPPDFSM" format(uvarint) applied_index(uvarint) entries(uvarint)
//	         counters(uvarint, format 2 only)
//	records: type(1) then
//	         0x01 entry         number_delta(uvarint) kind(1) account sender reason source
//	                            upstream created(uvarint) expires(uvarint)
//	         0x02 node version  node_id version
//	         0x03 sent counter  bucket(uvarint) account channel reporter sent(uvarint)  (format 2 only)
//	         0xff end           crc32c(4, big-endian) of every byte before it, 0xff included
//
// Entries come first, in key order (so number deltas are never negative; the first is the
// number itself), then node versions in id order, then sent counters in key order. Strings are
// uvarint length then bytes. Format 2 adds the counters; a state without any is written in
// format 1, which releases before the counters read.
const (
	snapMagic        = "SMPPDFSM"
	snapFormat       = 2 // the newest format: read, and written when the state has counters
	snapFormatV1     = 1 // written when the state has no counters
	snapRecEntry     = 0x01
	snapRecNode      = 0x02
	snapRecCounter   = 0x03
	snapRecEnd       = 0xff
	snapChunk        = 64 << 10 // bytes written (and read) at a time
	snapRestoreBatch = 1 << 20  // bytes of Pebble batch per commit during a restore
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrSnapshotCorrupt: a snapshot stream failed its checks (magic, order, counts, checksum).
var ErrSnapshotCorrupt = errors.New("store: corrupt fsm snapshot")

// Snapshot implements raft.FSM: a Pebble snapshot (cheap, consistent) that Persist streams.
// Raft calls it on the FSM goroutine, so no Apply runs between reading the applied index and
// the counts and taking the snapshot.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, ErrClosed
	}
	if f.broken != nil {
		return nil, ErrRestoreFailed
	}
	n := 0
	for _, c := range f.counts {
		n += c
	}
	return &fsmSnapshot{snap: f.db.NewSnapshot(), applied: f.applied.Load(), entries: n}, nil
}

// fsmSnapshot is a point-in-time view of the state; Persist may run concurrently with Apply.
type fsmSnapshot struct {
	snap    *pebble.Snapshot
	applied uint64
	entries int
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() { _ = s.snap.Close() }

// snapWriter buffers records and checksums what it writes.
type snapWriter struct {
	w   io.Writer
	buf []byte
	h   hash.Hash32
	err error
}

func (w *snapWriter) flush() {
	if w.err == nil && len(w.buf) > 0 {
		w.h.Write(w.buf)
		_, w.err = w.w.Write(w.buf)
	}
	w.buf = w.buf[:0]
}

func (s *fsmSnapshot) write(out io.Writer) error {
	counters := 0
	if err := snapshotCounters(s.snap, func(_, _ []byte) bool { counters++; return true }); err != nil {
		return err
	}
	w := &snapWriter{w: out, buf: make([]byte, 0, snapChunk+8<<10), h: crc32.New(castagnoli)}
	w.buf = append(w.buf, snapMagic...)
	if counters == 0 {
		w.buf = binary.AppendUvarint(w.buf, snapFormatV1)
	} else {
		w.buf = binary.AppendUvarint(w.buf, snapFormat)
	}
	w.buf = binary.AppendUvarint(w.buf, s.applied)
	w.buf = binary.AppendUvarint(w.buf, uint64(s.entries))
	if counters > 0 {
		w.buf = binary.AppendUvarint(w.buf, uint64(counters))
	}
	n, prev := 0, uint64(0)
	err := scanEntries(s.snap, nil, nil, func(e Entry) bool {
		w.buf = append(w.buf, snapRecEntry)
		w.buf = binary.AppendUvarint(w.buf, e.Number-prev)
		w.buf = append(w.buf, byte(e.Kind))
		w.buf = appendString(appendString(w.buf, e.Scope.Account), e.Scope.Sender)
		w.buf = appendString(appendString(appendString(w.buf, e.Reason), e.Source), e.Upstream)
		w.buf = binary.AppendUvarint(binary.AppendUvarint(w.buf, uint64(e.Created)), uint64(e.Expires))
		prev = e.Number
		n++
		if len(w.buf) >= snapChunk {
			w.flush()
		}
		return w.err == nil
	})
	if err == nil {
		err = w.err
	}
	if err != nil {
		return err
	}
	if n != s.entries {
		return fmt.Errorf("%d entries in the snapshot, %d counted: the in-memory counts are out of step", n, s.entries)
	}
	it, err := s.snap.NewIter(prefixBounds(fsmPrefixNode))
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		w.buf = append(w.buf, snapRecNode)
		w.buf = append(binary.AppendUvarint(w.buf, uint64(len(it.Key())-1)), it.Key()[1:]...)
		w.buf = append(binary.AppendUvarint(w.buf, uint64(len(it.Value()))), it.Value()...)
	}
	if err := closeIter(it); err != nil {
		return err
	}
	var cerr error
	err = snapshotCounters(s.snap, func(k, v []byte) bool {
		c, reporter, err := decodeCounter(k, v)
		if err != nil {
			cerr = err
			return false
		}
		w.buf = binary.AppendUvarint(append(w.buf, snapRecCounter), uint64(c.Bucket))
		w.buf = appendString(appendString(appendString(w.buf, c.Account), c.Channel), reporter)
		w.buf = binary.AppendUvarint(w.buf, c.Sent)
		if len(w.buf) >= snapChunk {
			w.flush()
		}
		return w.err == nil
	})
	if err == nil {
		err = cerr
	}
	if err == nil {
		err = w.err
	}
	if err != nil {
		return err
	}
	w.buf = append(w.buf, snapRecEnd)
	w.flush()
	w.buf = binary.BigEndian.AppendUint32(w.buf, w.h.Sum32())
	w.flush()
	return w.err
}

// snapReader decodes a snapshot stream from a window of buffered bytes, checksumming the bytes
// as they are consumed.
type snapReader struct {
	r   io.Reader
	buf []byte // buf[off:] is unread
	off int
	eof bool
	h   hash.Hash32
}

// fill makes at least n unread bytes available unless the stream ends first.
func (r *snapReader) fill(n int) error {
	for len(r.buf)-r.off < n && !r.eof {
		if r.off > 0 {
			r.buf = append(r.buf[:0], r.buf[r.off:]...)
			r.off = 0
		}
		if cap(r.buf)-len(r.buf) < snapChunk {
			r.buf = slices.Grow(r.buf, snapChunk)
		}
		m, err := r.r.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+m]
		if errors.Is(err, io.EOF) {
			r.eof = true
		} else if err != nil {
			return err
		}
	}
	return nil
}

// record decodes one record with fn from the unread bytes (a record is at most a few KB:
// every string is at most MaxFieldLen) and checksums the bytes it took.
func (r *snapReader) record(fn func(d *decoder)) error {
	if err := r.fill(snapChunk / 2); err != nil {
		return err
	}
	d := decoder{b: r.buf[r.off:]}
	fn(&d)
	if d.err != nil {
		if errors.Is(d.err, errTruncated) && r.eof {
			return fmt.Errorf("%w: truncated", ErrSnapshotCorrupt)
		}
		return fmt.Errorf("%w: %v", ErrSnapshotCorrupt, d.err)
	}
	used := len(r.buf) - r.off - len(d.b)
	r.h.Write(r.buf[r.off : r.off+used])
	r.off += used
	return nil
}

type snapHeader struct {
	format, applied, entries, counters uint64
}

func (r *snapReader) header() (snapHeader, error) {
	var h snapHeader
	var magic []byte
	err := r.record(func(d *decoder) {
		if len(d.b) < len(snapMagic) {
			d.err = errTruncated
			return
		}
		magic, d.b = d.b[:len(snapMagic)], d.b[len(snapMagic):]
		h.format, h.applied, h.entries = d.uvarint(), d.uvarint(), d.uvarint()
		if h.format >= 2 {
			h.counters = d.uvarint()
		}
	})
	switch {
	case err != nil:
		return h, err
	case string(magic) != snapMagic:
		return h, fmt.Errorf("%w: not an smppd fsm snapshot (magic %q)", ErrSnapshotCorrupt, magic)
	case h.format == 0:
		return h, fmt.Errorf("%w: format 0", ErrSnapshotCorrupt)
	case h.format > snapFormat:
		return h, fmt.Errorf("store: fsm snapshot format %d is newer than this release reads (%d): upgrade this node", h.format, snapFormat)
	}
	return h, nil
}

// Restore implements raft.FSM. A snapshot whose applied index is not above AppliedIndex is
// already contained in the state (raft restores its latest snapshot at every start, and the
// state here persists): it is left unread and the state kept. Otherwise the state is replaced:
// one batch deletes it and the applied index, batches write the snapshot's records as they are
// read and checked, and the last batch (synced) writes the applied index; then the Indexer is
// Reset. If the stream fails its checks half way, the state is incomplete (no applied index):
// the FSM refuses reads and Apply (ErrRestoreFailed) until a Restore succeeds, and a restart
// restores raft's latest snapshot (AppliedIndex is 0).
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	r := &snapReader{r: rc, buf: make([]byte, 0, 2*snapChunk), h: crc32.New(castagnoli)}
	hdr, err := r.header()
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if cur := f.applied.Load(); hdr.applied <= cur && f.broken == nil {
		f.log.Info("snapshot already contained in the state: kept the state", "snapshot_index", hdr.applied, "applied_index", cur)
		return nil
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return ErrClosed
	}
	err = f.restore(r, hdr)
	if err != nil {
		f.broken = err
	} else {
		f.broken = nil
	}
	f.mu.Unlock()
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	f.log.Info("fsm restored from snapshot", "applied_index", hdr.applied, "entries", hdr.entries, "counters", hdr.counters)
	return f.resetIndexer()
}

// restore replaces the state with the stream's; f.mu is held.
func (f *FSM) restore(r *snapReader, hdr snapHeader) error {
	b := f.db.NewBatch()
	for _, p := range []byte{fsmPrefixEntry, fsmPrefixNode, fsmPrefixExpiry, fsmPrefixCounter} {
		if err := b.DeleteRange([]byte{p}, []byte{p + 1}, nil); err != nil {
			b.Close()
			return err
		}
	}
	if err := b.Delete([]byte{fsmKeyApplied}, nil); err != nil {
		b.Close()
		return err
	}
	f.applied.Store(0)
	f.counts = [kindSlots]int{}
	clear(f.versions)
	f.filter.reset(int(min(hdr.entries, 1<<26)))
	// The deletion need not be synced: Pebble recovers a prefix of the committed batches, and
	// every prefix either has the old applied index with the old state or none.
	var counts [kindSlots]int
	versions := map[string]string{}
	var n, nc, prevNumber uint64
	var prevKey, prevNode, prevCounter, kb, vb []byte
	var stage byte // the type of the last record: entries, then nodes, then counters
	commit := func(sync *pebble.WriteOptions) error {
		err := b.Commit(sync)
		b.Close()
		b = f.db.NewBatch()
		return err
	}
	for {
		var typ byte
		var e Entry
		var node, version, reporter string
		var c SentCount
		err := r.record(func(d *decoder) {
			switch typ = d.byte(); typ {
			case snapRecEntry:
				e.Number = prevNumber + d.uvarint()
				e.Kind = Kind(d.byte())
				e.Scope.Account, e.Scope.Sender = d.str(""), d.str("")
				e.Reason, e.Source, e.Upstream = d.str(""), d.str(""), d.str("")
				e.Created, e.Expires = int64(d.uvarint()), int64(d.uvarint())
			case snapRecNode:
				node, version = d.str(""), d.str("")
			case snapRecCounter:
				c.Bucket = int64(d.uvarint())
				c.Account, c.Channel, reporter = d.str(""), d.str(""), d.str("")
				c.Sent = d.uvarint()
			case snapRecEnd:
			default:
				if d.err == nil {
					d.err = fmt.Errorf("unknown record type %#x", typ)
				}
			}
		})
		if err != nil {
			b.Close()
			return err
		}
		if typ != snapRecEnd {
			if typ < stage {
				b.Close()
				return fmt.Errorf("%w: record type %#x after %#x", ErrSnapshotCorrupt, typ, stage)
			}
			stage = typ
		}
		switch typ {
		case snapRecEntry:
			if e.Kind == 0 || int(e.Kind) >= kindSlots {
				b.Close()
				return fmt.Errorf("%w: entry %d: kind %d", ErrSnapshotCorrupt, n, e.Kind)
			}
			kb = appendEntryKey(kb[:0], e.Key)
			if prevKey != nil && bytes.Compare(kb, prevKey) <= 0 {
				b.Close()
				return fmt.Errorf("%w: entry %d out of order", ErrSnapshotCorrupt, n)
			}
			prevKey = append(prevKey[:0], kb...)
			prevNumber = e.Number
			vb = appendEntryValue(vb[:0], &e)
			_ = b.Set(kb, vb, nil)
			f.filter.add(xxh3.Hash(kb))
			if e.Expires != 0 {
				_ = b.Set(expiryKey(e.Expires, kb), nil, nil)
			}
			counts[e.Kind]++
			n++
		case snapRecNode:
			if prevNode != nil && node <= string(prevNode) {
				b.Close()
				return fmt.Errorf("%w: node versions out of order", ErrSnapshotCorrupt)
			}
			prevNode = append(prevNode[:0], node...)
			_ = b.Set(append([]byte{fsmPrefixNode}, node...), []byte(version), nil)
			versions[node] = version
		case snapRecCounter:
			switch {
			case hdr.format < 2:
				b.Close()
				return fmt.Errorf("%w: a counter in a format %d snapshot", ErrSnapshotCorrupt, hdr.format)
			case c.Bucket < 0:
				b.Close()
				return fmt.Errorf("%w: counter %d: bucket %d", ErrSnapshotCorrupt, nc, c.Bucket)
			}
			kb = appendCounterKey(kb[:0], &c, reporter)
			if prevCounter != nil && bytes.Compare(kb, prevCounter) <= 0 {
				b.Close()
				return fmt.Errorf("%w: counter %d out of order", ErrSnapshotCorrupt, nc)
			}
			prevCounter = append(prevCounter[:0], kb...)
			vb = binary.AppendUvarint(vb[:0], c.Sent)
			_ = b.Set(kb, vb, nil)
			nc++
		case snapRecEnd:
			sum := r.h.Sum32()
			if err := r.fill(5); err != nil {
				b.Close()
				return err
			}
			switch {
			case len(r.buf)-r.off < 4:
				b.Close()
				return fmt.Errorf("%w: truncated checksum", ErrSnapshotCorrupt)
			case len(r.buf)-r.off > 4:
				b.Close()
				return fmt.Errorf("%w: bytes after the checksum", ErrSnapshotCorrupt)
			case binary.BigEndian.Uint32(r.buf[r.off:]) != sum:
				b.Close()
				return fmt.Errorf("%w: checksum mismatch", ErrSnapshotCorrupt)
			case n != hdr.entries:
				b.Close()
				return fmt.Errorf("%w: %d entries, header says %d", ErrSnapshotCorrupt, n, hdr.entries)
			case nc != hdr.counters:
				b.Close()
				return fmt.Errorf("%w: %d counters, header says %d", ErrSnapshotCorrupt, nc, hdr.counters)
			}
			_ = b.Set([]byte{fsmKeyApplied}, binary.BigEndian.AppendUint64(nil, hdr.applied), nil)
			if err := commit(pebble.Sync); err != nil {
				b.Close()
				return err
			}
			b.Close()
			f.counts, f.versions = counts, versions
			f.applied.Store(hdr.applied)
			return nil
		}
		if b.Len() >= snapRestoreBatch {
			if err := commit(pebble.NoSync); err != nil {
				b.Close()
				return err
			}
		}
	}
}
