package dedup

import (
	"fmt"
	"testing"

	"github.com/smppd/smppd/smpp"
)

const (
	// 160 GSM 7-bit characters: a full single-part message.
	benchGSM7 = "Dear Anna, your order 4471-2231 from City Shop has been dispatched and will arrive on " +
		"Monday between 10:00 and 12:00. Track it at shop.example/t/8812. Thanks!!!"
	// 70 UCS2 characters: a full single-part Chinese message.
	benchUCS2 = "【城市商店】尊敬的客户，您的订单4471已发货，预计周一10:00至12:00送达。" +
		"请保持电话畅通，如有疑问请致电客服4008123456！"
)

func BenchmarkKey(b *testing.B) {
	acct := &smpp.Account{SystemID: "acme_prod"}
	m := msg(acct, "491701234567", 0, gsm7Bytes(b, benchGSM7))
	b.ReportAllocs()
	var k Key
	for b.Loop() {
		k = KeyOf(m)
	}
	_ = k
}

func BenchmarkBeginUnique(b *testing.B) {
	c := newClock()
	cfg := testConfig(c)
	cfg.MaxEntries = 1 << 20
	x, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	var n uint64
	next := func() Key { n++; return Key{n * 0x9E3779B97F4A7C15, n} }
	for i := 0; i < 2*cfg.MaxEntries; i++ { // reach the steady state: generations at their peak size
		if _, dup := x.Begin(next()); dup {
			b.Fatal("dup")
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		k := next()
		if _, dup := x.Begin(k); dup {
			b.Fatal("dup")
		}
		x.Accepted(k, n)
	}
}

func BenchmarkSimHashGSM7_160(b *testing.B) {
	p := gsm7Bytes(b, benchGSM7)
	if len(p) != 160 {
		b.Fatalf("len %d", len(p))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	s := &smpp.Submit{DataCoding: codingGSM7, ShortMessage: p}
	var fp uint64
	for b.Loop() {
		fp, _ = Fingerprint(s)
	}
	_ = fp
}

func BenchmarkSimHashUCS2_70(b *testing.B) {
	p := ucs2(benchUCS2)
	if len(p) != 140 {
		b.Fatalf("len %d", len(p))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	s := &smpp.Submit{DataCoding: codingUCS2, ShortMessage: p}
	var fp uint64
	for b.Loop() {
		fp, _ = Fingerprint(s)
	}
	_ = fp
}

// BenchmarkStage runs the whole stage on unique GSM 7-bit messages of 160 characters (an order
// number changes per message), each then accepted: exact duplicates only, and with the
// near-duplicate limiter; with an index that fits in the CPU caches (64K keys) and one that does
// not (1M keys, about 60 MB: each lookup a cache miss).
func BenchmarkStage(b *testing.B) {
	for _, near := range []bool{false, true} {
		for _, keys := range []int{1 << 16, 1 << 20} {
			name := fmt.Sprintf("exact/keys=%dK", keys>>10)
			if near {
				name = fmt.Sprintf("exact+near/keys=%dK", keys>>10)
			}
			b.Run(name, func(b *testing.B) {
				c := newClock()
				cfg := testConfig(c)
				cfg.MaxEntries = keys
				cfg.NearDup.Enabled = near
				cfg.NearDup.Max = 1 << 30
				s, err := NewStage(cfg)
				if err != nil {
					b.Fatal(err)
				}
				acct := &smpp.Account{SystemID: "acme_prod"}
				m := msg(acct, "491701234567", 0, gsm7Bytes(b, benchGSM7))
				m.Dest = 491701234567
				num := m.Submit.ShortMessage[22:31] // "4471-2231": the order number varies
				var n uint64
				step := func() {
					n++
					for i, v := 7, n; i >= 0; i, v = i-1, v/10 { // 8 digits: a new key
						num[i] = '0' + byte(v%10)
					}
					d := s.Decide(m, nil)
					if d.Action != Continue {
						b.Fatalf("%d: %+v", n, d)
					}
					s.Done(d.Key, smpp.StatusOK, n)
				}
				for i := 0; i < 2*keys; i++ { // the steady state: generations at their peak size
					step()
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					step()
				}
			})
		}
	}
}
