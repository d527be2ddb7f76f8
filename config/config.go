package config

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// Config is the whole smppd configuration.
type Config struct {
	Node       Node       `yaml:"node"`
	Listen     Listen     `yaml:"listen"`
	Server     Server     `yaml:"server"`
	Accounts   []Account  `yaml:"accounts"`
	Upstreams  []Upstream `yaml:"upstreams"`
	Router     Router     `yaml:"router"`
	Numbers    Numbers    `yaml:"numbers"`
	Content    Content    `yaml:"content"`
	Lanes      Lanes      `yaml:"lanes"`
	Dedup      Dedup      `yaml:"dedup"`
	Recipients Recipients `yaml:"recipients"`
	QuietHours QuietHours `yaml:"quiet_hours"`
	Receipts   Receipts   `yaml:"receipts"`
	MO         MO         `yaml:"mo"`
	Cluster    Cluster    `yaml:"cluster"`
	Protection Protection `yaml:"protection"`
	Governor   Governor   `yaml:"governor"`
	Admin      Admin      `yaml:"admin"`
	Log        Log        `yaml:"log"`
}

// Cluster configures the Raft cluster that replicates the recipient-protection state. A node
// with no peers is a one-node cluster.
type Cluster struct {
	NodeID            string     `yaml:"node_id"`            // Raft server id; "" = "node<node.id>"
	RaftAddr          string     `yaml:"raft_addr"`          // Raft transport listen address
	Advertise         string     `yaml:"advertise"`          // address the others dial; "" = raft_addr
	Peers             []Peer     `yaml:"peers"`              // initial members, this node included; [] = this node alone
	Bootstrap         bool       `yaml:"bootstrap"`          // false: never bootstrap; wait to be joined (nodes added later)
	ApplyTimeout      Duration   `yaml:"apply_timeout"`      // a write not committed by then fails
	SnapshotThreshold int        `yaml:"snapshot_threshold"` // Raft snapshots once this many entries were logged since the last (cluster/DESIGN.md)
	SnapshotInterval  Duration   `yaml:"snapshot_interval"`  // how often (randomized up to 2x) the threshold is checked
	TrailingLogs      int        `yaml:"trailing_logs"`      // entries kept behind a snapshot, for a follower that was away to catch up from
	StaleAfter        Duration   `yaml:"stale_after"`        // no leader heard from for this long: stale
	StalePolicy       string     `yaml:"stale_policy"`       // serve (keep enforcing what is committed, alarm) | refuse (non-OTP refused)
	StaleStatus       StatusCode `yaml:"stale_status"`       // policy refuse: the status
	ExpireInterval    Duration   `yaml:"expire_interval"`    // how often the leader proposes expiry of timed entries
	TLS               ClusterTLS `yaml:"tls"`                // mutual TLS between members
}

