// Package store keeps smppd's state in Pebble.
//
// Replicated (Raft, see DESIGN.md): FSM holds the recipient-protection state — blocklist,
// complaints, opt-outs, node versions — applied from Commands (a type byte, append-only, and a
// versioned payload; the proposer's time inside, never the clock); RaftLog is the Raft log and
// stable store; Index is the immutable in-memory view the router checks on every message.
//
// Local is the node's own durable state, not replicated: the message-id mappings that
// delivery receipts are correlated through, and the outbox of receipts and MO messages waiting
// for a client to take them. Every write goes through one writer goroutine that groups the
// writes arriving while the previous group is being synced into one Pebble batch committed
// with Sync (group commit): a caller is told its write is durable only after the fsync, and a
// thousand concurrent writers cost one fsync, not a thousand.
//
// The package knows nothing of SMPP: keys and values are bytes; the callers (router/deliver)
// say what they mean.
//
// Local's key layout (all integers big-endian, so keys sort by them):
//
//	'M' hour(u32) upstream 0x00 id      mapping: upstream message id -> value, bucketed by the
//	                                    hour it was written; a bucket older than the TTL is
//	                                    removed with one range deletion
//	'Q' account 0x00 seq(u64)           outbox item; seq is unique and grows with time
//	                                    (unix nanoseconds when written, or one more than the last)
//	'V'                                 format version of the directory
package store
