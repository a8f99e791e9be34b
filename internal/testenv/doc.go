// Package testenv is the harness the system tests (e2e/), the benchmarks
// (bench/) and the FUSE tests (fs/) share, so that each helper exists once:
// a log sink safe for a daemon's goroutines (LogBuffer), the litefs.toml of
// one replicated database (Config), the binaries built once per test
// process (Binaries), a free loopback address (FreeAddr) and the FUSE
// precondition (RequireFUSE).
//
// It imports only the standard library, so fs's internal tests can use it
// without an import cycle.
//
// Callers: tests only.
package testenv