// ClusterTLS is mutual TLS for Raft traffic: every member presents CertFile (signed by CAFile,
// valid for its raft address's host) and accepts only peers whose certificate CAFile signed.
type ClusterTLS struct {
	Enabled  bool   `yaml:"enabled"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// Config loads the key pair and CA into a mutual-TLS config (TLS 1.3).
func (t *ClusterTLS) Config() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot load key pair: %w", err)
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", t.CAFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}, nil
}

// Peer is a cluster member.
type Peer struct {
	ID    string `yaml:"id"`
	Raft  string `yaml:"raft"`
	Admin string `yaml:"admin"`
}

// Protection configures how the replicated state is enforced.
type Protection struct {
	Enabled         bool       `yaml:"enabled"`
	BlockedStatus   StatusCode `yaml:"blocked_status"`   // answers a message to a blocked/complained/opted-out number
	ComplaintBlocks bool       `yaml:"complaint_blocks"` // a complaint also blocklists the number for everyone
	OptOutKeywords  []string   `yaml:"optout_keywords"`  // an MO starting with one opts its sender out of the address it replied to
	OptOutReply     string     `yaml:"optout_reply"`     // "": none; else the text confirming an opt-out, sent from that address
}

// Governor configures the complaint-rate governor: complaints per million messages sent, per
// account, upstream channel and (account, channel), over a rolling window, across the cluster.
type Governor struct {
	Enabled        bool       `yaml:"enabled"`
	Window         Duration   `yaml:"window"`          // the rolling window
	Bucket         Duration   `yaml:"bucket"`          // granularity of sent counts; window is a multiple of it
	WarnPPM        float64    `yaml:"warn_ppm"`        // warn (log, metrics, status) from this rate
	LimitPPM       float64    `yaml:"limit_ppm"`       // act from this rate (the operators' 2 per million)
	MinSent        uint64     `yaml:"min_sent"`        // rates are computed over at least this many messages
	Action         string     `yaml:"action"`          // at the limit, per account and (account, channel): refuse | alarm
	ChannelAction  string     `yaml:"channel_action"`  // at the limit, per channel (all accounts): alarm | refuse
	Status         StatusCode `yaml:"status"`          // answers a refused message
	ReportInterval Duration   `yaml:"report_interval"` // how often a node replicates its sent counts
}

// Admin configures the admin API.
type Admin struct {
	// Token is the bearer token admin writes need. It may be empty only while listen.admin is
	// on loopback (the dev config).
	Token Secret `yaml:"token"`
}

// Node identifies this smppd instance.
type Node struct {
	ID      int    `yaml:"id"`       // 0..1023, embedded in every message_id smppd issues
	DataDir string `yaml:"data_dir"` // the daemon creates it if absent
}

// Listen holds the listening addresses; "" disables a listener.
type Listen struct {
	SMPP  string    `yaml:"smpp"`
	Admin string    `yaml:"admin"` // HTTP: /metrics /healthz /readyz /debug/pprof
	TLS   ListenTLS `yaml:"tls"`
}

// ListenTLS is the SMPP-over-TLS listener.
type ListenTLS struct {
	Addr       string `yaml:"addr"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	MinVersion string `yaml:"min_version"` // "1.2" or "1.3"
}

// Server holds the settings of sessions bound to smppd.
type Server struct {
	SystemID            string   `yaml:"system_id"`
	MaxPDUSize          int      `yaml:"max_pdu_size"`
	BindTimeout         Duration `yaml:"bind_timeout"`
	ReadTimeout         Duration `yaml:"read_timeout"`
	EnquireLinkInterval Duration `yaml:"enquire_link_interval"`
	ResponseTimeout     Duration `yaml:"response_timeout"`
	MaxSessions         int      `yaml:"max_sessions"`
	ShutdownTimeout     Duration `yaml:"shutdown_timeout"`
	DeliverWindow       int      `yaml:"deliver_window"` // our unanswered deliver_sm per session
}

// Account is an ESME allowed to bind to smppd. After Load, Password holds
// the plain password (also when read from password_env or password_file)
// unless PasswordBcrypt is set.
type Account struct {
	SystemID       string         `yaml:"system_id"`
	Password       Secret         `yaml:"password"`
	PasswordBcrypt string         `yaml:"password_bcrypt"`
	PasswordEnv    string         `yaml:"password_env"`
	PasswordFile   string         `yaml:"password_file"`
	AllowedCIDRs   []netip.Prefix `yaml:"allowed_cidrs"` // empty: any address
	MaxBinds       int            `yaml:"max_binds"`
	Window         int            `yaml:"window"`
	Throughput     int            `yaml:"throughput"` // messages/s counting segments, 0 = unlimited
	Upstream       string         `yaml:"upstream"`   // Upstream.Name
}

