// Package wal knows SQLite's write-ahead log format and turns the writes
// that reach a -wal file into committed transactions, without polling and
// without reading the file back.
//
// It knows nothing of FUSE, LTX or S3. The root package's Capture owns one
// Tracker per database and feeds it every write and truncate of the -wal
// file that fs/ hands it (after the bytes reached the real file) and the
// WAL's unlink; at start-up it calls Scan, to stage the commits that were in
// the WAL but not yet staged, before the app can write.
//
// # On-disk format
//
// All header fields are 32-bit big-endian integers.
//
//	WAL header (HeaderSize = 32 bytes, at offset 0)
//	  0  magic        0x377f0682: checksum words little-endian
//	                  0x377f0683: checksum words big-endian
//	  4  version      3007000
//	  8  page size    the full value, 512..65536 (65536 is 0x00010000)
//	 12  checkpoint sequence
//	 16  salt-1       incremented at every WAL restart
//	 20  salt-2       random at every WAL restart
//	 24  checksum-1   checksum of bytes 0..23
//	 28  checksum-2
//
//	frame i (i = 0, 1, ...) at 32 + i*(24+page size):
//	frame header (FrameHeaderSize = 24 bytes), then the page
//	  0  page number  > 0
//	  4  commit       db size in pages after the commit for a commit frame, else 0
//	  8  salt-1       equal to the header's, else the frame is stale
//	 12  salt-2
//	 16  checksum-1   cumulative checksum through this frame
//	 20  checksum-2
//
// The checksum runs over 32-bit words x[0..n), read in the byte order the
// magic names (SQLite writes its native order), two at a time:
//
//	s1 += x[i] + s2
//	s2 += x[i+1] + s1
//
// starting from (0, 0) over header bytes 0..23, whose result is stored in the
// header; every frame continues from the previous frame's checksum (the
// header's for frame 0) over its first 8 header bytes and then its page. The
// salts are not summed: they are compared, which is what makes frames left
// over from an older generation (same offsets, older salts) invalid after a
// restart. A frame is valid when its salts match, its page number is not 0
// and its checksum continues the chain; a transaction is committed when
// every frame from the end of the previous commit through a commit frame is
// valid. Recovery keeps the frames up to the last such commit frame.
//
// # Tracker invariants
//
//   - Exactly once, in order: each committed transaction reaches onCommit once
//     (unless onCommit fails, then it is offered again), in WAL order. A
//     commit frame repeated to pad a commit to a sector boundary (psow=0,
//     synchronous=FULL) is the same transaction: folded into its Size when
//     already written at emission, absorbed silently when it comes after
//     (SQLite writes padding after the commit frame, so the tracker usually
//     absorbs it; Position moves past it). Scan always folds it, so to find
//     where a staged position resumes in a Scan, compare Txn.Offset, not
//     Txn.End. A one-page transaction identical to the previous commit frame
//     cannot be told from padding; absorbing it changes no page.
//   - Only valid chains: a transaction is emitted only when all of its frames
//     are fully written, carry the header's salts, and extend the checksum
//     chain from the end of the previous commit. The bytes checked are the
//     bytes emitted, so what onCommit sees is exactly what SQLite's recovery
//     would keep. Torn tails, rolled-back spills and stale frames never
//     validate. A transaction that rewrote a spilled frame in place
//     validates only after SQLite's final pass of frame header rewrites.
//   - Writes are rebuilt into frames by offset, never by counting writes.
//     The tracker keeps the running checksum after each validated frame, so
//     a write re-validates from the first frame it touched: linear work.
//   - Barriers: a new header (WAL restart, or the first header of a new WAL),
//     Truncate below the header and Unlink drop everything pending and start
//     over at offset 32 of the new generation. The caller makes its staging
//     durable before letting such a write through (TouchesHeader): all
//     commits before it were emitted already.
//   - Memory: the tracker buffers the WAL from the end of the last emitted
//     commit on, i.e. the current uncommitted transaction, bounded by
//     SetMaxPending (ErrPendingTooLarge).
package wal
