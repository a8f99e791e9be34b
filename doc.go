// Package litefs is the replicated database: DB joins a database's capture
// (the WAL hooks the FUSE loopback calls) to its uploader (the lease, the
// snapshot policy, retention, uploads to the replica). internal/daemon opens
// one per configured database.
//
// Data flows one way: fs → wal → litefs.DB → staging → replica.
//
//   - fs (the FUSE loopback) hands every operation on a configured
//     database's WAL to its DB, before the FUSE call returns.
//   - DB feeds the writes to a wal.Tracker, which emits each committed
//     transaction exactly once, in order. DB turns each into an LTX segment
//     (TXID, pre- and post-apply rolling checksums, WAL position) and appends
//     it to staging on the data volume.
//   - The uploader (DB.Run) freezes staged segments into one object per
//     batch and writes it to the replica (replica.ReplicaClient).
//
// Invariant: every committed transaction is in the WAL on the volume, in
// staging on the volume, or in the replica. Appending to staging never
// fsyncs; staging and the pos file are fsynced before the WAL frames they
// copy can disappear (a WAL restart, truncate or unlink: the barriers).
//
// TXIDs never go back on one replica path: a database that does not continue
// the replica's history gets a new snapshot 1-<N+1>.
//
// Callers: internal/daemon (litefs mount), fs (through the fs.DB interface).
package litefs
