// Package normd is the Go client of normd, the sidecar that takes the
// normalize → validate → compress of JSON payloads off the app's heap.
//
// A Client decides per call whether the work goes to normd or stays in-app
// (flags, sticky rollout, shadow, circuit breaker), sends it over a keep-alive
// Unix socket, and turns every "normd can't right now" into a call of the
// app's own in-app function. It must never make a call slower than its
// deadline plus a small slack, and never retry or fall back on a contract
// error (the caller's data is wrong, the in-app path would hide it).
//
// Files, one responsibility each:
//
//	client.go    Options, New, Norm, Close: routing and the call's outcome
//	exchange.go  the HTTP transport (Unix socket, TCP failover) and one round trip
//	outcome.go   the fallback table: normd's answer → reason and breaker effect
//	errors.go    ProblemError and the other errors a caller can errors.As
//	flags.go     GET /flags: parsing, the last good flags, background refresh
//	rollout.go   FNV-1a-32 buckets
//	breaker.go   the circuit breaker state machine
//	shadow.go    shadow calls and their digest comparison
//	stats.go     the counters and their snapshot
package normd
