// Package content filters submit_sm by their text: keyword and regular expression rules, read
// from files an operator edits, matched against a normalised form of the message so that case,
// full-width letters, spacing tricks and traditional Chinese do not slip past them.
//
// Stage is the router.Stage ("content"); Filter holds the compiled rules and swaps them
// atomically on Load; Reassembler holds the segments of concatenated messages so that the router
// can judge them whole with Stage.JudgeParts.
//
// # Rule files
//
// UTF-8 text, one rule a line, three fields separated by spaces or tabs; the pattern is the rest
// of the line:
//
//	CATEGORY  ACTION  PATTERN
//
//	# comment lines start with #; blank lines are skipped
//	spam      reject              free money
//	loan      reject:0x58         贷款
//	@status ESME_RX_R_APPN
//	gambling  reject              網上賭場
//	phishing  reject:69           re:verify your (account|card)
//	trial     monitor             crypto giveaway
//
// The fields and the one directive:
//
//   - CATEGORY names the rule in metrics and logs: 1 to 40 of a-z, 0-9, _, - and . ("none",
//     "binary" and "unsupported" are reserved). Keep categories few: each is a label value.
//   - ACTION is reject (answer with the default status), reject:STATUS (a name such as
//     ESME_RSUBMITFAIL, or a number: 0x45, 69), or monitor (count and log, let it through: add new
//     rules as monitor, watch smppd_stage_decisions_total{decision="monitor"}, then make them
//     reject).
//   - PATTERN is a keyword, matched anywhere in the text, after both are normalised (below); or,
//     after "re:", a Go regular expression (RE2 syntax).
//   - "@status STATUS" sets the status of the plain reject rules after it in the same file.
//     Without it they answer Config.DefaultStatus: ESME_RSUBMITFAIL (0x45) unless configured.
//
// A rule's id is FILE:LINE (the file's base name); logs and explain show it, metrics show only
// the category, and nothing ever shows the message text or an address. Several files are
// compiled in order into one rule set. A message matching several rules is rejected if any
// reject rule matches, else monitored under each matching category (up to four), else passed.
//
// Errors name the file, the line and what to change: "spam.rules:12: action "blok": want reject,
// reject:STATUS or monitor". Besides syntax, Compile refuses keywords that normalise to nothing
// (only punctuation or symbols: use a re: rule), keywords of one ASCII character, expressions that
// match the empty text, and expressions with a literal character normalisation never leaves in the
// text (upper case, full-width, traditional Chinese, tabs): write them in normalised form.
//
// # Reload
//
// Filter.Load (Stage.Reload for the configured files) reads and compiles every file, and only if
// all are valid swaps the new rules in with one atomic store; a message being judged finishes
// with the rules it started with. On any error the rules in use stay and the error names the file
// (and line). 6,000 keywords compile in about 30 ms.
//
// # Decoding
//
// The text is short_message, or message_payload when short_message is empty; with esm_class
// 0x40 the user data header is skipped. data_coding (SMPP 3.4 §5.2.19, and the GSM 03.38 groups
// above 0x0F) chooses how octets become characters:
//
//	0x00, GSM 7-bit groups      GSM 03.38 default alphabet and extension table (0x1B escape: € [ ] { } ~ | ^ \),
//	                            one octet per septet, as SMPP clients send it
//	0x01                        IA5 (ASCII)
//	0x03                        ISO 8859-1
//	0x08, UCS2 groups           UTF-16BE, surrogate pairs (emoji) joined
//	0x02, 0x04, 8-bit groups    binary: not text, skipped (decision "skip", category "binary")
//	others                      JIS, Cyrillic, Hebrew, KS C 5601, compressed, reserved: skipped ("unsupported")
//
// No data_coding says that septets are packed, so packing is never guessed: Config.PackedGSM7
// says that the clients pack (the UDH is then followed by fill bits up to a septet boundary).
// Octets that are no character of the coding become U+FFFD, which matching ignores.
//
// # Normalisation
//
// Text and keywords go through the same steps, each character by one table look-up (the table is
// built once, 512 KiB for the BMP and plane 1):
//
//  1. compatibility form (Unicode NFKC) when it is one character: full-width Latin U+FF01..U+FF5E
//     to ASCII, U+3000 to a space, mathematical and circled letters (𝐅, ⓜ), compatibility and
//     Kangxi ideographs to unified ones;
//  2. traditional to simplified Chinese, by a table of 1,413 pairs (variants_table.go): OpenCC's
//     TSCharacters mappings (Apache-2.0) where the traditional character is in Big5 level 1 and
//     the simplified one in GB 2312 level 1 (gen_variants.go regenerates it). Config.Variants
//     names a file in OpenCC's TSCharacters.txt format ("FROM<TAB>TO") that extends it, for
//     example with OpenCC's full table; it is read on every Load with the rules;
//  3. simple lower case (Latin, Greek with final sigma, Cyrillic, ...);
//  4. with Config.StripInvisible (default on), characters that show nothing are dropped: format
//     characters (Unicode Cf: zero-width space, non-joiner and joiner U+200B..U+200D, word joiner
//     U+2060, soft hyphen U+00AD, byte order mark U+FEFF, bidirectional marks, tags), controls
//     other than whitespace, variation selectors, the combining grapheme joiner, Hangul fillers;
//  5. runs of whitespace (spaces, tabs, newlines, no-break and ideographic spaces) become one
//     space, none at either end;
//  6. with Config.StripSeparators (default on), keywords are matched on a compact form without
//     whitespace, punctuation (Unicode P*) and symbols (S*: $ + | ~ € emoji ...), so "f r e e",
//     "f.r.e.e", "免🎁费" and "贷 * 款" all read as the keyword. The price: a keyword may also
//     match across a word boundary ("free money" in "...carefree moneybox...").
//
// Regular expressions see the text after step 5 (whitespace collapsed, punctuation and symbols
// kept), so that they can use word boundaries and punctuation.
//
// # Matching and cost
//
// All keywords compile into one Aho-Corasick automaton over characters, run once over the compact
// text: its cost depends on the text, not on the number of keywords. Regular expressions run
// after it, in file order, only if no keyword rejected the message, and each only if the text
// contains a literal that every match of it must contain (taken from the expression, such as
// "verify your " or one of "code", "otp"). An expression with no such literal runs on every
// message and costs its own run, about 3 µs on 160 characters for one with a bounded repeat
// (".{0,30}"): keep such rules few. Measured on the 2-core development machine (go test -bench .
// ./router/content, ranges over runs): decode 160 GSM characters 0.12-0.15 µs, 70 UCS2
// characters 0.07 µs; normalise and search a 70-character Chinese message against 6,000 keywords
// 0.25-0.3 µs; the whole stage on a 160-character GSM message with 6,200 keywords 0.5-0.65 µs,
// 0 allocations (a pooled scratch per call).
//
// # Decisions and metrics
//
// smppd_stage_decisions_total{stage="content",decision,category} counts pass (category "none"),
// reject (the rule's category), monitor (each matching category), and skip ("binary",
// "unsupported"). smppd_content_rules{kind="keyword|regexp"} is the rule count in use. A dry run
// (m.Trace non-nil, smppctl explain) records the decision with its rule id and counts nothing.
//
// # Concatenated messages
//
// A phrase may be split between segments, so a concatenated message (UDH IE 0x00 or 0x08, or the
// SAR TLVs: smpp.Submit.Concat) is judged on its whole text (Config.Concat, see ConcatConfig):
//
//   - each segment is held (router Verdict.Hold) in a Reassembler, bounded in messages, segments
//     and bytes, until its message is complete; then the text of all segments, in order, is
//     judged once (Filter.CheckParts: user data of consecutive segments with the same data_coding
//     is joined before decoding) and every segment is forwarded (m.Resume) or refused with the
//     rule's status (m.Refuse);
//   - a hold ends after ConcatConfig.Hold (default 1 s) even if segments are missing: a client
//     with a window of 1 sends the next segment only after the previous one's answer. The
//     segments present are judged together and forwarded or refused; their text is kept
//     (KeepFor, same bounds), and every later segment is judged at once with the text before it:
//     refused if that hits a reject rule, and then so is every later segment of the message;
//   - a segment number sent twice: the newer one is held, the older answered ESME_RSYSERR; the
//     bounds full: ESME_RTHROTTLED; a segment number outside 1..total: judged as a message alone;
//   - Stage.Close (at shutdown, before the SMPP server drains) ends every hold the same way, so no
//     segment waits unanswered; a segment is never forwarded unjudged.
//
// Holding costs the client latency only when a message's segments do not arrive together; a
// message whose segments all arrive within the hold waits for its last one only. Hold 0 holds
// nothing and judges every segment with those before it.
package content
