package config

import (
	"fmt"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in YAML as a Go duration string such
// as "10s", "250ms" or "72h".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q, want e.g. \"10s\", \"250ms\" or \"72h\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func (d Duration) String() string { return time.Duration(d).String() }

// StatusCode is an SMPP command_status, written in YAML as an integer or a
// hex string such as "0x08".
type StatusCode uint32

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *StatusCode) UnmarshalYAML(n *yaml.Node) error {
	var str string
	if err := n.Decode(&str); err != nil {
		return err
	}
	v, err := strconv.ParseUint(str, 0, 32)
	if err != nil {
		return fmt.Errorf("invalid status code %q, want an integer or hex string in 0..0xFFFFFFFF", str)
	}
	*s = StatusCode(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (s StatusCode) MarshalYAML() (any, error) { return s.String(), nil }

func (s StatusCode) String() string { return fmt.Sprintf("0x%08X", uint32(s)) }

// Secret is a password. It prints, logs and marshals as "REDACTED"; use
// string(s) where the value is really needed.
type Secret string

const redacted = "REDACTED"

func (s Secret) String() string { return redacted }

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return strconv.Quote(redacted) }

// MarshalText keeps encoders (YAML, JSON, slog) from printing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
