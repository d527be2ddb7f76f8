// Package bench measures what smppd costs: a load generator (Load: bound smpp.Client ESMEs keeping
// their windows full), a plain TCP byte forwarder (Forwarder: the floor any proxy pays), and the
// end-to-end benchmarks in bench_test.go, which drive the same load straight to the simulator,
// through the forwarder and through an in-process smppd in one run and report the ratios, smppd's
// latency and allocations, and its memory per idle bind and per in-flight message.
//
// Run them with `make bench`; see bench_test.go for what each figure means.
package bench
