package dedup

import (
	"testing"
	"unicode/utf16"
)

func ucs2(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return b
}

func fpUCS(s string) uint64 { f, _ := simhashText(ucs2(s), codingUCS2); return f }

func TestExp(t *testing.T) {
	pairs := [][2]string{
		{"Your code is 1234", "Your code is 987654"},
		{"Dear Anna, your appointment at City Dental is confirmed for Monday 10:30. Reply C to cancel.", "Dear Bob, your appointment at City Dental is confirmed for Tuesday 09:15. Reply C to cancel."},
		{"Dear Anna, your appointment is confirmed.", "Dear Bob, your appointment is confirmed."},
		{"Hi Maximilian, your parcel 7781 from Zalando will arrive tomorrow between 10 and 12.", "Hi Jo, your parcel 1123 from Zalando will arrive tomorrow between 14 and 16."},
		{"您的验证码是123456，5分钟内有效，请勿泄露。", "您的验证码是654321，10分钟内有效，请勿泄露。"},
		{"尊敬的张伟先生，您的订单已发货，预计明天送达。", "尊敬的李娜女士，您的订单已发货，预计明天送达。"},
		{"尊敬的张伟先生，您尾号1234的银行卡于3月5日消费500元，如非本人操作请致电95588。", "尊敬的欧阳娜娜女士，您尾号9876的银行卡于4月15日消费12.50元，如非本人操作请致电95588。"},
		{"Your code is 1234", "Meeting moved to 3pm, bring the slides"},
		{"您的验证码是123456，5分钟内有效，请勿泄露。", "今晚七点在老地方见，别迟到"},
		{"Dear Anna, your appointment is confirmed.", "WIN a FREE iPhone now! Click http://x.co/abc"},
	}
	for _, p := range pairs {
		a, b := fpUCS(p[0]), fpUCS(p[1])
		t.Logf("%2d  %q / %q", Distance(a, b), p[0], p[1])
	}
}
