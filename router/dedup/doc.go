// Package dedup is the router's duplicate stage: it recognises a submit_sm the client has
// already sent (a retry after a lost or slow response, a resubmitted batch) and answers it
// without sending it again, and it limits floods of near-identical texts.
//
// # Exact duplicates
//
// A message is a duplicate when an original with the same Key was begun within Config.Window
// (10 minutes) and has not failed. The Key (KeyOf) is a 128-bit xxh3 hash of:
//
//   - the account's system_id;
//   - the destination: Message.Dest when a stage has normalised it, else the digits of
//     destination_addr (all of it when it has none);
//   - the data_coding alphabet (GSM 7-bit, IA5, Latin-1, UCS2, 8-bit; message class and
//     indication bits do not count);
//   - for a part of a long message, its part number and part count, from the UDH (8- or 16-bit
//     reference) or the SAR TLVs, but not its reference number, so a long message resubmitted
//     under a new reference is recognised part for part while its parts are never duplicates of
//     one another (Config.KeyConcatRef adds the reference);
//   - the payload (short_message or message_payload) without the concatenation element of its
//     user data header; other header elements (ports…) count.
//
// The source address, service_type, registered_delivery and validity do not count.
//
// The index remembers each original's state: in flight (forwarded, no answer yet), or accepted
// with its message_id (a uint64, router.FormatID). A failed original is forgotten at once: the
// client was told it failed, so its resubmission must go. An original in flight for longer
// than Config.InFlightTimeout counts as lost (its outcome was never reported) and the next
// message with its key becomes the new original.
//
// A duplicate of an accepted original is answered, by Config.Policy, either ESME_ROK with the
// original's message_id (ReturnOriginal, the default: the client's retry succeeds, the handset
// gets one message, and the one delivery receipt carries that id) or Config.RejectStatus
// (Reject; ESME_RSUBMITFAIL by default). A duplicate of an original still in flight waits for
// the original's outcome under ReturnOriginal (Action Wait, see below) or is rejected under
// Reject.
//
// # Memory
//
// Keys live in 32 shards, each with its own lock and three generations (Go maps of 16-byte keys
// to 16-byte entries without pointers, which the garbage collector does not scan). A key goes into
// the newest generation; when the newest is Window/2 old, or holds MaxEntries/96 keys, the oldest
// is emptied and becomes the newest. So at most MaxEntries keys are held, and every key is
// remembered for at least Window unless traffic fills MaxEntries first: then the oldest third of
// a shard's keys is forgotten early, and smppd_dedup_early_rotations_total counts it. Whether a
// remembered key is a duplicate is decided by its own time, so the window is exact.
//
// A key costs about 60 bytes once the maps have grown (measured: 252 MB for MaxEntries 4M, 63 MB
// for 1M). The maps grow as traffic needs (keys held ≈ rate × 1 to 1.5 windows, so the default
// bound is reached at about 4,700 messages/s) and keep their memory after a peak, so the steady
// state allocates nothing. Duplicates waiting for an in-flight original sit in a per-shard side
// map, allocated only then. There is no probabilistic structure: a Bloom filter's false positive
// would drop a real message.
//
// The index is per process: a retry that reaches another cluster node, or arrives after a
// restart, is not recognised.
//
// # Near-duplicate floods
//
// With NearDup.Enabled, each message's text gets a 64-bit SimHash (Fingerprint): the payload
// without its user data header, decoded (GSM 7-bit unpacked with its extension table, IA5,
// Latin-1, UCS2 with surrogate pairs; 8-bit data and other alphabets are not checked), then
// normalised so that the variants of a template read alike (letters lower-cased; numbers, with
// inner separators and glued units, one marker: "1234", "10:30", "12.50", "3pm"; a capitalised
// word inside a sentence, a name or weekday, one marker: "Dear Anna," "on Monday"; white space
// collapsed), cut into overlapping 3-grams of runes, which handle Chinese and other scripts
// without spaces. Template variants differing in codes, amounts, dates and Latin-script names
// come out at distance 0 (tests: English and Chinese, GSM 7-bit and UCS2); unrelated texts at
// 21 to 35. What the normaliser does not mask moves a short text fast: one extra word in 80
// characters is about 6 bits, so MaxDistance 3 catches templates, not free rewording (raise it,
// up to 7, at the cost of more candidates per lookup). Chinese names are not masked (no capital
// letters mark them): "尊敬的张伟先生…" and "尊敬的李娜女士…" are 12 to 19 bits apart in short texts.
//
// Near counts, per account (or per account and destination with NearDup.PerDestination), the
// messages let through per cluster of fingerprints within NearDup.MaxDistance (3) of the
// cluster's first, over a sliding NearDup.Window (the previous window's count weighted by its
// overlap). A message that would make more than NearDup.Max (1000) is refused with
// NearDup.Status and rule near_duplicate_flood, and its key is forgotten so it can be sent again
// later. The default status is ESME_RTHROTTLED (0x58), not ESME_RSUBMITFAIL: the limit is a rate
// (N per window), clients answer 0x58 by retrying later, when the window has room again,
// whereas 0x45 is permanent and would make a legitimate high-volume template sender (one-time
// passwords, notifications, all one cluster) lose messages instead of slowing down. For the
// same reason the limiter is off by default: enable it with a Max above such senders' volume,
// or per destination against message bombing.
//
// Clusters are found by the pigeonhole principle: the 64 bits are cut into MaxDistance+1 bands
// and two fingerprints within MaxDistance agree exactly on at least one band, so a hash index
// per band from (account, band value) to clusters finds every candidate. Memory is fixed when
// the limiter is made: MaxClusters clusters of 40 bytes plus two 8-byte references per cluster
// and band (about 14 MB for the default 128K clusters and 4 bands), in 8 shards by account;
// when a shard is full a clock hand evicts a cluster not matched since it last passed, so busy
// clusters (the floods) stay.
//
// # Router integration
//
// Stage implements router.Stage with today's router.Verdict (a status and a rule), which cannot
// say "answer ESME_ROK with this id" nor "keep this message": so Stage.Process refuses
// duplicates of accepted originals with RejectStatus and duplicates of in-flight originals with
// InFlightStatus (ESME_RTHROTTLED), and nothing reports outcomes, so every original stays in
// flight until InFlightTimeout. The full behaviour needs these router changes; the router keeps
// importing nothing of this package (Key is a [2]uint64, Waiter's method takes plain types):
//
//  1. router.Verdict gains Reply bool and MessageID uint64 (answer ESME_ROK with
//     FormatID(MessageID), do not forward) and Hold bool (the stage keeps m and will hand it
//     back: the router must not answer, forward or recycle m, nor run the next stages now).
//  2. router.Message gains DupKey [2]uint64 and HasDupKey bool (reset in Router.Submit), and the
//     index of the stage that held it, to resume there.
//  3. In Router.Submit's stage loop: Hold -> remember the stage index and return; Reply ->
//     finish(m, ESME_ROK, FormatID(MessageID), stage name); a non-zero Status as today.
//  4. An optional stage interface, Finish(m *Message, status smpp.Status, messageID uint64),
//     called from Router.finish for every message (before m is recycled) with the status the
//     client gets and, for ESME_ROK, the id issued; finish takes the id as uint64 and formats it
//     there. Every path must go through it: upstream answers, in-doubt (a failure here: a
//     resubmission may go, risking a second delivery rather than a loss), max_wait, no_route,
//     later stages' refusals, shutdown. dedup's Finish is
//     "if m.HasDupKey { s.Done(m.DupKey, status, messageID) }".
//  5. *router.Message implements Waiter: OriginalDone(id, true) answers the held message
//     ESME_ROK with FormatID(id) through finish (with no batch: it runs on the goroutine that
//     reported the original's outcome, usually an upstream bind's read loop);
//     OriginalDone(_, false) resumes it at the held stage (run Process again: it may now be the
//     original, or wait again behind another), then the remaining stages, then send it with
//     trySend and the retry queue as SubmitDone's throttled path does: it must not block, and
//     its deadline should restart at now+MaxWait.
//  6. Stage.Process then becomes: d := s.Decide(m, m); Continue -> m.DupKey, m.HasDupKey =
//     d.Key, true, zero Verdict; Reply -> Verdict{Reply: true, MessageID: d.MessageID, Rule};
//     Wait -> Verdict{Hold: true, Rule}; Refuse -> Verdict{Status: d.Status, Rule}.
//
// A dry run (m.Trace set, smppctl explain) explains the decision a live submit would get and
// changes nothing: Index.Peek and Near.Peek instead of BeginWait and Allow, nothing counted, no
// waiter; the router must not call Finish/Done for it.
//
// A held duplicate occupies a slot of its session's window until answered, so waiters are
// bounded by the clients' windows; they are released when the original's outcome is reported,
// which the router guarantees (step 4) within max_wait plus the upstream response timeout.
//
// Metrics: smppd_stage_decisions_total{stage="dedup",decision="unique|duplicate|near_duplicate_flood"},
// smppd_dedup_entries and _capacity, smppd_dedup_early_rotations_total, smppd_dedup_waiting,
// smppd_dedup_near_clusters and _capacity. One Stage per metrics set.
package dedup
