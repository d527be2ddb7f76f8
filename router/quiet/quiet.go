// Package quiet is the pipeline stage that holds marketing back at night in the recipient's
// local time: between Start and End (e.g. 21:00-08:00) a non-OTP message from an account it
// applies to is refused with a configured status — never dropped silently — so the client sends
// it again in the morning. The recipient's zone comes from its country (router.Message.Country,
// set by the number stage): one zone per region, generated from libphonenumber's time zone data
// (`go generate ./router/quiet`), overridable per region in config — countries spanning several
// zones (US, RU, BR, AU, CA, MX, ID…) get the zone of their example mobile number unless
// overridden. Verification codes are never held.
package quiet

//go:generate sh -c "go run ./gen > zones_gen.go"

import (
	"fmt"
	"time"
	_ "time/tzdata" // zones must load on machines without a system zoneinfo

	"github.com/VictoriaMetrics/metrics"

	"github.com/smppd/smppd/router"
	"github.com/smppd/smppd/smpp"
)

// Config configures the stage.
type Config struct {
	Start, End string            // "21:00", "08:00": local times; Start > End wraps midnight
	Accounts   []string          // system_ids it applies to; empty: every account
	Zones      map[string]string // region -> IANA zone, overriding the built-in table
	Status     smpp.Status       // answers a held-back message (default ESME_RTHROTTLED)
	Now        func() int64      // unix nanos; nil: smpp.Now
	Metrics    *metrics.Set
}

// Stage refuses marketing in quiet hours. Safe for concurrent use; no allocation per message.
type Stage struct {
	start, end   int // minutes after local midnight
	accounts     map[string]bool
	locs         map[string]*time.Location
	status       smpp.Status
	now          func() int64
	held, nozone *metrics.Counter
}

func minutes(field, s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("quiet_hours.%s: %q is not HH:MM", field, s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// New builds the stage; errors name the field.
func New(cfg Config) (*Stage, error) {
	s := &Stage{accounts: map[string]bool{}, locs: map[string]*time.Location{}, status: cfg.Status, now: cfg.Now}
	var err error
	if s.start, err = minutes("start", cfg.Start); err != nil {
		return nil, err
	}
	if s.end, err = minutes("end", cfg.End); err != nil {
		return nil, err
	}
	if s.status == smpp.StatusOK {
		s.status = smpp.StatusThrottled
	}
	if s.now == nil {
		s.now = smpp.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	for _, a := range cfg.Accounts {
		s.accounts[a] = true
	}
	for region, zone := range zones {
		if _, over := cfg.Zones[region]; over {
			continue
		}
		loc, err := time.LoadLocation(zone)
		if err != nil {
			return nil, fmt.Errorf("built-in zone %s of %s: %v", zone, region, err)
		}
		s.locs[region] = loc
	}
	for region, zone := range cfg.Zones {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			return nil, fmt.Errorf("quiet_hours.zones.%s: %v", region, err)
		}
		s.locs[region] = loc
	}
	s.held = cfg.Metrics.GetOrCreateCounter(`smppd_stage_decisions_total{stage="quiet",decision="quiet_hours"}`)
	s.nozone = cfg.Metrics.GetOrCreateCounter(`smppd_stage_decisions_total{stage="quiet",decision="unknown_zone"}`)
	return s, nil
}

// Name implements router.Stage.
func (s *Stage) Name() string { return "quiet" }

// Process implements router.Stage.
func (s *Stage) Process(m *router.Message) router.Verdict {
	if m.Lane == router.LaneOTP || (len(s.accounts) > 0 && !s.accounts[m.Account.SystemID]) {
		return router.Verdict{}
	}
	loc := s.locs[m.Country]
	if loc == nil {
		if m.Trace == nil && m.Country != "" {
			s.nozone.Inc()
		}
		return router.Verdict{}
	}
	local := time.Unix(0, s.now()).In(loc)
	min := local.Hour()*60 + local.Minute()
	quiet := s.start <= min && min < s.end // same-day window
	if s.start > s.end {                   // wraps midnight
		quiet = min >= s.start || min < s.end
	}
	if !quiet {
		return router.Verdict{}
	}
	if m.Trace != nil {
		m.Explain("quiet", "quiet hours in %s (%s local)", loc.String(), local.Format("15:04"))
	} else {
		s.held.Inc()
	}
	return router.Verdict{Status: s.status, Rule: "quiet_hours"}
}