// Upstream is a pool of binds to an SMSC. After Load, Password holds the
// plain password (also when read from password_env or password_file).
type Upstream struct {
	Name                string   `yaml:"name"`
	Address             string   `yaml:"address"`
	SystemID            string   `yaml:"system_id"`
	Password            Secret   `yaml:"password"`
	PasswordBcrypt      string   `yaml:"password_bcrypt"` // always rejected, for a precise error
	PasswordEnv         string   `yaml:"password_env"`
	PasswordFile        string   `yaml:"password_file"`
	SystemType          string   `yaml:"system_type"`
	BindType            string   `yaml:"bind_type"` // BindTransmitter, BindReceiver or BindTransceiver
	Binds               int      `yaml:"binds"`
	Window              int      `yaml:"window"`
	Throughput          int      `yaml:"throughput"` // submits/s per bind, 0 = unlimited
	EnquireLinkInterval Duration `yaml:"enquire_link_interval"`
	ResponseTimeout     Duration `yaml:"response_timeout"`
	ReconnectMin        Duration `yaml:"reconnect_min"`
	ReconnectMax        Duration `yaml:"reconnect_max"`
	// ReceiptID says how the SMSC writes ids in receipts relative to its submit_sm_resp:
	// auto, same, receipt_decimal or receipt_hex (smpp.IDMode).
	ReceiptID string      `yaml:"receipt_id"`
	TLS       UpstreamTLS `yaml:"tls"`
}

// Bind types of an Upstream.
const (
	BindTransmitter = "transmitter"
	BindReceiver    = "receiver"
	BindTransceiver = "transceiver"
)

