// Package bench measures litefs against native SQLite and a plain FUSE
// loopback, side by side in one run, and prints ratios: `make bench`.
//
// Every figure is a ratio of two measurements taken in the same process,
// interleaved round by round, so a noisy shared machine slows both sides.
// Nothing here is a test: the benchmarks only report. Go runs them file by
// file in name order, which puts the gigabyte-sized snapshot and restore
// benchmarks (snapshot_restore_test.go) last: what they leave behind (dirty
// pages, discards, garbage) must not land in the latency measurements; each
// benchmark also starts with settle().
package bench
