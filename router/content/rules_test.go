package content

import (
	"errors"
	"os"
	"regexp/syntax"
	"strings"
	"testing"

	"github.com/smppd/smppd/smpp"
)

const exampleRules = "\uFEFF# smppd content rules\r\n" +
	"\n" +
	"spam      reject              free money\n" +
	"loan      reject:0x58         贷款\n" +
	"@status ESME_RX_R_APPN\n" +
	"gambling  reject              網上賭場\n" +
	"phishing  reject:69           re:verify your (account|card)\r\n" +
	"trial.v2  monitor             ＷＩＮ  a  ｐｒｉｚｅ\n" +
	"   # indented comment\n" +
	"trial.v2  monitor             re:\\bcrypto\\b\n"

func TestCompileRules(t *testing.T) {
	cfg := DefaultConfig()
	rs, err := Compile(&cfg, Source{Name: "/etc/smppd/spam.rules", Data: []byte(exampleRules)})
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{ID: "spam.rules:3", Category: "spam", Action: Reject, Status: 0x45, Pattern: "freemoney"},
		{ID: "spam.rules:4", Category: "loan", Action: Reject, Status: smpp.StatusThrottled, Pattern: "贷款"},
		{ID: "spam.rules:6", Category: "gambling", Action: Reject, Status: 0x66, Pattern: "网上赌场"},
		{ID: "spam.rules:7", Category: "phishing", Action: Reject, Status: 0x45, Pattern: "verify your (account|card)", Regexp: true},
		{ID: "spam.rules:8", Category: "trial.v2", Action: Monitor, Pattern: "winaprize"},
		{ID: "spam.rules:10", Category: "trial.v2", Action: Monitor, Pattern: `\bcrypto\b`, Regexp: true},
	}
	if rs.Len() != len(want) || rs.Keywords() != 4 || rs.Regexps() != 2 {
		t.Fatalf("%d rules (%d keywords, %d regexps)", rs.Len(), rs.Keywords(), rs.Regexps())
	}
	for i, w := range want {
		if got := *rs.Rule(i); got != w {
			t.Errorf("rule %d:\n got %+v\nwant %+v", i, got, w)
		}
	}
	if f := rs.Files(); len(f) != 1 || f[0] != "/etc/smppd/spam.rules" {
		t.Errorf("files %v", f)
	}
}

func TestCompileKeepsSeparatorsWhenConfigured(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StripSeparators = false
	rs, err := Compile(&cfg, Source{Name: "r", Data: []byte("spam reject  Free   Money!\n")})
	if err != nil || rs.Rule(0).Pattern != "free money!" {
		t.Fatalf("%v %+v", err, rs)
	}
}

func TestCompileErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		line, reason string
	}{
		{"spam", "want CATEGORY ACTION PATTERN"},
		{"spam reject", "no pattern"},
		{"spam block free money", `action "block"`},
		{"spam monitor:0x45 free money", `action "monitor:0x45"`},
		{"Spam reject free money", "use only a-z"},
		{"none reject free money", "reserved"},
		{strings.Repeat("c", 41) + " reject free money", "1 to 40"},
		{"spam reject:ESME_NOPE free money", "want a name like ESME_RSUBMITFAIL"},
		{"spam reject:0 free money", "ESME_ROK"},
		{"spam reject:ESME_ROK free money", "ESME_ROK"},
		{"@status 0", "ESME_ROK"},
		{"@stats 0x45", "unknown directive"},
		{"spam reject !!! $$$", "empty once normalised"},
		{"spam reject X", "one ASCII character"},
		{"spam reject " + strings.Repeat("ab", 129), "more than 256"},
		{"spam reject re:(unclosed", "missing closing )"},
		{"spam reject re:a*", "matches the empty text"},
		{"spam reject re:Free money", `"F" never occurs`},
		{"spam reject re:free\tmoney", `"\t" never occurs`},
		{"spam reject re:免費", `"費" never occurs`},
		{"spam reject \xff\xfe", "not UTF-8"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			cfg := DefaultConfig()
			data := "# first line\nok reject fine words\n" + tc.line + "\nok reject more words\n"
			_, err := Compile(&cfg, Source{Name: "a.rules", Data: []byte("ok monitor fine\n")}, Source{Name: "b.rules", Data: []byte(data)})
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "b.rules" || pe.Line != 3 {
				t.Fatalf("got %v, want a ParseError at b.rules:3", err)
			}
			if !strings.HasPrefix(err.Error(), "b.rules:3: ") || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("got %q, want b.rules:3: ...%s...", err, tc.reason)
			}
		})
	}
}

