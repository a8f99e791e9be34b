//go:build !linux

package replica

// oDirect is 0 where direct writes are not used: everything is buffered.
const oDirect = 0
