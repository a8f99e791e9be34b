// Package replica stores a database's history as LTX files and reads it back.
//
// ReplicaClient is the small interface every backend implements (replica/file,
// replica/s3); replicatest holds the conformance suite each backend runs.
//
// Restore rebuilds a database from a replica. Plan picks the files: the
// newest level-9 snapshot at or before the target, then across levels 8..0
// the unbroken chain after it (Litestream 0.5's rule, so both tools restore
// the same state). Restore downloads them in ranged chunks with a bounded
// number of workers, ahead of an applier that writes pages strictly in plan
// order into a temp file beside the output, verifying every file checksum,
// the pre/post-apply checksum chain, and the final database checksum
// (DatabaseChecksum) before an fsynced rename.
//
// Object layout (readable by Litestream 0.5's restore):
//
//	file:  <dir>/ltx/<level decimal>/<min %016x>-<max %016x>.ltx
//	s3:    <path>/<level %04x>/<min %016x>-<max %016x>.ltx
//
// Invariants: TXIDs never go back on one replica path; an object, once
// written, is never overwritten; level 9 holds snapshots 1-<max> only.
// Restore never leaves a partial database: the output appears complete and
// verified, or not at all (no output, no temp file), and every error names
// the object (Key: level/<min>-<max>.ltx) it came from. Restore memory is
// bounded by the worker count, not the database size.
//
// Callers: the root package's uploader writes, cmd/litefs and cmd/restore read.
package replica
