package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// load writes content to a temporary config file and loads it.
func load(t *testing.T, content string) (string, *Config, error) {
	t.Helper()
	p := writeFile(t, t.TempDir(), "smppd.yaml", content)
	c, err := Load(p)
	return p, c, err
}

func mustLoad(t *testing.T, content string) *Config {
	t.Helper()
	_, c, err := load(t, content)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// keyPair writes a self-signed certificate and its key into dir.
func keyPair(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"}, NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, dir, "cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, dir, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	return certFile, keyFile
}

// acct is a valid accounts list whose first element continues on line 5.
func acct(extra string) string {
	return "accounts:\n  - system_id: esme\n    password: pw\n    upstream: sim\n" + extra
}

// ups is a valid upstreams list whose first element continues on line 6.
func ups(extra string) string {
	return "upstreams:\n  - name: sim\n    address: 127.0.0.1:2776\n    system_id: smppd\n    password: pw\n" + extra
}

func TestLoadErrors(t *testing.T) {
	t.Setenv("SMPPD_EMPTY_PW", "")
	tests := []struct {
		name, yaml string
		want       string // expected after "FILE:"
	}{
		// decoding
		{"syntax", "node:\n\tid: 1\n", "2: found character that cannot start any token"},
		{"two documents", "node: {}\n---\nlog: {}\n", "2: only one YAML document is allowed"},
		{"unknown top-level key", "node:\n  id: 1\nbogus: 1\n", "3: bogus: unknown key, want one of node, listen"},
		{"unknown nested key", "server:\n  max_pdu: 5\n", "2: server.max_pdu: unknown key, want one of system_id, max_pdu_size"},
		{"unknown key in list element", ups("    adress: x\n"), "6: upstreams[0].adress: unknown key"},
		{"duplicate key", "node:\n  id: 1\n  id: 2\n", "3: node.id: duplicate key, first given on line 2"},
		{"string for int", "server:\n  max_sessions: many\n", `2: server.max_sessions: expected an integer, got "many"`},
		{"float for int", "node:\n  id: 1.5\n", `2: node.id: expected an integer, got "1.5"`},
		{"int for bool", ups("    tls:\n      enabled: 1\n"), `7: upstreams[0].tls.enabled: expected true or false, got "1"`},
		{"list for scalar", "node:\n  data_dir: [a]\n", "2: node.data_dir: expected a single value, got a list"},
		{"scalar for mapping", "listen: yes\n", `1: listen: expected a mapping, got "yes"`},
		{"mapping for list", "accounts: {a: 1}\n", "1: accounts: expected a list, got a mapping"},
		{"bad duration", "server:\n  bind_timeout: 10\n", `2: server.bind_timeout: invalid duration "10"`},
		{"bad status code", "router:\n  in_doubt_status: 0x100000000\n", `2: router.in_doubt_status: invalid status code "0x100000000"`},
		{"bad cidr", acct("    allowed_cidrs: [10.0.0.0/8, 10.1.2.3]\n"), `5: accounts[0].allowed_cidrs[1]: netip.ParsePrefix("10.1.2.3"): no '/'`},
		{"bad log level", "log:\n  level: verbose\n", `2: log.level: slog: level string "verbose"`},

		// node, listen
		{"node.id high", "node:\n  id: 1024\n", "2: node.id: must be between 0 and 1023, got 1024"},
		{"node.id negative", "node:\n  id: -1\n", "2: node.id: must be between 0 and 1023, got -1"},
		{"data_dir empty", "node:\n  data_dir: \"\"\n", "2: node.data_dir: must not be empty"},
		{"no listener", "listen:\n  smpp: \"\"\n", "1: listen: at least one of smpp and tls.addr must be set"},
		{"smpp not host:port", "listen:\n  smpp: localhost\n", `2: listen.smpp: must be host:port, got "localhost"`},
		{"admin bad port", "listen:\n  admin: 127.0.0.1:http\n", `2: listen.admin: must be host:port, got "127.0.0.1:http"`},
		{"tls addr bad", "listen:\n  tls:\n    addr: nope\n", `3: listen.tls.addr: must be host:port, got "nope"`},
		{"tls cert missing", "listen:\n  tls:\n    addr: :2777\n", "2: listen.tls.cert_file: required when tls.addr is set"},
		{"tls key missing", "listen:\n  tls:\n    addr: :2777\n", "2: listen.tls.key_file: required when tls.addr is set"},
		{"tls files unreadable", "listen:\n  tls:\n    addr: :2777\n    cert_file: /nonexistent/c.pem\n    key_file: /nonexistent/k.pem\n",
			"2: listen.tls: cannot load key pair: open /nonexistent/c.pem"},
		{"tls version", "listen:\n  tls:\n    min_version: \"1.1\"\n", `3: listen.tls.min_version: must be "1.2" or "1.3", got "1.1"`},

		// server
		{"server system_id long", "server:\n  system_id: abcdefghijklmnop\n", "2: server.system_id: must be at most 15 characters, got 16"},
		{"server system_id empty", "server:\n  system_id: \"\"\n", "2: server.system_id: must not be empty"},
		{"max_pdu_size", "server:\n  max_pdu_size: 63\n", "2: server.max_pdu_size: must be between 64 and 1048576, got 63"},
		{"zero duration", "server:\n  bind_timeout: 0s\n", "2: server.bind_timeout: must be greater than 0, got 0s"},
		{"negative duration", "server:\n  shutdown_timeout: -1s\n", "2: server.shutdown_timeout: must be greater than 0, got -1s"},
		{"null duration", "server:\n  read_timeout:\n", "2: server.read_timeout: must be greater than 0, got 0s"},
		{"max_sessions", "server:\n  max_sessions: 0\n", "2: server.max_sessions: must be at least 1, got 0"},

		// accounts
		{"no accounts", "accounts: []\n", "1: accounts: at least one account is required"},
		{"account system_id empty", "accounts:\n  - password: pw\n    upstream: sim\n", "2: accounts[0].system_id: must not be empty"},
		{"account system_id long", acct("  - system_id: abcdefghijklmnop\n    password: pw\n    upstream: sim\n"),
			"5: accounts[1].system_id: must be at most 15 characters, got 16"},
		{"account duplicate", acct("  - system_id: esme\n    password: pw\n    upstream: sim\n"), `5: accounts[1].system_id: duplicate system_id "esme"`},
		{"account no password", "accounts:\n  - system_id: esme\n    upstream: sim\n", "2: accounts[0]: a password is required"},
		{"account password long", "accounts:\n  - system_id: esme\n    password: toolongpw\n    upstream: sim\n",
			"3: accounts[0].password: must be at most 8 characters (SMPP 3.4), got 9"},
		{"two password sources", acct("    password_env: X\n"), "2: accounts[0]: give only one of password, password_bcrypt, password_env and password_file"},
		{"password_env empty", "accounts:\n  - system_id: esme\n    password_env: SMPPD_EMPTY_PW\n    upstream: sim\n",
			"3: accounts[0].password_env: environment variable SMPPD_EMPTY_PW is unset or empty"},
		{"password_file missing", "accounts:\n  - system_id: esme\n    password_file: /nonexistent/pw\n    upstream: sim\n",
			"3: accounts[0].password_file: open /nonexistent/pw: no such file or directory"},
		{"bad bcrypt", "accounts:\n  - system_id: esme\n    password_bcrypt: nothash\n    upstream: sim\n", "3: accounts[0].password_bcrypt: not a bcrypt hash"},
		{"null cidr", acct("    allowed_cidrs: [~]\n"), "5: accounts[0].allowed_cidrs[0]: must be a CIDR"},
		{"max_binds", acct("    max_binds: 0\n"), "5: accounts[0].max_binds: must be at least 1, got 0"},
		{"account window low", acct("    window: 0\n"), "5: accounts[0].window: must be between 1 and 65535, got 0"},
		{"account window high", acct("    window: 65536\n"), "5: accounts[0].window: must be between 1 and 65535, got 65536"},
		{"account throughput", acct("    throughput: -1\n"), "5: accounts[0].throughput: must not be negative, got -1"},
		{"unknown upstream", acct("  - system_id: other\n    password: pw\n    upstream: nope\n"), `7: accounts[1].upstream: must name an upstream, got "nope"`},
		{"missing upstream", "accounts:\n  - system_id: esme\n    password: pw\n", `2: accounts[0].upstream: must name an upstream, got ""`},

		// upstreams
		{"no upstreams", "upstreams: []\n", "1: upstreams: at least one upstream is required"},
		{"upstream name", "upstreams:\n  - name: Sim!\n", `2: upstreams[0].name: must match [a-z0-9_-]+, got "Sim!"`},
		{"upstream duplicate", ups("  - name: sim\n    address: h:1\n    system_id: s\n    password: p\n"), `6: upstreams[1].name: duplicate name "sim"`},
		{"upstream address", "upstreams:\n  - name: sim\n", `2: upstreams[0].address: must be host:port, got ""`},
		{"upstream system_id", "upstreams:\n  - name: sim\n    address: h:1\n    password: p\n", "2: upstreams[0].system_id: must not be empty"},
		{"upstream bcrypt", "upstreams:\n  - name: sim\n    address: h:1\n    system_id: s\n    password_bcrypt: \"$2a$10$x\"\n",
			"5: upstreams[0].password_bcrypt: not allowed for an upstream"},
		{"upstream password long", "upstreams:\n  - name: sim\n    address: h:1\n    system_id: s\n    password: 123456789\n",
			"5: upstreams[0].password: must be at most 8 characters (SMPP 3.4), got 9"},
		{"system_type long", ups("    system_type: abcdefghijklm\n"), "6: upstreams[0].system_type: must be at most 12 characters, got 13"},
		{"bind_type", ups("    bind_type: both\n"), `6: upstreams[0].bind_type: must be transmitter, receiver or transceiver, got "both"`},
		{"binds low", ups("    binds: 0\n"), "6: upstreams[0].binds: must be between 1 and 64, got 0"},
		{"binds high", ups("    binds: 65\n"), "6: upstreams[0].binds: must be between 1 and 64, got 65"},
		{"upstream window", ups("    window: 0\n"), "6: upstreams[0].window: must be between 1 and 65535, got 0"},
		{"upstream throughput", ups("    throughput: -5\n"), "6: upstreams[0].throughput: must not be negative, got -5"},
		{"upstream enquire_link", ups("    enquire_link_interval: 0s\n"), "6: upstreams[0].enquire_link_interval: must be greater than 0, got 0s"},
		{"upstream response_timeout", ups("    response_timeout: 0s\n"), "6: upstreams[0].response_timeout: must be greater than 0, got 0s"},
		{"reconnect_min", ups("    reconnect_min: 0s\n"), "6: upstreams[0].reconnect_min: must be greater than 0, got 0s"},
		{"reconnect_max", ups("    reconnect_min: 1m\n"), "2: upstreams[0].reconnect_max: must not be less than reconnect_min (1m0s), got 30s"},
		{"client cert without key", ups("    tls:\n      cert_file: c.pem\n"), "7: upstreams[0].tls.cert_file: cert_file and key_file must be given together"},
		{"ca file missing", ups("    tls:\n      enabled: true\n      ca_file: /nonexistent/ca.pem\n"), "6: upstreams[0].tls: open /nonexistent/ca.pem"},

		// router, log
		{"max_wait", "router:\n  max_wait: 0s\n", "2: router.max_wait: must be greater than 0, got 0s"},
		{"in_doubt_status zero", "router:\n  in_doubt_status: 0\n", "2: router.in_doubt_status: must not be 0"},
		{"id_map_ttl", "router:\n  id_map_ttl: 0s\n", "2: router.id_map_ttl: must be at least 1m, got 0s"},
		{"receipt_id", "upstreams:\n  - name: a\n    address: h:1\n    system_id: s\n    password: p\n    receipt_id: octal\n", "6: upstreams[0].receipt_id: must be auto, same, receipt_decimal or receipt_hex, got \"octal\""},
		{"receipts_hold", "receipts:\n  hold: 0s\n", "2: receipts.hold: must be greater than 0, got 0s"},
		{"receipts_ttl", "receipts:\n  ttl: 30s\n", "2: receipts.ttl: must be at least 1m, got 30s"},
		{"receipts_retry", "receipts:\n  retry_min: 5s\n  retry_max: 1s\n", "3: receipts.retry_max: must not be less than retry_min (5s), got 1s"},
		{"cluster_tls", "cluster:\n  tls:\n    enabled: true\n", "2: cluster.tls: cert_file, key_file and ca_file are required when enabled"},
		{"stale_policy", "cluster:\n  stale_policy: panic\n", "2: cluster.stale_policy: must be serve or refuse, got \"panic\""},
		{"content_hold", "content:\n  hold: -1s\n", "2: content.hold: must not be negative, got -1s"},
		{"content_max_held_bytes", "content:\n  max_held_bytes: 1000\n", "2: content.max_held_bytes: must be at least 65536 (64 KiB), got 1000"},
		{"optout_reply", "protection:\n  optout_reply: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n", "2: protection.optout_reply: must be at most 1000 characters, got 1001"},
		{"governor_window", "governor:\n  bucket: 1h\n  window: 90m\n", "3: governor.window: must be a positive multiple of governor.bucket (1h0m0s), got 1h30m0s"},
		{"governor_bucket", "governor:\n  bucket: 0s\n", "2: governor.bucket: must be greater than 0, got 0s"},
		{"governor_warn", "governor:\n  warn_ppm: 3\n", "2: governor.warn_ppm: must be positive and at most limit_ppm (2), got 3"},
		{"governor_limit", "governor:\n  limit_ppm: -1\n", "2: governor.limit_ppm: must be a positive number, got -1"},
		{"governor_action", "governor:\n  action: drop\n", "2: governor.action: must be refuse or alarm, got \"drop\""},
		{"governor_channel_action", "governor:\n  channel_action: stop\n", "2: governor.channel_action: must be refuse or alarm, got \"stop\""},
		{"governor_status", "governor:\n  status: 0\n", "2: governor.status: must not be 0 (ESME_ROK)"},
		{"snapshot_threshold", "cluster:\n  snapshot_threshold: 0\n", "2: cluster.snapshot_threshold: must be at least 1, got 0"},
		{"snapshot_interval", "cluster:\n  snapshot_interval: 1ms\n", "2: cluster.snapshot_interval: must be at least 5ms (Raft refuses a shorter one), got 1ms"},
		{"snapshot_interval null", "cluster:\n  snapshot_interval:\n", "2: cluster.snapshot_interval: must be at least 5ms"},
		{"trailing_logs", "cluster:\n  trailing_logs: -1\n", "2: cluster.trailing_logs: must not be negative, got -1"},
		{"admin_token", "listen:\n  admin: 0.0.0.0:8775\n", " admin.token: required when listen.admin (0.0.0.0:8775) is not a loopback address"},
		{"deliver_window", "server:\n  deliver_window: 0\n", "2: server.deliver_window: must be between 1 and 65535, got 0"},
		{"mo_route_account", "mo:\n  routes:\n    - to: \"12345\"\n      account: nobody\n", "4: mo.routes[0].account: must name an account, got \"nobody\""},
		{"mo_route_to", "mo:\n  routes:\n    - account: demo\n", "3: mo.routes[0].to: must be an address"},
		{"log level offset", "log:\n  level: info+2\n", "2: log.level: must be debug, info, warn or error, got INFO+2"},
		{"log format", "log:\n  format: xml\n", `2: log.format: must be text or json, got "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, c, err := load(t, tt.yaml)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", c)
			}
			if want := path + ":" + tt.want; !strings.Contains(err.Error(), want) {
				t.Errorf("error\n%v\ndoes not contain\n%s", err, want)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != path {
				t.Errorf("error %#v is not an *Error for %s", err, path)
			}
		})
	}
}

func TestDevYAMLIsDefault(t *testing.T) {
	c, err := Load("../configs/dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d := Default(); !reflect.DeepEqual(c, d) {
		t.Errorf("configs/dev.yaml differs from Default():\n%+v\n%+v", c, d)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	if c := mustLoad(t, "# nothing\n"); !reflect.DeepEqual(c, Default()) {
		t.Errorf("got %+v, want Default()", c)
	}
}

func TestOverlayKeepsDefaults(t *testing.T) {
	c := mustLoad(t, "server:\n  max_sessions: 5\nlisten:\n  admin:\n")
	want := Default()
	want.Server.MaxSessions = 5
	want.Listen.Admin = ""
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want %+v", c, want)
	}
}

func TestListElementDefaults(t *testing.T) {
	c := mustLoad(t, `
accounts:
  - system_id: esme
    password: pw
    upstream: smsc-1
upstreams:
  - name: smsc-1
    address: smsc.example:2775
    system_id: proxy
    password: secret
    binds: 4
`)
	wantAcct := []Account{{SystemID: "esme", Password: "pw", MaxBinds: 8, Window: 100, Upstream: "smsc-1"}}
	wantUps := []Upstream{{
		Name: "smsc-1", Address: "smsc.example:2775", SystemID: "proxy", Password: "secret",
		BindType: BindTransceiver, Binds: 4, Window: 100,
		EnquireLinkInterval: Duration(30 * time.Second), ResponseTimeout: Duration(10 * time.Second),
		ReconnectMin: Duration(250 * time.Millisecond), ReconnectMax: Duration(30 * time.Second), ReceiptID: "auto",
	}}
	if !reflect.DeepEqual(c.Accounts, wantAcct) {
		t.Errorf("accounts = %+v, want %+v", c.Accounts, wantAcct)
	}
	if !reflect.DeepEqual(c.Upstreams, wantUps) {
		t.Errorf("upstreams = %+v, want %+v", c.Upstreams, wantUps)
	}
}

func TestScalarTypes(t *testing.T) {
	c := mustLoad(t, `
listen:
  tls:
    min_version: 1.3
server:
  bind_timeout: 250ms
router:
  in_doubt_status: "0x58"
  id_map_ttl: 1h30m
log:
  level: debug
`)
	if c.Listen.TLS.MinVersion != "1.3" || c.Server.BindTimeout != Duration(250*time.Millisecond) ||
		c.Router.InDoubtStatus != 0x58 || c.Router.IDMapTTL != Duration(90*time.Minute) || c.Log.Level.String() != "DEBUG" {
		t.Errorf("got %+v", c)
	}
	for _, s := range []string{"0x14", "20", "0X14"} {
		c := mustLoad(t, "router:\n  in_doubt_status: "+s+"\n")
		if c.Router.InDoubtStatus != 0x14 {
			t.Errorf("in_doubt_status %s = %v, want 0x14", s, c.Router.InDoubtStatus)
		}
	}
}

func TestPasswordSources(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SMPPD_TEST_PW", "fromenv")
	file := writeFile(t, dir, "pw", "fromfil\n")
	hash, err := bcrypt.GenerateFromPassword([]byte("hashed-pw-longer-than-8"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, fmt.Sprintf(`
accounts:
  - {system_id: env, password_env: SMPPD_TEST_PW, upstream: sim}
  - {system_id: file, password_file: %s, upstream: sim}
  - {system_id: hash, password_bcrypt: "%s", upstream: sim}
  - {system_id: plain, password: plain, upstream: sim}
upstreams:
  - {name: sim, address: "h:1", system_id: s, password_file: %s}
`, file, hash, file))
	if got := string(c.Upstreams[0].Password); got != "fromfil" {
		t.Errorf("upstream password = %q, want fromfil", got)
	}
	tests := []struct {
		acct, pw string
		ok       bool
	}{
		{"env", "fromenv", true},
		{"env", "fromenv2", false},
		{"file", "fromfil", true},
		{"file", "fromfil\n", false},
		{"hash", "hashed-pw-longer-than-8", true},
		{"hash", "hashed", false},
		{"plain", "plain", true},
		{"plain", "plai", false},
		{"plain", "plainplainplainplainplain", false},
		{"plain", "", false},
	}
	for i, a := range []string{"env", "file", "hash", "plain"} {
		if c.Accounts[i].SystemID != a {
			t.Fatalf("accounts[%d] = %s, want %s", i, c.Accounts[i].SystemID, a)
		}
	}
	for _, tt := range tests {
		a := c.Accounts[map[string]int{"env": 0, "file": 1, "hash": 2, "plain": 3}[tt.acct]]
		if got := a.CheckPassword([]byte(tt.pw)); got != tt.ok {
			t.Errorf("%s.CheckPassword(%q) = %v, want %v", tt.acct, tt.pw, got, tt.ok)
		}
	}
	if (&Account{}).CheckPassword(nil) {
		t.Error("an account without password accepted an empty one")
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	c := mustLoad(t, acct(""))
	c.Accounts[0].Password = "s3cr3t"
	if out := fmt.Sprintf("%v %+v %#v %s", c, c, c, c.Accounts[0].Password); strings.Contains(out, "s3cr3t") {
		t.Errorf("password printed: %s", out)
	}
	_, _, err := load(t, "accounts:\n  - system_id: esme\n    password: s3cr3t999\n    upstream: sim\n")
	if err == nil || !strings.Contains(err.Error(), "accounts[0].password: must be at most 8") || strings.Contains(err.Error(), "s3cr3t999") {
		t.Errorf("want a length error without the password, got %v", err)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := keyPair(t, dir)
	c := mustLoad(t, fmt.Sprintf(`
listen:
  tls: {addr: ":2777", cert_file: %s, key_file: %s, min_version: "1.3"}
upstreams:
  - name: sim
    address: smsc.example:2775
    system_id: s
    password: p
    tls: {enabled: true, ca_file: %s, cert_file: %s, key_file: %s}
`, cert, key, cert, cert, key))
	sc, err := c.Listen.TLS.ServerConfig()
	if err != nil || len(sc.Certificates) != 1 || sc.MinVersion != tls.VersionTLS13 {
		t.Errorf("ServerConfig() = %+v, %v", sc, err)
	}
	cc, err := c.Upstreams[0].TLSConfig()
	if err != nil || cc.ServerName != "smsc.example" || cc.RootCAs == nil || len(cc.Certificates) != 1 {
		t.Errorf("TLSConfig() = %+v, %v", cc, err)
	}

	_, _, err = load(t, fmt.Sprintf("listen:\n  tls: {addr: \":2777\", cert_file: %s, key_file: %s}\n", cert, cert))
	if err == nil || !strings.Contains(err.Error(), "listen.tls: cannot load key pair") {
		t.Errorf("mismatched key pair: got %v", err)
	}
}

func TestPermits(t *testing.T) {
	a := Default().Accounts[0]
	for addr, want := range map[string]bool{"127.0.0.1": true, "::ffff:127.0.0.9": true, "::1": true, "10.0.0.1": false, "::2": false} {
		if got := a.Permits(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Permits(%s) = %v, want %v", addr, got, want)
		}
	}
	if !(&Account{}).Permits(netip.MustParseAddr("192.0.2.1")) {
		t.Error("an account without allowed_cidrs rejected an address")
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.Upstreams[0].Binds = 0
	err := c.Validate()
	if err == nil || err.Error() != "upstreams[0].binds: must be between 1 and 64, got 0" {
		t.Errorf("Validate() = %v", err)
	}
}

// TestClusterSnapshotKeys: the Raft snapshot keys load; the smallest values Raft accepts
// (threshold 1, interval 5ms, no trailing log) are valid.
func TestClusterSnapshotKeys(t *testing.T) {
	c := mustLoad(t, "cluster:\n  snapshot_threshold: 1\n  snapshot_interval: 5ms\n  trailing_logs: 0\n")
	if cl := c.Cluster; cl.SnapshotThreshold != 1 || cl.SnapshotInterval != Duration(5*time.Millisecond) || cl.TrailingLogs != 0 {
		t.Errorf("got threshold %d, interval %s, trailing %d", cl.SnapshotThreshold, cl.SnapshotInterval, cl.TrailingLogs)
	}
}
