// Package staging keeps, on the data volume, every committed transaction
// the replica has not confirmed yet, in <data dir>/.litefs/<db>/:
//
//	log                               records appended as committed
//	sealed                            a log being frozen (at most one)
//	frozen/L<level>-<min>-<max>.ltx   objects with their final name and bytes
//	frozen/*.tmp                      an object being written (ignored, replaced)
//	pos                               the last position (JSON), see Pos
//	overflow                          a new snapshot must come next (JSON), see Overflow
//
// # Record format
//
// A record is one committed transaction in a compact raw form: appending it
// is the only work on the commit path, so it is not LTX (LZ4 and the LTX
// file hash would cost more than the commit itself). Freezing turns a run
// of records into one LTX file. In the log each record sits behind an
// 8-byte big-endian length:
//
//	offset size
//	0      8   length L of what follows (the record), big-endian
//	8      4   magic "LFS1"
//	12     8   TXID
//	20     4   page size
//	24     4   commit (database size in pages after it)
//	28     8   timestamp, ms since the epoch
//	36     8   pre-apply rolling checksum
//	44     8   post-apply rolling checksum
//	52     8   WAL offset of its first frame
//	60     8   WAL size of its frames
//	68     4   WAL salt-1
//	72     4   WAL salt-2
//	76     4   page count N
//	80     N × (4-byte pgno, page)   ascending pgno, never the lock page
//	…      4   CRC-32C of the record (from the magic on)
//
// # Invariants
//
//   - Append never fsyncs: it is on the commit path. Records are written a
//     batch at a time (see pendMax); losing unwritten ones to a crash loses
//     no commit, because the WAL still holds them.
//   - Sync makes every appended record durable; the caller syncs before the
//     WAL frames the records copy can disappear (a WAL restart, truncate or
//     unlink).
//   - A torn tail (a crash mid-append, a full disk mid-write) is detected by
//     its length or CRC and cut at Open (repair.go); a failed write is cut at
//     once, so the log is always a sequence of whole records.
//   - At most one sealed log exists. A freeze renames log to sealed, opens a
//     new log, writes the sealed records as one frozen object and removes
//     the sealed log; Open and the next Freeze finish an interrupted one
//     first, because it is older than the log.
//   - A frozen object's name and bytes are final (written to .tmp, fsynced,
//     renamed, directory fsynced) before its first upload, so every retry,
//     even after a restart, sends the same key and bytes.
//   - The pos file only moves forward within a process (WritePos), and it
//     is written before a sealed log goes: a batch of several records says
//     nothing of the WAL, and start-up resumes in the WAL from a record's
//     position.
//   - Bytes, what staging-max-bytes bounds, counts the log (written and
//     pending) and the frozen objects. At the cap the capture drops them all
//     (Discard) and appends nothing until a new snapshot: past the first
//     dropped record nothing staged could be applied without that snapshot
//     anyway. The overflow marker is durable before Discard and goes only
//     once the snapshot is staged or in the replica.
//
// Everything goes through a vfs.FS, so tests inject ENOSPC mid-record, a
// failed fsync or a failed rename with internal/vfs/errorfs.
//
// Callers: the capture (Append, WritePending, Sync, Discard, WriteFrozen for
// snapshots) and the uploader (Freeze, Frozen, Remove) in package litefs;
// fs and config use DirName to hide and refuse the directory.
package staging

// DirName is the hidden directory under the data dir that holds staging
// (one subdirectory per database) and the volume's identity.
const DirName = ".litefs"