// UpstreamTLS configures TLS towards an upstream.
type UpstreamTLS struct {
	Enabled            bool   `yaml:"enabled"`
	ServerName         string `yaml:"server_name"` // "" = host of Upstream.Address
	CAFile             string `yaml:"ca_file"`     // "" = system roots
	CertFile           string `yaml:"cert_file"`   // client certificate: both or neither
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Router holds the settings of routing submits to upstreams.
type Router struct {
	MaxWait       Duration   `yaml:"max_wait"`
	InDoubtStatus StatusCode `yaml:"in_doubt_status"`
	IDMapTTL      Duration   `yaml:"id_map_ttl"`
	// OTPReservePercent of every upstream bind's window only OTP traffic may use, so a
	// verification code finds a free slot even while bulk traffic saturates the binds.
	OTPReservePercent int `yaml:"otp_reserve_percent"`
}

// Numbers configures number cleaning, operator attribution and operator routing (the
// "number" pipeline stage).
type Numbers struct {
	Enabled        bool          `yaml:"enabled"`
	DefaultCountry string        `yaml:"default_country"` // ISO 3166 region national numbers belong to; "" none
	UnknownTON     string        `yaml:"unknown_ton"`     // international | national: how TON 0 digits are read first
	MinDigits      int           `yaml:"min_digits"`      // fewest digits of a valid number, country code included
	RangeFiles     []string      `yaml:"range_files"`     // "prefix,operator" CSV files extending the built-in ranges
	PortFiles      []string      `yaml:"port_files"`      // "msisdn,operator" CSV files of ported numbers
	Routes         []NumberRoute `yaml:"routes"`          // first match wins
	Fallback       string        `yaml:"fallback"`        // upstream for unmatched messages; "" the account's own
	NoRouteStatus  StatusCode    `yaml:"no_route_status"` // answers a message nothing routes
}

// Content configures the content filter (the "content" pipeline stage).
type Content struct {
	RuleFiles       []string   `yaml:"rule_files"`       // rule files; empty: no content filtering
	RejectStatus    StatusCode `yaml:"reject_status"`    // status of "reject" rules that name none
	StripSeparators bool       `yaml:"strip_separators"` // also match keywords spelt "f r e e", "f.r.e.e"
	// Concatenated messages are judged on their whole text: a segment waits up to Hold for the
	// rest of its message (0: none waits; each is judged with the segments before it).
	Hold            Duration `yaml:"hold"`
	MaxHeldMessages int      `yaml:"max_held_messages"` // messages with segments held (and with text kept)
	MaxHeldBytes    int      `yaml:"max_held_bytes"`    // bytes of segments held (and of text kept)
}

// Lanes configures OTP recognition (the "lane" pipeline stage).
type Lanes struct {
	Enabled      bool     `yaml:"enabled"`
	OTPAccounts  []string `yaml:"otp_accounts"`  // system_ids whose every message is OTP
	BulkAccounts []string `yaml:"bulk_accounts"` // system_ids never OTP
	Templates    []string `yaml:"otp_templates"` // regexps over the lower-cased text
}

// Dedup configures duplicate and near-duplicate detection (the "dedup" pipeline stage).
type Dedup struct {
	Enabled      bool       `yaml:"enabled"`
	Window       Duration   `yaml:"window"`        // a resubmit within this is a duplicate
	MaxEntries   int        `yaml:"max_entries"`   // keys remembered (about 60 bytes each)
	Policy       string     `yaml:"policy"`        // return_original | reject
	RejectStatus StatusCode `yaml:"reject_status"` // policy reject: the status
	NearEnabled  bool       `yaml:"near_enabled"`  // limit floods of near-identical texts per account
	NearMax      int        `yaml:"near_max"`      // messages per near_window alike within near_distance bits
	NearWindow   Duration   `yaml:"near_window"`   //
	NearDistance int        `yaml:"near_distance"` // SimHash Hamming distance that counts as alike (0..7)
	NearStatus   StatusCode `yaml:"near_status"`   // status past near_max
}

// Recipients configures the per-recipient cap (the "recipient" pipeline stage).
type Recipients struct {
	DailyCap   int        `yaml:"daily_cap"`   // non-OTP messages per number per UTC day; 0: no cap
	MaxEntries int        `yaml:"max_entries"` // numbers tracked per day
	Status     StatusCode `yaml:"status"`      // answers a message over the cap
}

// QuietHours configures holding marketing back at night in the recipient's local time.
type QuietHours struct {
	Enabled  bool       `yaml:"enabled"`
	Start    string     `yaml:"start"`    // "21:00" local time
	End      string     `yaml:"end"`      // "08:00"; before start: the window wraps midnight
	Accounts []string   `yaml:"accounts"` // marketing accounts it applies to; empty: every account
	Zones    []string   `yaml:"zones"`    // "REGION=IANA zone" overrides, e.g. "US=America/Chicago"
	Status   StatusCode `yaml:"status"`   // answers a held-back message
}

// ZoneMap returns the zone overrides as a map; entries that are not REGION=ZONE are left out
// (Validate reports them).
func (q *QuietHours) ZoneMap() map[string]string {
	m := map[string]string{}
	for _, z := range q.Zones {
		if r, zone, ok := strings.Cut(z, "="); ok {
			m[r] = zone
		}
	}
	return m
}

// Receipts configures delivery receipt correlation and the outbox of receipts and MO messages
// waiting for their clients.
type Receipts struct {
	Hold            Duration   `yaml:"hold"`             // a receipt that overtook its submit_sm_resp waits this long for it
	MaxHeld         int        `yaml:"max_held"`         // receipts held at once
	UnmatchedStatus StatusCode `yaml:"unmatched_status"` // answers a receipt that matches no message
	TTL             Duration   `yaml:"ttl"`              // receipts and MO no client took are dropped (and counted) after this
	RetryMin        Duration   `yaml:"retry_min"`        // first delay before re-sending a deliver_sm the client did not acknowledge
	RetryMax        Duration   `yaml:"retry_max"`        // longest such delay
}

// MO configures routing MO messages to accounts.
type MO struct {
	Routes           []MORoute  `yaml:"routes"`            // first match wins
	UnroutableStatus StatusCode `yaml:"unroutable_status"` // answers an MO no route matches
}

// MORoute sends MO messages to To (exact, or a prefix ending in '*'), whose first word is
// Keyword if set, to Account.
type MORoute struct {
	To      string `yaml:"to"`
	Keyword string `yaml:"keyword"`
	Account string `yaml:"account"`
}

// NumberRoute sends messages matching all its non-empty fields to Upstream.
type NumberRoute struct {
	Operator string `yaml:"operator"`
	Country  string `yaml:"country"`
	Account  string `yaml:"account"`
	Upstream string `yaml:"upstream"`
}

// Log configures logging.
type Log struct {
	Level  slog.Level `yaml:"level"`  // debug, info, warn or error
	Format string     `yaml:"format"` // text or json
}

// Default returns the built-in configuration, which configs/dev.yaml spells
// out key by key.
func Default() *Config {
	demo := Account{
		SystemID:     "demo",
		Password:     "demo",
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		Upstream:     "sim",
	}
	demo.setDefaults()
	sim := Upstream{Name: "sim", Address: "127.0.0.1:2776", SystemID: "smppd", Password: "smppd"}
	sim.setDefaults()
	return &Config{
		Node:   Node{ID: 1, DataDir: "./data"},
		Listen: Listen{SMPP: "127.0.0.1:2775", Admin: "127.0.0.1:8775", TLS: ListenTLS{MinVersion: "1.2"}},
		Server: Server{
			SystemID:            "smppd",
			MaxPDUSize:          65536,
			BindTimeout:         Duration(10 * time.Second),
			ReadTimeout:         Duration(30 * time.Second),
			EnquireLinkInterval: Duration(30 * time.Second),
			ResponseTimeout:     Duration(10 * time.Second),
			MaxSessions:         10000,
			ShutdownTimeout:     Duration(15 * time.Second),
			DeliverWindow:       10,
		},
		Accounts:  []Account{demo},
		Upstreams: []Upstream{sim},
		Router: Router{
			MaxWait:           Duration(2 * time.Second),
			InDoubtStatus:     0x08,
			IDMapTTL:          Duration(72 * time.Hour),
			OTPReservePercent: 10,
		},
		Numbers: Numbers{Enabled: true, DefaultCountry: "DE", UnknownTON: "international", MinDigits: 8,
			RangeFiles: []string{}, PortFiles: []string{}, Routes: []NumberRoute{}, NoRouteStatus: 0x0B},
		Content: Content{RuleFiles: []string{}, RejectStatus: 0x45, StripSeparators: true, Hold: Duration(time.Second),
			MaxHeldMessages: 10_000, MaxHeldBytes: 4 << 20},
		Lanes:      Lanes{Enabled: true, OTPAccounts: []string{}, BulkAccounts: []string{}, Templates: []string{}},
		Recipients: Recipients{DailyCap: 0, MaxEntries: 1 << 22, Status: 0x45},
		QuietHours: QuietHours{Enabled: false, Start: "21:00", End: "08:00", Accounts: []string{},
			Zones: []string{}, Status: 0x58},
		Dedup: Dedup{Enabled: true, Window: Duration(10 * time.Minute), MaxEntries: 1 << 20, Policy: "return_original",
			RejectStatus: 0x45, NearMax: 1000, NearWindow: Duration(10 * time.Minute), NearDistance: 3, NearStatus: 0x58},
		Receipts: Receipts{Hold: Duration(10 * time.Second), MaxHeld: 100000, UnmatchedStatus: 0,
			TTL: Duration(72 * time.Hour), RetryMin: Duration(time.Second), RetryMax: Duration(time.Minute)},
		MO: MO{Routes: []MORoute{}, UnroutableStatus: 0x0B},
		Cluster: Cluster{NodeID: "", RaftAddr: "127.0.0.1:8300", Peers: []Peer{}, Bootstrap: true, ApplyTimeout: Duration(5 * time.Second),
			SnapshotThreshold: 8192, SnapshotInterval: Duration(30 * time.Second), TrailingLogs: 10240,
			StaleAfter: Duration(time.Minute), StalePolicy: "serve", StaleStatus: 0x58, ExpireInterval: Duration(time.Minute)},
		Protection: Protection{Enabled: true, BlockedStatus: 0x45, ComplaintBlocks: true,
			OptOutKeywords: []string{"STOP", "UNSUBSCRIBE", "TD", "退订", "取消"}},
		Governor: Governor{Enabled: true, Window: Duration(24 * time.Hour), Bucket: Duration(time.Hour), WarnPPM: 1.5,
			LimitPPM: 2, Action: "refuse", ChannelAction: "alarm", Status: 0x45, ReportInterval: Duration(10 * time.Second)},
		Log: Log{Level: slog.LevelInfo, Format: "text"},
	}
}

// ClusterNodeID returns cluster.node_id, or "node<node.id>" when it is empty.
func (c *Config) ClusterNodeID() string {
	if c.Cluster.NodeID != "" {
		return c.Cluster.NodeID
	}
	return fmt.Sprintf("node%d", c.Node.ID)
}

// setDefaults sets the defaults of the keys an accounts element may omit.
func (a *Account) setDefaults() { a.MaxBinds, a.Window = 8, 100 }

// setDefaults sets the defaults of the keys an upstreams element may omit.
func (u *Upstream) setDefaults() {
	u.BindType, u.Binds, u.Window = BindTransceiver, 2, 100
	u.EnquireLinkInterval = Duration(30 * time.Second)
	u.ResponseTimeout = Duration(10 * time.Second)
	u.ReconnectMin, u.ReconnectMax = Duration(250*time.Millisecond), Duration(30*time.Second)
	u.ReceiptID = "auto"
}

// Load reads the file at path over Default, resolves password_env and
// password_file, and validates the result.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root, extra yaml.Node
	if err := dec.Decode(&root); err != nil && err != io.EOF {
		return nil, syntaxError(path, err)
	}
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: path, Line: extra.Line, Msg: "only one YAML document is allowed"}
	} else if err != io.EOF {
		return nil, syntaxError(path, err)
	}

	cfg := Default()
	l := &loader{file: path, lines: map[string]int{}}
	if len(root.Content) > 0 {
		l.decode(root.Content[0], reflect.ValueOf(cfg).Elem(), "")
	}
	if len(l.errs) == 0 {
		l.resolveSecrets(cfg)
	}
	if len(l.errs) == 0 {
		l.validate(cfg)
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return cfg, nil
}

