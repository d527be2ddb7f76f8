package dedup

import (
	"errors"
	"fmt"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/smpp"
)

// Policy says how a duplicate of an accepted message is answered.
type Policy uint8

const (
	// ReturnOriginal answers a duplicate ESME_ROK with the original's message_id, as if it had
	// been accepted again: the client's retry succeeds and the handset gets one message.
	ReturnOriginal Policy = iota
	// Reject answers a duplicate with Config.RejectStatus.
	Reject
)

func (p Policy) String() string {
	switch p {
	case ReturnOriginal:
		return "return_original"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// StatusSubmitFail is ESME_RSUBMITFAIL (0x45), the default answer to a rejected duplicate.
const StatusSubmitFail = smpp.Status(0x45)

// Config configures duplicate detection.
type Config struct {
	// Window is how long after an original a message with the same key is a duplicate.
	Window time.Duration
	// MaxEntries bounds the keys remembered, in-flight and accepted. When traffic fills it
	// within a window, the oldest third is forgotten early (counted in
	// smppd_dedup_early_rotations_total): raise it if that counter moves.
	MaxEntries int
	// InFlightTimeout is how long an original may stay in flight (neither Accepted nor Failed)
	// before a message with its key is let through as a new original: a safety net should an
	// outcome never be reported. It must exceed the router's max_wait plus the upstream
	// response_timeout.
	InFlightTimeout time.Duration
	// Policy answers duplicates of accepted originals.
	Policy Policy
	// RejectStatus answers duplicates under Policy Reject, and under ReturnOriginal while the
	// router cannot answer a duplicate ESME_ROK (Stage.Process).
	RejectStatus smpp.Status
	// InFlightStatus answers a duplicate whose original is still in flight when the caller
	// cannot wait for the outcome (no Waiter) under Policy ReturnOriginal.
	InFlightStatus smpp.Status
	// KeyConcatRef keys the parts of a long message on their concatenation reference too. Off
	// (the default), a long message resubmitted under a new reference is still recognised, but
	// two different long messages to the same destination whose k-th parts have the same text
	// and the same part count are duplicates of each other part for part.
	KeyConcatRef bool
	// NearDup configures the near-duplicate flood limiter.
	NearDup NearConfig

	// Now returns the time in unix nanoseconds (nil: smpp.Now, the time of the latest read).
	Now func() int64
	// Metrics receives the metrics (nil: a private set).
	Metrics *metrics.Set
}

// NearConfig configures the near-duplicate flood limiter: per account, at most Max messages
// whose fingerprints lie within MaxDistance of one another per Window.
type NearConfig struct {
	Enabled bool
	// Max is how many near-duplicates of one text an account may send per Window.
	Max int
	// Window is the sliding window Max applies to.
	Window time.Duration
	// MaxDistance is the Hamming distance (of 64 bits) up to which fingerprints are near
	// duplicates; at most 7.
	MaxDistance int
	// MaxClusters bounds the texts tracked across all accounts; when full, the least recently
	// matched cluster is forgotten.
	MaxClusters int
	// PerDestination counts per account and destination instead of per account: a limit on
	// message bombing of one number rather than on campaigns.
	PerDestination bool
	// Status answers messages over the limit.
	Status smpp.Status
}

// DefaultConfig returns the defaults: a 10-minute window over up to 4M keys, duplicates of
// accepted messages answered with the original's message_id, the near-duplicate limiter off.
func DefaultConfig() Config {
	return Config{
		Window:          10 * time.Minute,
		MaxEntries:      1 << 22,
		InFlightTimeout: time.Minute,
		Policy:          ReturnOriginal,
		RejectStatus:    StatusSubmitFail,
		InFlightStatus:  smpp.StatusThrottled,
		NearDup:         DefaultNearConfig(),
	}
}

// DefaultNearConfig returns the near-duplicate defaults: 1000 per 10 minutes within distance 3,
// answered ESME_RTHROTTLED, disabled.
func DefaultNearConfig() NearConfig {
	return NearConfig{Max: 1000, Window: 10 * time.Minute, MaxDistance: 3, MaxClusters: 1 << 17,
		Status: smpp.StatusThrottled}
}

// minEntries keeps a few keys per generation in every shard.
const minEntries = 4 * generations * shards

// maxWindow keeps entry times (milliseconds from their generation's start) within 32 bits.
const maxWindow = 7 * 24 * time.Hour

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("dedup: invalid configuration")

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch {
	case c.Window <= 0 || c.Window > maxWindow:
		return fmt.Errorf("%w: window must be in (0, %s], got %s", ErrConfig, maxWindow, c.Window)
	case c.MaxEntries < minEntries:
		return fmt.Errorf("%w: max_entries must be at least %d, got %d", ErrConfig, minEntries, c.MaxEntries)
	case c.InFlightTimeout <= 0:
		return fmt.Errorf("%w: in_flight_timeout must be positive, got %s", ErrConfig, c.InFlightTimeout)
	case c.Policy != ReturnOriginal && c.Policy != Reject:
		return fmt.Errorf("%w: policy must be return_original or reject, got %s", ErrConfig, c.Policy)
	case c.RejectStatus == smpp.StatusOK:
		return fmt.Errorf("%w: reject_status must not be 0 (ESME_ROK)", ErrConfig)
	case c.InFlightStatus == smpp.StatusOK:
		return fmt.Errorf("%w: in_flight_status must not be 0 (ESME_ROK)", ErrConfig)
	}
	return c.NearDup.Validate()
}

// Validate reports the first invalid field; a disabled limiter is always valid.
func (c *NearConfig) Validate() error {
	switch {
	case !c.Enabled:
		return nil
	case c.Max <= 0:
		return fmt.Errorf("%w: near_dup.max must be positive, got %d", ErrConfig, c.Max)
	case c.Window <= 0:
		return fmt.Errorf("%w: near_dup.window must be positive, got %s", ErrConfig, c.Window)
	case c.MaxDistance < 0 || c.MaxDistance > maxBands-1:
		return fmt.Errorf("%w: near_dup.max_distance must be in 0..%d, got %d", ErrConfig, maxBands-1, c.MaxDistance)
	case c.MaxClusters < nearShards*ways:
		return fmt.Errorf("%w: near_dup.max_clusters must be at least %d, got %d", ErrConfig, nearShards*ways, c.MaxClusters)
	case c.Status == smpp.StatusOK:
		return fmt.Errorf("%w: near_dup.status must not be 0 (ESME_ROK)", ErrConfig)
	}
	return nil
}
