package litefs

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/checksum"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/staging"
)

// snapshotNow takes the snapshot Flush decided on: staged whole when it fits
// under staging-max-bytes (fitsStaged), else streamed from the pinned
// database straight to the replica. Called with flushMu held.
func (u *uploader) snapshotNow(ctx context.Context, rebase bool) (ltx.TXID, error) {
	_, _, size := u.capture.snapshotStats()
	staged := u.stage.Bytes()
	if rebase {
		staged = 0 // a rebase drops what is staged first
	}
	if fitsStaged(u.capture.maxStaged, staged, size) {
		return u.takeSnapshot(ctx, rebase)
	}
	return u.streamSnapshot(ctx, rebase)
}

// streamSnapshot uploads a snapshot without staging it: the WAL is pinned
// while the pages are read from it and the database file and encoded into
// the PUT's body. The pages must add up to the tracked checksum before the
// LTX trailer is written, so a mismatching snapshot is never completed in
// the replica. A failed upload leaves needRebase set when rebasing: the next
// attempt takes a new snapshot under a new TXID (the name of one that may
// have reached the replica is never reused with other bytes).
func (u *uploader) streamSnapshot(ctx context.Context, rebase bool) (ltx.TXID, error) {
	// The lease first: nothing is dropped or read for a replica we may not
	// write.
	if err := u.ensureLease(ctx); err != nil {
		return 0, err
	}
	unpin, err := u.pin(ctx)
	if err != nil {
		return 0, fmt.Errorf("snapshot %s: %w", u.name, err)
	}
	defer unpin()
	pt, err := u.capture.snapshotPoint(rebase)
	if err != nil {
		return 0, err
	}
	txid := pt.txid
	if !rebase && txid <= u.snapshotTXID() {
		return txid, nil
	}
	page, done, err := u.capture.diskPages(pt.index)
	if err != nil {
		return 0, fmt.Errorf("snapshot %s at TXID %d: %w", u.name, txid, err)
	}
	defer done()
	pr, pw := io.Pipe()
	encoded := make(chan error, 1)
	var sums *checksum.Sums
	go func() {
		var err error
		sums, err = encodeSnapshot(pw, txid, pt.pageSize, pt.commit, page, u.now(), &pt.pos.Checksum)
		pw.CloseWithError(err)
		encoded <- err
	}()
	_, err = u.client.WriteLTXFile(ctx, replica.SnapshotLevel, 1, txid, pr)
	pr.CloseWithError(errors.New("upload ended")) // unblocks the encoder if the PUT gave up early
	encErr := <-encoded
	if errors.Is(encErr, errSnapshotMismatch) {
		if !rebase && u.snapMismatch.Add(1) == 1 {
			return 0, fmt.Errorf("%w: snapshot %s at TXID %d did not match its checksum (a checkpoint that began before the pin?); will retry", errSnapshotRetry, u.name, txid)
		}
		u.capture.fail(fmt.Errorf("database %s in the data dir is not the state litefs replicated (%v at TXID %d): it was written behind litefs's back; restart litefs to take a new snapshot of it",
			u.name, encErr, pt.pos.TXID))
		_, err := u.capture.State()
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("stream snapshot %s at TXID %d: %w", u.name, txid, err)
	}
	if encErr != nil {
		return 0, fmt.Errorf("stream snapshot %s at TXID %d: %w", u.name, txid, encErr)
	}
	u.snapMismatch.Store(0)
	u.metrics.UploadOK.Add(1)
	u.repMu.Lock()
	if txid > u.replicaPos.TXID {
		u.replicaPos = staging.Pos{TXID: txid, Checksum: sums.Checksum()}
	}
	u.repMu.Unlock()
	u.confirmed.advance(txid)
	u.metrics.unsent.confirmed(txid)
	u.snapshotStaged(txid) // the policy counts from it
	u.retentionDue, u.retentionSince = true, u.now()
	u.logger.Info("streamed a snapshot to the replica", "txid", txid, "pages", pt.commit)
	if rebase {
		return txid, u.finishRebase(txid, pt.seq)
	}
	return txid, nil
}

// finishRebase ends a rebase whose snapshot txid (taken at the point that
// saw overflow seq) is staged durably or in the replica, unless staging
// overflowed again meanwhile: then the records after the snapshot were
// dropped too, and another new snapshot must follow.
func (u *uploader) finishRebase(txid ltx.TXID, seq uint64) error {
	if u.capture.overflowedSince(seq) {
		return nil
	}
	u.needRebase.Store(false)
	return u.closeGap(txid)
}

// closeGap ends an overflow once its new snapshot txid is staged durably or
// in the replica: the marker goes, and a gap (restore points lost) is
// logged with its TXID range and counted.
func (u *uploader) closeGap(txid ltx.TXID) error {
	o, ok, err := u.stage.ReadOverflow()
	if err != nil || !ok {
		return err
	}
	if err := u.stage.ClearOverflow(); err != nil {
		return err
	}
	if o.GapFrom > 0 && o.GapFrom < txid {
		u.metrics.HistoryGaps.Add(1)
		u.logger.Warn("history gap: staging overflowed, so these TXIDs are not restore points (no commit was lost: the snapshot holds them)",
			"from_txid", o.GapFrom, "to_txid", txid-1, "snapshot_txid", txid)
	}
	return nil
}
