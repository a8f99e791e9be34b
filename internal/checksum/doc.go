// Package checksum is the one home of LTX's rolling database checksum: the
// CRC-64/ISO page checksums (ltx.ChecksumPage) computed in one fast pass per
// page, the per-page Sums that keep the database checksum current as pages
// change, and the readers that take a database file's page size (its
// SQLite header) or checksum (the whole file).
//
// Invariants: every value equals what github.com/superfly/ltx computes for
// the same bytes (ltx.ChecksumPage, an LTX file's checksums, a database's
// post-apply checksum), whatever the page size; the lock page (the one
// holding byte 1 GiB) is never part of a database checksum; pages a
// database grows past without writing them count as zero pages; Sums costs
// memory only for pages written, never for a size a header claims.
//
// Callers: replica's restore (Hasher and Update while decoding LTX files,
// Sums for the restored database, DatabaseChecksum); the root package's
// capture (Sums on the commit path, ReadDBHeader and SumFile at start-up and
// for snapshots).
package checksum
