// Package file is the ReplicaClient for a local directory (file:// replica
// URLs): local development, tests, and volumes shared by other means.
//
// Layout, the one Litestream 0.5's file replica reads:
//
//	<dir>/ltx/<level in decimal>/<min %016x>-<max %016x>.ltx
//
// Invariants:
//   - An object appears under its final name complete and fsynced, or not at
//     all: bytes go to a temp file whose name never matches the LTX pattern,
//     then a hard link creates the final name only if it is absent, so an
//     existing object is never replaced, even by a racing writer.
//   - A file's mtime is its LTX header timestamp (what Litestream selects by
//     for -timestamp); listings report the header timestamp as CreatedAt.
//   - Listings read only the 100-byte header and 16-byte trailer of each
//     file, never whole files, and skip names that are not <min>-<max>.ltx.
//
// A missing directory lists as an empty replica, so a new replica needs no
// setup (the daemon's first write creates it); readers that must tell a
// mistyped path from an empty replica call CheckDir first.
//
// Callers: the uploader and restore through replica.ReplicaClient; replica/backends
// constructs it from a file:// URL with NewClient; restore and `litefs ltx` call
// CheckDir.
package file
