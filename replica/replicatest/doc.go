// Package replicatest is the conformance suite every replica.ReplicaClient
// runs (Run), and helpers that build valid LTX files in memory for any test:
// EncodeLTX for hand-made files, NewFile for small opaque ones, and Chain,
// a database history that cuts consistent files (real pages, real pre/post-
// apply checksums) for any TXID range.
//
// The suite depends only on the interface, so the file backend and the S3
// backends (gofakes3, versitygw, real buckets) run exactly the same checks:
// listing by level and seek in ascending order past one 1,000-key page,
// whole and ranged reads, create-if-absent with idempotent retries and
// ErrConflict, deletes, ErrNotFound, context cancellation, level isolation,
// and CreatedAt equal to the LTX header timestamp.
//
// Callers: replica/file and replica/s3 tests; replica's restore tests and the
// uploader's tests use the LTX helpers.
package replicatest
