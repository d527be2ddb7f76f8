package lane

import (
	"testing"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

func msg(account, text string, priority byte) *router.Message {
	parts, dc := smpp.EncodeText(text)
	m := &router.Message{Account: &smpp.Account{SystemID: account}}
	m.Submit = smpp.Submit{DataCoding: dc, ShortMessage: parts[0], PriorityFlag: priority}
	return m
}

func TestClassify(t *testing.T) {
	s, err := New(Config{OTPAccounts: []string{"bank"}, BulkAccounts: []string{"promo"},
		Templates: []string{`^your [a-z]+ login pin`}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		account, text string
		priority      byte
		want          router.Lane
	}{
		{"shop", "Your verification code is 482913", 0, router.LaneOTP},
		{"shop", "Your OTP: 7731. Do not share it.", 0, router.LaneOTP},
		{"shop", "您的验证码是 482913，5分钟内有效", 0, router.LaneOTP},
		{"shop", "【某银行】動態碼 校验码 123456", 0, router.LaneOTP},
		{"shop", "Ваш код 5521", 0, router.LaneOTP},
		{"shop", "Big sale! 50% off everything", 3, router.LaneBulk},      // priority_flag alone is not enough
		{"shop", "Order 123456789012 has shipped", 0, router.LaneBulk},    // a 12-digit number is no code
		{"shop", "Use code SUMMER for 20% off", 0, router.LaneBulk},       // keyword but no digits code
		{"shop", "Your acme login pin", 0, router.LaneOTP},                // template
		{"bank", "Hello", 0, router.LaneOTP},                              // OTP account
		{"promo", "Your verification code is 482913", 0, router.LaneBulk}, // bulk account
	} {
		m := msg(tc.account, tc.text, tc.priority)
		if v := s.Process(m); v.Status != 0 || m.Lane != tc.want {
			t.Errorf("%s %q: lane %v (verdict %v), want %v", tc.account, tc.text, m.Lane, v.Status, tc.want)
		}
	}
}

func TestDryRunExplainsWithoutCounting(t *testing.T) {
	s, _ := New(Config{})
	m := msg("shop", "code 1234", 0)
	m.Trace = &router.Trace{}
	s.Process(m)
	if len(m.Trace.Steps) != 1 || m.Trace.Steps[0].Decision != "otp by content" {
		t.Fatalf("trace %+v", m.Trace.Steps)
	}
	if got := s.byOTP["content"].Get(); got != 0 {
		t.Fatalf("a dry run counted %d", got)
	}
}

func TestBadTemplate(t *testing.T) {
	if _, err := New(Config{Templates: []string{"ok", "("}}); err == nil || err.Error()[:22] != "lanes.otp_templates[1]" {
		t.Fatalf("err = %v, want it to name lanes.otp_templates[1]", err)
	}
}

func BenchmarkStageGSM7(b *testing.B) {
	s, _ := New(Config{})
	m := msg("shop", "Dear customer, your order 4711 is on its way. Track it at example.com/t/4711 — thanks for shopping with us!!", 0)
	b.ReportAllocs()
	for b.Loop() {
		m.Lane, m.TextDone = router.LaneBulk, false // a new message each time: decoded again
		s.Process(m)
	}
}
