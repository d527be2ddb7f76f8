// Package config loads and validates the smppd configuration file.
//
// smppd reads a single YAML file. [Load] starts from [Default] and overlays
// the file, so every omitted key keeps its default. Lists (accounts,
// upstreams) in the file replace the default list as a whole; each element
// starts from the per-element defaults (an account gets max_binds 8 and
// window 100, an upstream gets bind_type transceiver, binds 2, window 100
// and the default timers) before its own keys are applied. An account
// without allowed_cidrs accepts binds from any address.
//
// Loading is strict: unknown or duplicate keys, values of the wrong type and
// failed validation rules are all errors, and every error names the file,
// the line, the field path and the reason:
//
//	configs/dev.yaml:14: upstreams[0].binds: must be between 1 and 64, got 0
//
// A field absent from the file is reported at the line of its nearest
// parent that is present. Load reports every problem it finds, joined with
// [errors.Join]; each one is an [*Error].
//
// Durations are Go duration strings ("10s", "250ms", "72h"). Status codes
// are integers or hex strings ("0x08").
//
// Passwords of accounts and upstreams are given by exactly one of password
// (plain text), password_bcrypt (accounts only: smppd must send an
// upstream's password itself), password_env (name of an environment
// variable) or password_file (path; trailing newlines are trimmed).
// Environment variables and files are read at load time into the Password
// field. Passwords are of type [Secret], which never prints its value, and
// no error message contains one.
package config
