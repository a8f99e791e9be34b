// Package litefs is the replicated database. A DB joins two halves that
// meet only in staging:
//
//	fs ──hooks──▶ Capture ──Append──▶ staging ──Freeze──▶ uploader ──▶ replica
//
// The rooms of this package:
//
//   - Capture (capture.go, hooks.go, queue.go, atrest.go,
//     capture_snapshot.go, overflow.go) implements fs.DB: the FUSE loopback hands it
//     every operation on the database's WAL before the FUSE call returns.
//     A WAL write is answered once it is in the file; the capture's applier
//     feeds it to a wal.Tracker, which emits each committed transaction
//     exactly once, in order, and the capture appends it to staging with
//     its TXID and its pre- and post-apply rolling checksums. At
//     staging-max-bytes it drops what is staged and stages nothing until
//     the uploader's new snapshot (overflow.go).
//   - The uploader (uploader.go, lease.go, snapshot.go, stream.go,
//     retention.go, reachability.go) freezes what is staged into one LTX
//     object per batch and writes it to the replica inside the replica's
//     lease (replica.Leaser), one pass at a time; it decides when to
//     snapshot (staged, or streamed from the database when it would not
//     fit under the cap) and what retention deletes, and learns the
//     replica late when it did not answer at start-up.
//   - open.go is the start-up sequence, run before the mount; a replica
//     that does not answer does not stop it.
//
// Invariant: every committed transaction is in the WAL on the volume, in
// staging on the volume, or in the replica. Appending to staging never
// fsyncs; staging and the pos file are fsynced before the WAL frames they
// copy can disappear (a WAL restart, truncate or unlink: the barriers in
// hooks.go).
//
// TXIDs never go back on one replica path: a database that does not continue
// the replica's history gets a new snapshot 1-<N+1>.
//
// Lock order: Capture.mu before any uploader lock; the uploader never
// calls the capture while holding one of its own.
//
// Callers: internal/daemon (litefs mount) opens one DB per configured
// database and passes DB.Capture to fs.Mount.
package litefs
