//go:build race

package replica_test

// raceEnabled skips tests that hash a gigabyte: the race detector makes them
// take minutes and they share no state to race on.
const raceEnabled = true
