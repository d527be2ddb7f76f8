// Package number cleans destination addresses into E.164 numbers held as integers, attributes
// each to its country and operator, and routes by them: the router Stage "number".
//
// # Data flow
//
// Per message, on the session's read loop, with nothing allocated and no lock taken
// (BenchmarkStage):
//
//	submit_sm DstAddr, DstTON
//	  -> Normalizer.Normalize   drop separators; '+', 00 or the default country's own
//	                            international prefix; trunk prefix and default country code
//	                            for national numbers; validate country code and lengths
//	                            -> Number{E164: 4915112345678, CC: 49, Region: "DE"}
//	  -> Table (Reloader.Table) ported numbers (exact), else longest prefix -> "T-Mobile"
//	  -> Routes                 first rule matching operator, country, system_id -> pool;
//	                            else Fallback; else the account's pool; else no_route
//	  -> m.Dest, m.Country, m.Operator, m.Pool; smppd_stage_decisions_total
//
// An invalid destination is answered ESME_RINVDSTADR (rule invalid_destination), a message
// with no pool Config.NoRouteStatus (rule no_route). In a dry run (m.Trace set) the stage
// records its decision with m.Explain and counts nothing.
//
// # The numbering plan (plan_gen.go)
//
// Per region: calling code, trunk prefix, international prefix and the possible lengths of
// national significant numbers; for calling codes several regions share (+1 NANP, +7, +44,
// +61, +262, +290, +358, +39, +47, +590, +599, +212) the prefixes that belong to a region other
// than the code's main one. The generator derives the latter exactly as libphonenumber
// attributes numbers (a region's leading digits, else its number patterns, regions in metadata
// order) by running those patterns as automata over the digits, as deep as the regions
// disagree. Normalize checks lengths, not number ranges: ranges change faster than the data
// would be regenerated, and the upstream SMSC rejects unassigned numbers anyway.
//
// The NPI is not looked at: ESMEs set it inconsistently, and the TON and the digits decide.
//
// # The operator table (ranges_gen.csv + files)
//
// ranges_gen.csv (embedded, ~0.5 MB, 28 952 prefixes covering 206 of the 215 calling codes) is libphonenumber's
// English carrier prefix data, the one phonenumbers.GetCarrierForNumber answers from; the
// phonenumbers API cannot enumerate it, so the generator decodes the module's own
// data/prefix_to_carriers/en.txt.gz. Operator range files ("prefix,operator") extend it,
// port files ("msisdn,operator") override single numbers. Lines starting with # are comments;
// the operator is the rest of the line after the first comma. Precedence: a ported number's
// own line; else the longest prefix; for the same prefix the operator's file over the
// generated data, a later file over an earlier one. Reloader.Reload (Stage.Reload) rebuilds
// the table from the same files and swaps it atomically; a bad file keeps the current table
// and the error names file and line.
//
// The prefix table is flattened into disjoint segments of the number space (every number
// padded to 15 digits) holding their longest prefix, found by binary search within a bucket
// picked by the first four digits.
//
// Carrier data is a guess once numbers are ported (most countries allow it): port files are
// how an operator supplies the truth.
//
// # Provenance and regeneration
//
// Both generated files come from github.com/nyaruka/phonenumbers (a Go port of Google's
// libphonenumber, Apache License 2.0) at the version go.mod requires; their headers name it.
// The daemon does not link phonenumbers (its init costs ~5 ms and 2.5 MB, its binary data a
// few MB); only the generator and the tests, which compare this package's answers with
// libphonenumber's, import it. To update: go get github.com/nyaruka/phonenumbers@vX, then
//
//	go generate ./router/number
//
// and run the tests.
package number

//go:generate go run ./gen -o .
