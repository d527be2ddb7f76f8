package config

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/smppd/smppd/router/number"
	"github.com/smppd/smppd/router/quiet"
	"github.com/smppd/smppd/smpp"
)

// SMPP 3.4 limits of C-Octet String fields, without the terminating NUL.
const (
	maxSystemID   = 15
	maxPassword   = 8
	maxSystemType = 12
)

var upstreamName = regexp.MustCompile(`^[a-z0-9_-]+$`)

func (l *loader) validate(c *Config) {
	l.between("node.id", c.Node.ID, 0, 1023)
	l.check("node.data_dir", c.Node.DataDir != "", "must not be empty")

	ln := &c.Listen
	l.check("listen", ln.SMPP != "" || ln.TLS.Addr != "", "at least one of smpp and tls.addr must be set")
	l.hostPort("listen.smpp", ln.SMPP, true)
	l.hostPort("listen.admin", ln.Admin, true)
	if ln.TLS.Addr != "" {
		l.hostPort("listen.tls.addr", ln.TLS.Addr, false)
		l.check("listen.tls.cert_file", ln.TLS.CertFile != "", "required when tls.addr is set")
		l.check("listen.tls.key_file", ln.TLS.KeyFile != "", "required when tls.addr is set")
		if ln.TLS.CertFile != "" && ln.TLS.KeyFile != "" {
			if _, err := ln.TLS.ServerConfig(); err != nil {
				l.addf("listen.tls", "%v", err)
			}
		}
	}
	_, ok := tlsVersions[ln.TLS.MinVersion]
	l.check("listen.tls.min_version", ok, `must be "1.2" or "1.3", got %q`, ln.TLS.MinVersion)

	s := &c.Server
	l.systemID("server.system_id", s.SystemID)
	l.between("server.max_pdu_size", s.MaxPDUSize, 64, 1<<20)
	l.positive("server.bind_timeout", s.BindTimeout)
	l.positive("server.read_timeout", s.ReadTimeout)
	l.positive("server.enquire_link_interval", s.EnquireLinkInterval)
	l.positive("server.response_timeout", s.ResponseTimeout)
	l.check("server.max_sessions", s.MaxSessions >= 1, "must be at least 1, got %d", s.MaxSessions)
	l.positive("server.shutdown_timeout", s.ShutdownTimeout)

	upstreams := map[string]bool{}
	for _, u := range c.Upstreams {
		upstreams[u.Name] = true
	}
	l.check("accounts", len(c.Accounts) > 0, "at least one account is required")
	ids := map[string]bool{}
	for i := range c.Accounts {
		a, p := &c.Accounts[i], fmt.Sprintf("accounts[%d]", i)
		l.systemID(p+".system_id", a.SystemID)
		l.check(p+".system_id", !ids[a.SystemID], "duplicate system_id %q", a.SystemID)
		ids[a.SystemID] = true
		l.password(p, a.Password, a.PasswordBcrypt, a.PasswordEnv, a.PasswordFile, true)
		for j, cidr := range a.AllowedCIDRs {
			l.check(fmt.Sprintf("%s.allowed_cidrs[%d]", p, j), cidr.IsValid(), "must be a CIDR such as 10.0.0.0/8")
		}
		l.check(p+".max_binds", a.MaxBinds >= 1, "must be at least 1, got %d", a.MaxBinds)
		l.between(p+".window", a.Window, 1, 65535)
		l.check(p+".throughput", a.Throughput >= 0, "must not be negative, got %d", a.Throughput)
		l.check(p+".upstream", upstreams[a.Upstream], "must name an upstream, got %q", a.Upstream)
	}

	l.check("upstreams", len(c.Upstreams) > 0, "at least one upstream is required")
	names := map[string]bool{}
	for i := range c.Upstreams {
		u, p := &c.Upstreams[i], fmt.Sprintf("upstreams[%d]", i)
		l.check(p+".name", upstreamName.MatchString(u.Name), "must match [a-z0-9_-]+, got %q", u.Name)
		l.check(p+".name", !names[u.Name], "duplicate name %q", u.Name)
		names[u.Name] = true
		l.hostPort(p+".address", u.Address, false)
		l.systemID(p+".system_id", u.SystemID)
		l.password(p, u.Password, u.PasswordBcrypt, u.PasswordEnv, u.PasswordFile, false)
		l.check(p+".system_type", len(u.SystemType) <= maxSystemType,
			"must be at most %d characters, got %d", maxSystemType, len(u.SystemType))
		l.check(p+".bind_type", slices.Contains([]string{BindTransmitter, BindReceiver, BindTransceiver}, u.BindType),
			"must be transmitter, receiver or transceiver, got %q", u.BindType)
		l.between(p+".binds", u.Binds, 1, 64)
		l.between(p+".window", u.Window, 1, 65535)
		l.check(p+".throughput", u.Throughput >= 0, "must not be negative, got %d", u.Throughput)
		l.positive(p+".enquire_link_interval", u.EnquireLinkInterval)
		l.positive(p+".response_timeout", u.ResponseTimeout)
		l.positive(p+".reconnect_min", u.ReconnectMin)
		l.check(p+".reconnect_max", u.ReconnectMax >= u.ReconnectMin,
			"must not be less than reconnect_min (%s), got %s", u.ReconnectMin, u.ReconnectMax)
		if _, err := smpp.ParseIDMode(u.ReceiptID); err != nil {
			l.addf(p+".receipt_id", "must be auto, same, receipt_decimal or receipt_hex, got %q", u.ReceiptID)
		}
		l.check(p+".tls.cert_file", (u.TLS.CertFile == "") == (u.TLS.KeyFile == ""),
			"cert_file and key_file must be given together")
		if u.TLS.Enabled {
			if _, err := u.TLSConfig(); err != nil {
				l.addf(p+".tls", "%v", err)
			}
		}
	}

	l.positive("router.max_wait", c.Router.MaxWait)
	l.check("router.in_doubt_status", c.Router.InDoubtStatus != 0, "must not be 0 (ESME_ROK)")
	l.between("router.otp_reserve_percent", c.Router.OTPReservePercent, 0, 50)

	nb := &c.Numbers
	l.check("numbers.default_country", nb.DefaultCountry == "" || number.Region(nb.DefaultCountry),
		"must be an ISO 3166 region such as DE or CN, got %q", nb.DefaultCountry)
	l.check("numbers.unknown_ton", nb.UnknownTON == number.UnknownInternational || nb.UnknownTON == number.UnknownNational,
		"must be %s or %s, got %q", number.UnknownInternational, number.UnknownNational, nb.UnknownTON)
	l.between("numbers.min_digits", nb.MinDigits, 1, 15)
	l.check("numbers.no_route_status", nb.NoRouteStatus != 0, "must not be 0 (ESME_ROK)")
	for _, f := range slices.Concat(nb.RangeFiles, nb.PortFiles) {
		if _, err := os.Stat(f); err != nil {
			l.addf("numbers.range_files", "%v", err)
		}
	}
	for i, r := range nb.Routes {
		p := fmt.Sprintf("numbers.routes[%d]", i)
		l.check(p+".upstream", upstreams[r.Upstream], "must name an upstream, got %q", r.Upstream)
		l.check(p+".country", r.Country == "" || number.Region(r.Country), "must be an ISO 3166 region, got %q", r.Country)
	}
	for i, t := range c.Lanes.Templates {
		if _, err := regexp.Compile(t); err != nil {
			l.addf(fmt.Sprintf("lanes.otp_templates[%d]", i), "%v", err)
		}
	}
	l.between("recipients.daily_cap", c.Recipients.DailyCap, 0, 1<<20)
	l.between("recipients.max_entries", c.Recipients.MaxEntries, 16, 1<<28)
	l.check("recipients.status", c.Recipients.Status != 0, "must not be 0 (ESME_ROK)")
	for i, z := range c.QuietHours.Zones {
		r, _, ok := strings.Cut(z, "=")
		l.check(fmt.Sprintf("quiet_hours.zones[%d]", i), ok && number.Region(r), "want REGION=IANA zone such as US=America/Chicago, got %q", z)
	}
	if q := &c.QuietHours; q.Enabled {
		if _, err := quiet.New(quiet.Config{Start: q.Start, End: q.End, Zones: q.ZoneMap()}); err != nil {
			l.addf("quiet_hours", "%v", err)
		}
	}
	l.check("quiet_hours.status", c.QuietHours.Status != 0, "must not be 0 (ESME_ROK)")
	d := &c.Dedup
	l.positive("dedup.window", d.Window)
	l.between("dedup.max_entries", d.MaxEntries, 1024, 1<<28)
	l.check("dedup.policy", d.Policy == "return_original" || d.Policy == "reject", "must be return_original or reject, got %q", d.Policy)
	l.check("dedup.reject_status", d.RejectStatus != 0, "must not be 0 (ESME_ROK)")
	l.between("dedup.near_max", d.NearMax, 1, 1<<30)
	l.positive("dedup.near_window", d.NearWindow)
	l.between("dedup.near_distance", d.NearDistance, 0, 7)
	l.check("dedup.near_status", d.NearStatus != 0, "must not be 0 (ESME_ROK)")
	l.check("content.reject_status", c.Content.RejectStatus != 0, "must not be 0 (ESME_ROK)")
	for i, f := range c.Content.RuleFiles {
		if _, err := os.Stat(f); err != nil {
			l.addf(fmt.Sprintf("content.rule_files[%d]", i), "%v", err)
		}
	}
	l.check("numbers.fallback", nb.Fallback == "" || upstreams[nb.Fallback], "must name an upstream, got %q", nb.Fallback)

	rc := &c.Receipts
	l.positive("receipts.hold", rc.Hold)
	l.between("receipts.max_held", rc.MaxHeld, 0, 1<<24)
	l.check("receipts.ttl", rc.TTL >= Duration(time.Minute), "must be at least 1m, got %s", rc.TTL)
	l.positive("receipts.retry_min", rc.RetryMin)
	l.check("receipts.retry_max", rc.RetryMax >= rc.RetryMin, "must not be less than retry_min (%s), got %s", rc.RetryMin, rc.RetryMax)
	l.check("router.id_map_ttl", c.Router.IDMapTTL >= Duration(time.Minute), "must be at least 1m, got %s", c.Router.IDMapTTL)
	l.between("server.deliver_window", c.Server.DeliverWindow, 1, 65535)
	for i, r := range c.MO.Routes {
		p := fmt.Sprintf("mo.routes[%d]", i)
		l.check(p+".to", r.To != "", "must be an address, or a prefix ending in '*' (\"*\": any)")
		l.check(p+".account", ids[r.Account], "must name an account, got %q", r.Account)
	}
	cl := &c.Cluster
	l.hostPort("cluster.raft_addr", cl.RaftAddr, false)
	l.hostPort("cluster.advertise", cl.Advertise, true)
	l.positive("cluster.apply_timeout", cl.ApplyTimeout)
	// Raft's ValidateConfig refuses a snapshot interval under 5ms; a threshold of 0 would
	// snapshot at every interval tick; trailing_logs 0 is allowed (keep no log behind a snapshot).
	l.check("cluster.snapshot_threshold", cl.SnapshotThreshold >= 1, "must be at least 1, got %d", cl.SnapshotThreshold)
	l.check("cluster.snapshot_interval", cl.SnapshotInterval >= Duration(5*time.Millisecond),
		"must be at least 5ms (Raft refuses a shorter one), got %s", cl.SnapshotInterval)
	l.check("cluster.trailing_logs", cl.TrailingLogs >= 0, "must not be negative, got %d", cl.TrailingLogs)
	l.positive("cluster.stale_after", cl.StaleAfter)
	l.positive("cluster.expire_interval", cl.ExpireInterval)
	l.check("cluster.stale_policy", cl.StalePolicy == "serve" || cl.StalePolicy == "refuse", "must be serve or refuse, got %q", cl.StalePolicy)
	l.check("cluster.stale_status", cl.StaleStatus != 0, "must not be 0 (ESME_ROK)")
	peerIDs := map[string]bool{}
	self := false
	for i, p := range cl.Peers {
		pp := fmt.Sprintf("cluster.peers[%d]", i)
		l.check(pp+".id", p.ID != "", "must not be empty")
		l.check(pp+".id", !peerIDs[p.ID], "duplicate id %q", p.ID)
		peerIDs[p.ID] = true
		l.hostPort(pp+".raft", p.Raft, false)
		l.hostPort(pp+".admin", p.Admin, true)
		self = self || p.ID == c.ClusterNodeID()
	}
	l.check("cluster.peers", len(cl.Peers) == 0 || self || !cl.Bootstrap, "must include this node (cluster.node_id %q), or be empty, when bootstrap is true", c.ClusterNodeID())
	if ct := &cl.TLS; ct.Enabled {
		l.check("cluster.tls", ct.CertFile != "" && ct.KeyFile != "" && ct.CAFile != "", "cert_file, key_file and ca_file are required when enabled")
		if ct.CertFile != "" && ct.KeyFile != "" && ct.CAFile != "" {
			if _, err := ct.Config(); err != nil {
				l.addf("cluster.tls", "%v", err)
			}
		}
	}
	l.check("content.hold", c.Content.Hold >= 0, "must not be negative, got %s", c.Content.Hold)
	l.check("content.max_held_messages", c.Content.MaxHeldMessages > 0, "must be positive, got %d", c.Content.MaxHeldMessages)
	l.check("content.max_held_bytes", c.Content.MaxHeldBytes >= 64<<10, "must be at least 65536 (64 KiB), got %d", c.Content.MaxHeldBytes)
	l.check("protection.blocked_status", c.Protection.BlockedStatus != 0, "must not be 0 (ESME_ROK)")
	l.check("protection.optout_reply", utf8.RuneCountInString(c.Protection.OptOutReply) <= 1000,
		"must be at most 1000 characters, got %d", utf8.RuneCountInString(c.Protection.OptOutReply))
	if g := &c.Governor; g.Enabled {
		l.positive("governor.bucket", g.Bucket)
		l.check("governor.window", g.Window >= g.Bucket && (g.Bucket <= 0 || g.Window%g.Bucket == 0),
			"must be a positive multiple of governor.bucket (%s), got %s", g.Bucket, g.Window)
		l.check("governor.limit_ppm", g.LimitPPM > 0 && !math.IsInf(g.LimitPPM, 0), "must be a positive number, got %v", g.LimitPPM)
		l.check("governor.warn_ppm", g.WarnPPM > 0 && g.WarnPPM <= g.LimitPPM, "must be positive and at most limit_ppm (%v), got %v", g.LimitPPM, g.WarnPPM)
		l.check("governor.action", g.Action == "refuse" || g.Action == "alarm", "must be refuse or alarm, got %q", g.Action)
		l.check("governor.channel_action", g.ChannelAction == "refuse" || g.ChannelAction == "alarm", "must be refuse or alarm, got %q", g.ChannelAction)
		l.check("governor.status", g.Status != 0, "must not be 0 (ESME_ROK)")
		l.positive("governor.report_interval", g.ReportInterval)
	}
	if c.Admin.Token == "" && c.Listen.Admin != "" && !loopback(c.Listen.Admin) {
		l.addf("admin.token", "required when listen.admin (%s) is not a loopback address: admin writes need a bearer token", c.Listen.Admin)
	}
	l.check("log.level", slices.Contains([]slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}, c.Log.Level),
		"must be debug, info, warn or error, got %s", c.Log.Level)
	l.check("log.format", c.Log.Format == "text" || c.Log.Format == "json", "must be text or json, got %q", c.Log.Format)
}

