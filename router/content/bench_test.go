package content

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/smppd/smppd/smpp"
)

// Texts of full single segments: 160 GSM characters, 70 UCS2 characters.
var (
	gsm160 = fit("Dear customer, your parcel 4711 is waiting at the depot. Please confirm a delivery time by "+
		"replying YES, or call 0800 123 456 before 6 pm. Thank you, Parcel Service Ltd.", 160)
	chinese70 = fit("尊敬的客户您好，您的包裹已到达本市配送中心，请于今日下午五点前联系快递员确认送货时间，"+
		"如有疑问请致电客服热线，谢谢您的支持与配合，祝您生活愉快。", 70)
)

// fit cuts or pads s (with dots) to n characters.
func fit(s string, n int) string {
	r := []rune(s)
	for len(r) < n {
		r = append(r, '.')
	}
	return string(r[:n])
}

// keywordRules generates n plausible Chinese keywords (2-4 characters drawn from the built-in
// table's simplified characters and common ones) and english English ones (two pseudo-words),
// deterministically, as monitor rules so that a search always reads the whole text.
func keywordRules(n, english int) string {
	pool := []rune("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴切朝冲号银款贷奖赌博领免费")
	rng := rand.New(rand.NewPCG(2024, 6000))
	var b strings.Builder
	seen := map[string]bool{}
	for len(seen) < n {
		w := make([]rune, 2+rng.IntN(3))
		for i := range w {
			w[i] = pool[rng.IntN(len(pool))]
		}
		if s := string(w); !seen[s] {
			seen[s] = true
			fmt.Fprintf(&b, "cat%d monitor %s\n", len(seen)%20, s)
		}
	}
	syll := []string{"ca", "sh", "lo", "an", "bo", "nu", "ze", "ro", "pri", "win", "cla", "im", "vi", "ag", "ra"}
	for i := range english {
		fmt.Fprintf(&b, "en%d monitor %s%s%s %s%s\n", i%10, syll[rng.IntN(len(syll))], syll[rng.IntN(len(syll))],
			syll[rng.IntN(len(syll))], syll[rng.IntN(len(syll))], syll[rng.IntN(len(syll))])
	}
	return b.String()
}

func BenchmarkDecodeGSM7_160(b *testing.B) {
	s := parse(b, &smpp.Submit{ShortMessage: gsm(b, gsm160)})
	buf := make([]rune, 0, 256)
	b.SetBytes(int64(len(s.ShortMessage)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendText(buf[:0], s, false)
	}
	if len(buf) != 160 {
		b.Fatalf("%d characters", len(buf))
	}
}

func BenchmarkDecodeUCS2_70(b *testing.B) {
	s := parse(b, &smpp.Submit{DataCoding: 8, ShortMessage: ucs2(chinese70)})
	buf := make([]rune, 0, 256)
	b.SetBytes(int64(len(s.ShortMessage)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendText(buf[:0], s, false)
	}
	if len(buf) != 70 {
		b.Fatalf("%d characters", len(buf))
	}
}

// BenchmarkMatchChinese6000Keywords normalises and searches a 70-character Chinese message
// against 6,000 keywords.
func BenchmarkMatchChinese6000Keywords(b *testing.B) {
	s, _ := newStage(b, keywordRules(6000, 0))
	text := []rune(chinese70)
	f := s.Filter()
	b.ReportAllocs()
	var d Decision
	for b.Loop() {
		d = f.Check(text)
	}
	b.ReportMetric(float64(f.Rules().Keywords()), "keywords")
	_ = d
}

func benchStage(b *testing.B, rules string, s *smpp.Submit) {
	st, _ := newStage(b, rules)
	m := message(s)
	b.ReportAllocs()
	for b.Loop() {
		m.TextDone = false // each iteration a new message: decoded again
		if v := st.Process(m); v.Status != 0 {
			b.Fatal("rejected")
		}
	}
}

// BenchmarkStageGSM7: one 160-character GSM message through Stage.Process (decode, normalise,
// 6,200 keywords), counted.
func BenchmarkStageGSM7(b *testing.B) {
	benchStage(b, keywordRules(6000, 200), parse(b, &smpp.Submit{ShortMessage: gsm(b, gsm160)}))
}

// BenchmarkStageGSM7Regexps: the same with five regular expression rules, which run after the
// keywords on every message they did not reject.
func BenchmarkStageGSM7Regexps(b *testing.B) {
	rules := keywordRules(6000, 200) + `
phish reject re:verify your (account|card|password)
phish reject re:https?://[a-z0-9.-]+\.(xyz|top|click)\b
money reject re:€ ?[0-9]{3,}
loan  reject re:\bloan\b.{0,20}\bapproved\b
otp   monitor re:\b[0-9]{6}\b.{0,30}\b(code|otp)\b
`
	benchStage(b, rules, parse(b, &smpp.Submit{ShortMessage: gsm(b, gsm160)}))
}

func BenchmarkStageUCS2Chinese70(b *testing.B) {
	benchStage(b, keywordRules(6000, 200), parse(b, &smpp.Submit{DataCoding: 8, ShortMessage: ucs2(chinese70)}))
}

// BenchmarkStageGSM7Parallel: sessions judging at once share the rules and the scratch pool.
func BenchmarkStageGSM7Parallel(b *testing.B) {
	st, _ := newStage(b, keywordRules(6000, 200))
	s := parse(b, &smpp.Submit{ShortMessage: gsm(b, gsm160)})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		m := message(s)
		for pb.Next() {
			m.TextDone = false
			st.Process(m)
		}
	})
}

// BenchmarkCompile6000: what a reload costs (off the hot path).
func BenchmarkCompile6000(b *testing.B) {
	src := Source{Name: "bench.rules", Data: []byte(keywordRules(6000, 200))}
	cfg := DefaultConfig()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(&cfg, src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReassemble2: a two-segment message held and completed.
func BenchmarkReassemble2(b *testing.B) {
	r, _ := NewReassembler(DefaultReassemblerConfig[int]())
	s := &smpp.Submit{SrcAddr: []byte("smppd"), DstAddr: []byte("4915112345678")}
	b.ReportAllocs()
	var ref uint16
	for b.Loop() {
		ref++
		k := KeyOf("acct", s, smpp.Concat{Ref: ref, Total: 2})
		r.Add(k, smpp.Concat{Ref: ref, Total: 2, Seq: 2}, 2, 160, 0)
		if out, _ := r.Add(k, smpp.Concat{Ref: ref, Total: 2, Seq: 1}, 1, 160, 0); len(out.Complete) != 2 {
			b.Fatal("not complete")
		}
	}
}

func TestBenchTexts(t *testing.T) {
	if utf8.RuneCountInString(gsm160) != 160 || utf8.RuneCountInString(chinese70) != 70 {
		t.Fatal("benchmark texts are not full segments")
	}
	if n := strings.Count(keywordRules(6000, 200), "\n"); n != 6200 {
		t.Fatalf("%d rules", n)
	}
}

// BenchmarkStageGSM7RegexpNoLiteral: one expression without a literal to look for first runs on
// every message: the cost of a regular expression rule itself.
func BenchmarkStageGSM7RegexpNoLiteral(b *testing.B) {
	benchStage(b, keywordRules(6000, 200)+"otp monitor re:\\b[0-9]{6}\\b.{0,30}\\b[a-z]{4}\\b\n",
		parse(b, &smpp.Submit{ShortMessage: gsm(b, gsm160)}))
}
