// Package replica stores a database's history as LTX files and reads it back.
//
// ReplicaClient is the small interface every backend implements (replica/file,
// replica/s3); replicatest holds the conformance suite each backend runs.
//
// Restore rebuilds a database from a replica. Plan picks the files: the
// newest level-9 snapshot at or before the target, then across levels 8..0
// the unbroken chain after it (Litestream 0.5's rule, so both tools restore
// the same state). Restore streams them in ranged chunks with a bounded
// number of workers, at most 12 MiB ahead of an applier that writes pages
// strictly in plan order into a temp file beside the output. One CRC-64 pass
// per page gives the file checksum, the page's checksum and, from the
// per-page sums kept while applying, the final database checksum, checked
// against the last post-apply checksum with the whole pre/post-apply chain,
// before an fsynced rename. The checksum arithmetic (the hasher and the
// per-page sums) is internal/checksum's, shared with the root package.
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
// the 12 MiB download budget, about 1 MiB per CPU for decoding and 8 bytes
// per page written, not the database size.
//
// Callers: the root package's uploader writes, cmd/litefs and cmd/restore read.
package replica