func TestCompileFoldCaseRegexpAllowed(t *testing.T) {
	cfg := DefaultConfig()
	if _, err := Compile(&cfg, Source{Name: "r", Data: []byte("x reject re:(?i)FREE money\n")}); err != nil {
		t.Fatal(err)
	}
}

func TestParseStatus(t *testing.T) {
	for in, want := range map[string]smpp.Status{"0x45": 0x45, "69": 0x45, "ESME_RSUBMITFAIL": 0x45, "esme_rthrottled": 0x58, "0x400": 0x400} {
		if got, err := parseStatus(in); err != nil || got != want {
			t.Errorf("%s: got %v, %v", in, got, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil || cfg.DefaultStatus != 0x45 {
		t.Fatalf("default: %v, status %v", err, cfg.DefaultStatus)
	}
	cfg.DefaultStatus = 0
	if err := cfg.Validate(); err == nil {
		t.Fatal("status 0 accepted")
	}
	if _, err := NewFilter(cfg); err == nil {
		t.Fatal("NewFilter accepted status 0")
	}
}

func TestRequiredLiterals(t *testing.T) {
	for expr, want := range map[string]string{
		`verify your (account|card)`:                 "verify your ",
		`https?://[a-z]+\.(xyz|top)`:                 "http",
		`€ ?[0-9]{3,}`:                               "€",
		`\bloan\b.{0,20}\bapproved\b`:                "approved",
		`(free){2}`:                                  "free",
		`(account|card)`:                             "account|card",
		`\b[0-9]{6}\b.{0,30}\b(code|otp|password)\b`: "code|otp|password",
		`(a|b|c|d|e|f|g|h|i)x`:                       "x",
		`(?i)free money`:                             "",
		`x*y`:                                        "y",
		`[0-9]{6}`:                                   "",
		`(?:win)+ big`:                               " big",
		`a(?:b|c)defg`:                               "defg",
		`(ab|[0-9])`:                                 "",
	} {
		tree, err := syntax.Parse(expr, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(requiredLiterals(tree), "|"); got != want {
			t.Errorf("%s: got %q, want %q", expr, got, want)
		}
	}
}

// TestRegexpPrefilterKeepsMatches: the literal check never hides a match.
func TestRegexpPrefilterKeepsMatches(t *testing.T) {
	s, _ := newStage(t, "a reject re:\\bloan\\b.{0,20}\\bapproved\\b\nb reject re:(?i)verify (account|card)\n")
	for text, want := range map[string]smpp.Status{
		"Your LOAN is now APPROVED!": 0x45,
		"loan was not approved":      0x45,
		"approved: no loan":          0,
		"Please verify  Account now": 0x45,
		"verify your account please": 0,
	} {
		if v := s.Process(message(textSubmit(t, text))); v.Status != want {
			t.Errorf("%q: status %v, want %v", text, v.Status, want)
		}
	}
}

// TestDocExampleCompiles keeps the rule file example in doc.go valid.
func TestDocExampleCompiles(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(doc), "//\tCATEGORY  ACTION  PATTERN\n")
	block, _, _ := strings.Cut(after, "\n//\n// The fields")
	var file strings.Builder
	for _, l := range strings.Split(block, "\n") {
		file.WriteString(strings.TrimPrefix(strings.TrimPrefix(l, "//"), "\t") + "\n")
	}
	cfg := DefaultConfig()
	rs, err := Compile(&cfg, Source{Name: "doc.rules", Data: []byte(file.String())})
	if err != nil || rs.Len() != 5 || rs.Rule(2).Status != 0x66 || rs.Rule(4).Action != Monitor {
		t.Fatalf("doc example: %v, %q", err, file.String())
	}
}
