package store

import (
	"encoding/binary"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// BenchmarkRecord measures the receipt mapping write as the router makes it: many writers,
// each op a PutMapping of a 10-digit upstream id with a 30-byte value, durable (fsync,
// group-committed) before Done. Reported: ops/s, ops per fsync group, bytes on disk per mapping
// after a flush and compaction.
func BenchmarkRecord(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Dir, cfg.Logger = b.TempDir(), slog.New(slog.DiscardHandler)
	l, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const writers, window = 16, 100
	value := make([]byte, 30)
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
				id := binary.BigEndian.AppendUint64(nil, uint64(i)*2654435761)
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
	b.ReportMetric(float64(l.DiskBytes())/float64(b.N), "disk_bytes/mapping")
}
