package store

import "fmt"

// Kind is what a recipient-protection entry records. A number with any entry whose scope
// matches a message is refused (complaints block by policy: see FSMConfig).
type Kind uint8

// Entry kinds. Append only: the values are stored and replicated.
const (
	KindBlock     Kind = 1 // blocklist entry
	KindComplaint Kind = 2 // a user complaint about messages to this number
	KindOptOut    Kind = 3 // the user opted out (STOP) of messages from a sender
)

func (k Kind) String() string {
	switch k {
	case KindBlock:
		return "block"
	case KindComplaint:
		return "complaint"
	case KindOptOut:
		return "optout"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Scope says which messages an entry applies to: all (both empty, "global"), one account's, one
// sender's (source address), or one account's messages from one sender.
type Scope struct {
	Account string `json:"account,omitempty"`
	Sender  string `json:"sender,omitempty"`
}

// Global reports whether the scope covers every message.
func (s Scope) Global() bool { return s.Account == "" && s.Sender == "" }

// Matches reports whether a message of account from sender is in the scope.
func (s Scope) Matches(account, sender string) bool {
	return (s.Account == "" || s.Account == account) && (s.Sender == "" || s.Sender == sender)
}

// Key identifies an entry: one per (number, kind, scope).
type Key struct {
	Number uint64 `json:"number"` // E.164 digits as an integer, country code first
	Kind   Kind   `json:"kind"`
	Scope  Scope  `json:"scope"`
}

// Entry is one recipient-protection record. Times are unix milliseconds chosen by the proposer
// (never read from the clock when a command is applied).
type Entry struct {
	Key
	Reason   string `json:"reason,omitempty"`
	Source   string `json:"source,omitempty"`   // who or what added it (admin user, "mo", "api")
	Upstream string `json:"upstream,omitempty"` // complaints: the channel (upstream/operator) it came through
	Created  int64  `json:"created"`
	Expires  int64  `json:"expires,omitempty"` // 0: never
}
