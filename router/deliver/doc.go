// Package deliver carries what flows back from the upstreams to the clients: delivery receipts
// and MO messages.
//
// Flow. The router hands every message that asked for a receipt (registered_delivery & 0x1F) to
// Service.Record when its upstream accepts it; the mapping (upstream, canonical upstream id) ->
// (message_id, account) is written to the store and synced before the client hears its
// message_id (router.Journal). A deliver_sm from an upstream (OnDeliver) is a receipt
// (smpp.IsReceipt) or an MO message:
//
//   - A receipt is matched by (upstream, id) through the candidates smpp.IDCandidates gives for
//     the upstream's receipt_id mode (decimal/hex, case, leading zeros). A match is rewritten to
//     carry smppd's message_id in the text's id: field and in receipted_message_id, everything
//     else unchanged, and appended to the account's outbox in the same synced batch that marks
//     the receipt seen in the mapping (a duplicate, same message and same stat, is answered and
//     dropped). No match yet: the receipt may have overtaken the submit_sm_resp, so it is held
//     (Config.Hold, at most Config.MaxHeld) until the mapping is written, and only then
//     unmatched (Config.UnmatchedStatus, counted with its reason).
//   - An MO message goes to the account of the first MO route matching its destination (exact,
//     or a prefix ending in '*') and, if the route has one, its keyword (the text's first word,
//     any case); the parts of a concatenated MO follow their first part's route. It is stored
//     intact. No route: Config.UnroutableStatus, counted.
//
// The upstream gets its deliver_sm_resp only once the item is durable (or refused), so a crash
// never loses a receipt the SMSC believes delivered: it sends again whatever we did not answer.
//
// Outbox. Each account's items wait in the store until a receiver or transceiver of the account
// takes them: round robin over its sessions, at most smpp.ServerConfig.OutboundWindow
// unanswered per session, the parts of a concatenated MO on one session. An item the client
// does not acknowledge (error status, no answer, session lost) is retried with backoff
// (Config.RetryMin doubling to RetryMax); an acknowledged one is removed. Items older than the
// store's outbox TTL are expired and counted. A crash between a client's deliver_sm_resp and the
// removal being synced delivers that item again after restart (at least once at that edge).
//
// Threads. Everything that reads or writes the store runs as store.Ops on the store's writer
// goroutine, so the held receipts and the MO part routes need no lock. Each account's outbox
// has one goroutine that sends; answers arrive on the sessions' read loops.
package deliver