// Check loads the file at path and reports whether it is valid.
func Check(path string) error {
	_, err := Load(path)
	return err
}

// Validate checks c as Load does; its errors carry no file position. It
// expects resolved secrets, as Load leaves them.
func (c *Config) Validate() error {
	l := &loader{}
	l.validate(c)
	return errors.Join(l.errs...)
}

// CheckPassword reports whether pw is the account's password. Plain
// passwords are compared in constant time, whatever their lengths.
func (a *Account) CheckPassword(pw []byte) bool {
	if a.PasswordBcrypt != "" {
		return bcrypt.CompareHashAndPassword([]byte(a.PasswordBcrypt), pw) == nil
	}
	if a.Password == "" {
		return false
	}
	want, got := sha256.Sum256([]byte(a.Password)), sha256.Sum256(pw)
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

// Permits reports whether the account may bind from addr.
func (a *Account) Permits(addr netip.Addr) bool {
	if len(a.AllowedCIDRs) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range a.AllowedCIDRs {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

var tlsVersions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// ServerConfig loads the listener's key pair into a tls.Config.
func (t *ListenTLS) ServerConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot load key pair: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tlsVersions[t.MinVersion]}, nil
}

// TLSConfig builds the tls.Config for dialing u. ServerName defaults to the
// host of u.Address.
func (u *Upstream) TLSConfig() (*tls.Config, error) {
	t := &u.TLS
	c := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if c.ServerName == "" {
		c.ServerName, _, _ = net.SplitHostPort(u.Address)
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate found", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cannot load client key pair: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
