package store

import (
	"encoding/binary"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkRecord measures the receipt mapping write as the router makes it: many writers,
// each op a PutMapping of a decimal upstream id with a mapping value as router/deliver writes
// it (version, message_id, account "demo"), durable (fsync, group-committed) before Done.
// Reported: ops/s, ops per fsync group, table bytes per mapping after a flush and compaction.
func BenchmarkRecord(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Dir, cfg.Logger = b.TempDir(), slog.New(slog.DiscardHandler)
	l, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const writers, window = 16, 100
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem := make(chan struct{}, window)
			for i := w; i < b.N; i += writers {
				sem <- struct{}{}
				id := strconv.AppendUint(nil, uint64(i)*2654435761%10_000_000_000, 10)
				value := binary.BigEndian.AppendUint64([]byte{1}, 0x0554974cc1401000+uint64(i))
				value = append(value, 4, 'd', 'e', 'm', 'o')
				l.Do(funcOp{func(tx *Tx) { tx.PutMapping("sim", id, value) }, func(error) { <-sem }})
			}
			for range window {
				sem <- struct{}{}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	groups, ops := l.Commits()
	b.ReportMetric(float64(b.N)/el.Seconds(), "ops/s")
	b.ReportMetric(float64(ops)/float64(max(groups, 1)), "ops/group")
	if err := l.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := l.Compact(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(l.TableBytes())/float64(b.N), "disk_bytes/mapping")
}
