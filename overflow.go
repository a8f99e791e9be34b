package litefs

import (
	"fmt"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/checksum"
	"github.com/litefs-dev/litefs/staging"
	"github.com/litefs-dev/litefs/wal"
)

// overCap reports whether staging txn would take staging past
// staging-max-bytes, and if so drops staging (overflow). Called with mu held.
func (c *Capture) overCap(txn *wal.Txn, txid ltx.TXID) bool {
	if c.maxStaged <= 0 || c.stage.Bytes()+staging.RecordSize(txn.PageSize, len(txn.Pages)) <= c.maxStaged {
		return false
	}
	c.overflow(txid)
	return c.overflowed
}

// fitsStaged reports whether a snapshot of size bytes may be staged whole:
// with what is staged it takes at most half of staging-max-bytes, so the
// commits after it do not overflow the cap at once (and drop it again).
// Larger snapshots are streamed from the database at upload time.
func fitsStaged(maxStaged, staged, size int64) bool {
	return maxStaged <= 0 || staged+size <= maxStaged/2
}

// overflow drops everything staged because the cap is reached (a long S3
// outage): the oldest first is not enough, because past the first dropped
// record nothing staged can be applied without a new snapshot, which the
// uploader takes (streamed, if it would not fit) once the replica answers.
// Restore points between the replica's newest TXID and that snapshot are
// lost; no commit is: the database and its WAL hold them all. The marker is
// made durable first, so a crash in between still ends in the snapshot.
// Called with mu held.
func (c *Capture) overflow(txid ltx.TXID) {
	from := c.up.replicaTXID() + 1
	if err := c.stage.MarkOverflow(staging.Overflow{GapFrom: from}); err != nil {
		// Without the marker a crash after Discard would resume on a history
		// the replica lacks: keep staging (over the cap) rather than risk it.
		c.logger.Error("staging is over staging-max-bytes and the overflow marker cannot be written: staging keeps growing", "err", err)
		return
	}
	if err := c.stage.Discard(); err != nil {
		c.logger.Error("staging is over staging-max-bytes and could not be dropped", "err", err)
	}
	c.overflowed = true
	c.overflowSeq++
	c.logger.Warn("staging reached staging-max-bytes: dropped the staged history; a new snapshot restarts it once the replica answers "+
		"(no commit is lost, restore points from this TXID on until that snapshot are)",
		"staging_max_bytes", c.maxStaged, "gap_from_txid", from, "txid", txid)
	c.up.rebase()
}

// deferSnapshot stands for a snapshot too large to stage under the cap: the
// capture goes on from state sums at txid as if it were staged, and the
// uploader streams a new snapshot of the database straight to the replica.
// Called with mu held (or before the capture runs).
func (c *Capture) deferSnapshot(txid ltx.TXID, sums *checksum.Sums, size int64) error {
	if err := c.stage.MarkOverflow(staging.Overflow{}); err != nil {
		return fmt.Errorf("snapshot of %s (%d bytes) does not fit staging-max-bytes %d: %w", c.name, size, c.maxStaged, err)
	}
	c.sums = sums
	c.overflowed = true
	c.overflowSeq++
	c.logger.Info("snapshot too large to stage under staging-max-bytes (over half of it): it will be streamed from the database to the replica",
		"txid", txid, "bytes", size, "staging_max_bytes", c.maxStaged)
	c.up.rebase()
	return nil
}

// overflowedSince reports whether staging overflowed after the snapshot
// point that saw seq: the snapshot then no longer closes the gap.
func (c *Capture) overflowedSince(seq uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.overflowSeq != seq
}
