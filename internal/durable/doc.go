// Package durable holds the few file-system steps that make staged and
// replicated files durable without hurting the application beside them:
// SyncDir (a rename or create is durable only once its directory is synced)
// and PacedWriter (a large file written so that the app's own fsyncs stay
// fast).
//
// Invariants: neither ever reports success for data that is not on stable
// storage once the caller's own final fsync returned; PacedWriter's
// writeback calls are advice and never replace that fsync.
//
// Callers: staging (frozen segments and snapshots), the root package's
// volume id,
// replica/file (objects), replica's restore (the restored database's
// directory).
package durable
