package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// SentCount is how many messages one reporter (a node, per boot) sent for an account through an
// upstream channel in one time bucket: an absolute count, not an increment (CmdSentCounts).
type SentCount struct {
	Bucket  int64  `json:"bucket"` // unix ms, start of the bucket (the reporter chooses the bucket size)
	Account string `json:"account"`
	Channel string `json:"channel"`
	Sent    uint64 `json:"sent"`
}

// fsmPrefixCounter keys the sent counters:
//
//	'c' bucket(u64) len(account)(uvarint) account len(channel)(uvarint) channel reporter -> sent(uvarint)
const fsmPrefixCounter = 'c'

func appendCounterKey(dst []byte, c *SentCount, reporter string) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, fsmPrefixCounter), uint64(c.Bucket))
	dst = appendString(appendString(dst, c.Account), c.Channel)
	return append(dst, reporter...)
}

// counterBound is the first counter key of bucket (every counter before it has an earlier one).
func counterBound(bucket int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{fsmPrefixCounter}, uint64(bucket))
}

// decodeCounter reads a stored counter (the value only when v is not nil).
func decodeCounter(k, v []byte) (SentCount, string, error) {
	if len(k) < 9 || k[0] != fsmPrefixCounter {
		return SentCount{}, "", fmt.Errorf("corrupt counter key %x", k)
	}
	c := SentCount{Bucket: int64(binary.BigEndian.Uint64(k[1:9]))}
	d := decoder{b: k[9:]}
	c.Account, c.Channel = d.str(""), d.str("")
	reporter := string(d.b)
	if d.err != nil {
		return SentCount{}, "", fmt.Errorf("corrupt counter key %x: %v", k, d.err)
	}
	if v != nil {
		sent, n := binary.Uvarint(v)
		if n <= 0 || n != len(v) {
			return SentCount{}, "", fmt.Errorf("counter %x: corrupt value %x", k, v)
		}
		c.Sent = sent
	}
	return c, reporter, nil
}

// sentCounts applies a CmdSentCounts: each counter becomes the larger of its stored and reported
// values (a retried or repeated report changes nothing, a stale one never lowers a count), then
// every counter of a bucket before cutoff (if positive) is removed, those just reported included.
func (a *applier) sentCounts(reporter string, counts []SentCount, cutoff int64) {
	b := a.batch()
	for i := range counts {
		c := &counts[i]
		a.kb = appendCounterKey(a.kb[:0], c, reporter)
		v, closer, err := b.Get(a.kb)
		switch {
		case err == nil:
			stored, n := binary.Uvarint(v)
			if n <= 0 || n != len(v) {
				panic(fmt.Sprintf("store: fsm: counter %x: corrupt value %x", a.kb, v))
			}
			closer.Close()
			if c.Sent <= stored {
				continue
			}
		case !errors.Is(err, pebble.ErrNotFound):
			must(err)
		}
		a.vb = binary.AppendUvarint(a.vb[:0], c.Sent)
		must(b.Set(a.kb, a.vb, nil))
	}
	if cutoff <= 0 {
		return
	}
	// A range deletion only if there is something to delete: reports come every few seconds,
	// and most find nothing new to prune.
	lower, upper := []byte{fsmPrefixCounter}, counterBound(cutoff)
	it, err := b.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	must(err)
	found := it.First()
	must(closeIter(it))
	if found {
		must(b.DeleteRange(lower, upper, nil))
	}
}

// SentCounts calls fn with every sent counter of a bucket at or after from, with its reporter,
// in key order (bucket, then account and channel each by length then bytes, then reporter), until
// fn returns false. The counters are read from one consistent view; fn may call the FSM.
func (f *FSM) SentCounts(from int64, fn func(c SentCount, reporter string) bool) error {
	if err := f.readable(); err != nil {
		return err
	}
	it, err := f.db.NewIter(&pebble.IterOptions{LowerBound: counterBound(max(from, 0)), UpperBound: []byte{fsmPrefixCounter + 1}})
	f.mu.RUnlock() // the iterator is the consistent view; fn does not hold up a restore
	if err != nil {
		return fmt.Errorf("fsm: sent counts: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		c, reporter, err := decodeCounter(it.Key(), it.Value())
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("fsm: sent counts: %w", err)
		}
		if !fn(c, reporter) {
			break
		}
	}
	if err := closeIter(it); err != nil {
		return fmt.Errorf("fsm: sent counts: %w", err)
	}
	return nil
}

// snapshotCounters calls fn with every counter's key and value in r, in key order.
func snapshotCounters(r reader, fn func(k, v []byte) bool) error {
	it, err := r.NewIter(prefixBounds(fsmPrefixCounter))
	if err != nil {
		return err
	}
	for ok := it.First(); ok && fn(it.Key(), it.Value()); ok = it.Next() {
	}
	return closeIter(it)
}
