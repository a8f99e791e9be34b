//go:build race

package checksum

// raceEnabled skips tests that hash a gigabyte: the race detector makes them
// take minutes and they share no state to race on.
const raceEnabled = true
