// Package replica stores a database's history as LTX files and reads it back.
//
// ReplicaClient is the small interface every backend implements (replica/file,
// replica/s3); replicatest holds the conformance suite each backend runs.
// Restore rebuilds a database from a replica: the newest level-9 snapshot at
// or before the target, then the unbroken chain of lower-level files after it,
// every file checksum and the pre/post-apply checksum chain verified.
//
// Object layout (readable by Litestream 0.5's restore):
//
//	file:  <dir>/ltx/<level decimal>/<min %016x>-<max %016x>.ltx
//	s3:    <path>/<level %04x>/<min %016x>-<max %016x>.ltx
//
// Invariants: TXIDs never go back on one replica path; an object, once
// written, is never overwritten; level 9 holds snapshots 1-<max> only.
//
// Callers: the root package's uploader writes, cmd/litefs and cmd/restore read.
package replica
