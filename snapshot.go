package litefs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/litefs-dev/litefs/replica"
	"github.com/superfly/ltx"
)

// snapshotInfo is the newest snapshot the replica holds.
type snapshotInfo struct {
	TXID ltx.TXID
	Time time.Time
}

// errSnapshotRetry: a snapshot did not match the tracked checksum once;
// the next pass takes it again (a second miss stops replication). Not an
// outage: the uploader logs it as what it is.
var errSnapshotRetry = errors.New("snapshot mismatch")

// takeSnapshot stages a snapshot of the current state while the app goes
// on. With rebase, staging restarts from it under a new TXID (the replica
// moved on without us, or staging overflowed): what was staged is dropped —
// lost history, never lost data, since the snapshot holds the state.
//
// Consistency while mounted: a read transaction through the mount pins the
// WAL (SQLite cannot restart it, nor checkpoint past the reader), so the
// frames of every page committed in this WAL generation stay where the
// capture's walIndex says; every other page is stable in the database file.
func (u *uploader) takeSnapshot(ctx context.Context, rebase bool) (ltx.TXID, error) {
	unpin, err := u.pin(ctx)
	if err != nil {
		return 0, fmt.Errorf("snapshot %s: %w", u.name, err)
	}
	defer unpin()
	if rebase {
		u.needRebase.Store(true) // until the snapshot is staged
	}
	pt, err := u.capture.snapshotPoint(rebase)
	if err != nil {
		return 0, err
	}
	txid := pt.txid
	if !rebase && txid <= u.snapshotTXID() {
		return txid, nil // the newest snapshot is this state already
	}
	sums, err := u.capture.snapshotFromDisk(txid, pt.pageSize, pt.commit, pt.index)
	if err != nil {
		return 0, fmt.Errorf("snapshot %s at TXID %d: %w", u.name, txid, err)
	}
	if sums.Checksum() != pt.pos.Checksum {
		_ = u.stage.RemoveFrozen(replica.SnapshotLevel, 1, txid)
		if !rebase && u.snapMismatch.Add(1) == 1 {
			// Once may be a checkpoint that began before the pin: retry.
			return 0, fmt.Errorf("%w: snapshot %s at TXID %d did not match its checksum (a checkpoint that began before the pin?); will retry", errSnapshotRetry, u.name, txid)
		}
		u.capture.fail(fmt.Errorf("database %s in the data dir is not the state litefs replicated (checksum %s, expected %s at TXID %d): it was written behind litefs's back; restart litefs to take a new snapshot of it",
			u.name, sums.Checksum(), pt.pos.Checksum, pt.pos.TXID))
		_, err := u.capture.State()
		return 0, err
	}
	u.snapMismatch.Store(0)
	u.snapshotStaged(txid)
	if rebase {
		u.logger.Info("new snapshot: staging restarts from it", "txid", txid)
		if err := u.finishRebase(txid, pt.seq); err != nil {
			return 0, err
		}
	}
	return txid, nil
}

// Snapshot takes a snapshot of the current state now (as snapshot-interval
// would) and returns its TXID: staged, for the uploader's next batch, or
// streamed to the replica at once when it would not fit under the cap.
func (u *uploader) Snapshot(ctx context.Context) (ltx.TXID, error) {
	u.flushMu.Lock()
	defer u.flushMu.Unlock()
	u.capture.drain()
	// A pending rebase would drop a snapshot staged now: take it instead.
	// A snapshot too large to stage goes straight to the replica.
	return u.snapshotNow(ctx, u.needRebase.Load())
}

// snapshotDue says whether the uploader should snapshot now: the database
// changed since the newest snapshot, and either snapshot-interval passed or
// more bytes were uploaded since than the database holds (which bounds how
// much a restore downloads).
func (u *uploader) snapshotDue() bool {
	state, txid, size := u.capture.snapshotStats()
	if state != StateReplicating {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if txid <= u.snap.TXID {
		return false
	}
	if u.snapInterval > 0 && !u.now().Before(u.snap.Time.Add(u.snapInterval)) {
		return true
	}
	return u.uploadedSince > size
}

// nextSnapshotAt is when snapshot-interval next expires.
func (u *uploader) nextSnapshotAt() (time.Time, bool) {
	if u.snapInterval <= 0 {
		return time.Time{}, false
	}
	if state, _, _ := u.capture.snapshotStats(); state != StateReplicating {
		return time.Time{}, false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.snap.Time.Add(u.snapInterval), true
}

// snapshotStaged implements uploadSide: the policy counts from the newest
// snapshot staged.
func (u *uploader) snapshotStaged(txid ltx.TXID) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.snap = snapshotInfo{TXID: txid, Time: u.now()}
	u.uploadedSince = 0
}

func (u *uploader) snapshotTXID() ltx.TXID {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.snap.TXID
}

// pinBusyWait is how long a snapshot tries the pin while a WAL fsync waits
// for the replica (see pin).
const pinBusyWait = 100 * time.Millisecond

// pin pins the WAL for a snapshot (pinWAL). While a WAL fsync waits for the
// replica (durable.go), the checkpointer that issued it may hold the very
// lock the pin needs, and it cannot go on until this pass confirms its
// commits: waiting for the pin would deadlock. Then the pin is tried for
// pinBusyWait only and the snapshot goes on unpinned: that checkpointer is
// held before it copies a frame, and the snapshot's checksum check catches
// a state that moved anyway.
func (u *uploader) pin(ctx context.Context) (func(), error) {
	mp := u.mountPath.Load()
	if mp == nil {
		return func() {}, nil
	}
	if !u.capture.syncWaiting() {
		return pinWAL(ctx, *mp)
	}
	pctx, cancel := context.WithTimeout(ctx, pinBusyWait)
	defer cancel()
	unpin, err := pinWAL(pctx, *mp)
	if err == nil || ctx.Err() != nil {
		return unpin, err
	}
	u.logger.Debug("WAL pin busy while a durable WAL fsync waits: snapshot taken unpinned", "err", err)
	return func() {}, nil
}