// loopback reports whether host:port names a loopback host.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (l *loader) between(path string, v, lo, hi int) {
	l.check(path, v >= lo && v <= hi, "must be between %d and %d, got %d", lo, hi, v)
}

func (l *loader) positive(path string, d Duration) {
	l.check(path, d > 0, "must be greater than 0, got %s", d)
}

// hostPort checks that addr is host:port with a numeric port; "" passes if
// optional.
func (l *loader) hostPort(path, addr string, optional bool) {
	if addr == "" && optional {
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	l.check(path, err == nil, "must be host:port, got %q", addr)
}

func (l *loader) systemID(path, id string) {
	l.check(path, id != "", "must not be empty")
	l.check(path, len(id) <= maxSystemID, "must be at most %d characters, got %d", maxSystemID, len(id))
}

// password checks a resolved password. Accounts may use a bcrypt hash;
// upstreams may not, as smppd must send their password.
func (l *loader) password(path string, pw Secret, hash, env, file string, hashOK bool) {
	key := path + ".password"
	switch {
	case env != "":
		key += "_env"
	case file != "":
		key += "_file"
	}
	switch {
	case hash != "" && !hashOK:
		l.addf(path+".password_bcrypt", "not allowed for an upstream: smppd must send the password itself; use password, password_env or password_file")
	case hash != "":
		_, err := bcrypt.Cost([]byte(hash))
		l.check(path+".password_bcrypt", err == nil, "not a bcrypt hash")
	case pw == "":
		l.addf(path, "a password is required: set password, password_env or password_file")
	default:
		l.check(key, len(pw) <= maxPassword, "must be at most %d characters (SMPP 3.4), got %d", maxPassword, len(pw))
	}
}
