package litefs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/staging"
)

// Retry backoff bounds for failed uploads, and how often a writer waiting
// for another's lease looks again.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	leasePoll  = time.Second
)

// uploader is the second half of a replicated database: it freezes what
// the capture staged and uploads it, inside the replica's lease, one pass
// at a time (flushMu); it owns the snapshot policy (snapshot.go),
// retention (retention.go), the lease (lease.go) and the replica's
// position. It reads the capture only through its methods.
type uploader struct {
	name         string
	logger       *slog.Logger
	now          func() time.Time
	client       replica.ReplicaClient
	stage        *staging.Log
	capture      *Capture
	metrics      *Metrics
	syncInterval time.Duration

	// notify wakes Run when something was staged; urgentCh also cuts the
	// sync-interval wait short (a durable commit waits).
	notify   chan struct{}
	urgentCh chan struct{}
	// mountPath is where the app sees the database: snapshots pin the WAL
	// there (pin.go). nil while unmounted.
	mountPath atomic.Pointer[string]

	flushMu sync.Mutex // one freeze and upload pass at a time
	// retentionDue: a snapshot was uploaded since retention last ran, at
	// retentionSince. Guarded by flushMu.
	retentionDue   bool
	retentionSince time.Time

	repMu      sync.Mutex
	replicaPos staging.Pos // what the replica holds (max TXID)
	confirmed  confirmed   // what our own uploads put there (confirm.go)

	mu            sync.Mutex
	snap          snapshotInfo // the newest snapshot, staged or in the replica
	uploadedSince int64        // bytes uploaded since that snapshot

	// Owned by the goroutine in Run (and Flush, under flushMu).
	leaser       replica.Leaser // nil: no fencing
	owner        string
	leaseTTL     time.Duration
	lease        *replica.Lease
	leasedBefore bool // we held the lease on this replica since start-up
	snapInterval time.Duration
	retention    time.Duration

	// unknown is set when start-up could not read the replica; Flush
	// learns it first (reachability.go). Guarded by flushMu.
	unknown *unknownReplica
	// down tracks a run of failed uploads for the log. Set at start-up
	// when the replica was unreachable; otherwise owned by Run.
	down outage

	needRebase   atomic.Bool                    // staging must restart from a new snapshot
	snapMismatch atomic.Int32                   // snapshots in a row that did not match the tracked checksum
	leaseWait    atomic.Pointer[leaseWaitError] // set while another writer holds the lease
}

// staged implements uploadSide: wake Run.
func (u *uploader) staged() {
	select {
	case u.notify <- struct{}{}:
	default:
	}
}

// urgent implements uploadSide.
func (u *uploader) urgent() {
	select {
	case u.urgentCh <- struct{}{}:
	default:
	}
	u.staged()
}

// rebase implements uploadSide: the next pass starts with a new snapshot.
func (u *uploader) rebase() {
	u.needRebase.Store(true)
	u.staged()
}

// replicaTXID implements uploadSide.
func (u *uploader) replicaTXID() ltx.TXID { return u.ReplicaPos().TXID }

// ReplicaPos is the newest position the replica confirmed.
func (u *uploader) ReplicaPos() staging.Pos {
	u.repMu.Lock()
	defer u.repMu.Unlock()
	return u.replicaPos
}

// Run uploads staged segments until ctx ends. With a sync interval it waits
// that long after the first new segment so one object carries the whole
// window; with 0 it uploads as soon as the previous upload returned. An idle
// database sends nothing: no lease renewals, no listings.
func (u *uploader) Run(ctx context.Context) {
	backoff := time.Duration(0)
	pending := u.hasStaged() || u.needRebase.Load()
	for {
		if !pending {
			var snapDue <-chan time.Time
			var timer *time.Timer
			if at, ok := u.nextSnapshotAt(); ok {
				timer = time.NewTimer(time.Until(at))
				snapDue = timer.C
			}
			select {
			case <-ctx.Done():
			case <-u.notify:
			case <-snapDue:
			}
			if timer != nil {
				timer.Stop()
			}
			if ctx.Err() != nil {
				return
			}
		}
		if backoff > 0 {
			// An outage's backoff holds even for durable commits: they wait
			// for the replica anyway.
			if sleep(ctx, backoff, nil) != nil {
				return
			}
		} else if u.syncInterval > 0 && sleep(ctx, u.syncInterval, u.urgentCh) != nil {
			return
		}
		err := u.Flush(ctx)
		var held *leaseWaitError
		switch {
		case err == nil:
			backoff, pending = 0, false
			u.leaseWait.Store(nil)
			u.down.ended(u.logger, u.now())
		case ctx.Err() != nil:
			return
		case errors.As(err, &held):
			if u.leaseWait.Swap(held) == nil {
				u.logger.Warn(held.Error())
			}
			// Look again every second: a clean stop of the other writer
			// releases the lease long before it expires.
			backoff, pending = min(max(time.Until(held.expires), minBackoff), leasePoll), true
		case errors.Is(err, replica.ErrConflict) || errors.Is(err, ErrFenced):
			u.lease = nil // not ours to release any more
			u.capture.fail(fmt.Errorf("%w: another writer owns the replica of %s; uploads stopped and nothing was overwritten: %v", ErrFenced, u.name, err))
			return
		case errors.Is(err, errSnapshotRetry):
			backoff, pending = nextBackoff(backoff), true
			u.logger.Warn(err.Error())
		default:
			u.metrics.UploadErr.Add(1)
			backoff = nextBackoff(backoff)
			u.down.failed(u.logger, u.now(), u.stage.Bytes(), err, backoff)
			pending = true
		}
	}
}

// sleep waits d, or less when wake fires.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	case <-wake:
	}
	return nil
}

// nextBackoff doubles up to maxBackoff, with jitter so that many daemons
// recovering from one outage do not retry in lockstep.
func nextBackoff(b time.Duration) time.Duration {
	if b == 0 {
		b = minBackoff
	} else {
		b *= 2
	}
	if b > maxBackoff {
		b = maxBackoff
	}
	return b/2 + rand.N(b/2+1)
}

func (u *uploader) hasStaged() bool { return u.stage.Bytes() > 0 }

// Flush takes a snapshot if one is due, freezes what is staged and uploads
// every frozen object in TXID order, inside the lease. A frozen object is
// deleted only after the replica confirmed it.
func (u *uploader) Flush(ctx context.Context) error {
	u.flushMu.Lock()
	defer u.flushMu.Unlock()
	u.capture.drain()
	if err := u.fenced(); err != nil {
		return err
	}
	if u.unknown != nil {
		if err := u.learnReplica(ctx); err != nil {
			return err
		}
	}
	snapAfter := false
	for attempt := 0; ; attempt++ {
		if u.needRebase.Load() {
			if _, err := u.snapshotNow(ctx, true); err != nil {
				return err
			}
		} else if u.snapshotDue() {
			if u.capture.durableWaiting() {
				// Not before a waiting durable commit's upload: it would add
				// a snapshot's time to that commit. After it (below).
				snapAfter = true
			} else if _, err := u.snapshotNow(ctx, false); err != nil {
				return err
			}
		}
		if _, err := u.stage.Freeze(); err != nil {
			return err
		}
		files, err := u.stage.Frozen()
		if err != nil || len(files) == 0 {
			return err
		}
		if err := u.ensureLease(ctx); err != nil {
			return err
		}
		if u.needRebase.Load() && attempt == 0 {
			continue // the replica moved on while we waited for the lease
		}
		for _, f := range files {
			if !u.inLease() {
				if err := u.ensureLease(ctx); err != nil {
					return err
				}
			}
			if err := u.upload(ctx, f); err != nil {
				return err
			}
		}
		pos := u.capture.Pos()
		if pos.TXID == u.ReplicaPos().TXID {
			// Keep the WAL position on disk once staging is empty: start-up
			// needs it to find commits a crash left only in the WAL.
			if err := u.stage.WritePos(pos, false); err != nil {
				return err
			}
		}
		if snapAfter && u.snapshotDue() {
			// Staged now, uploaded by the next pass.
			if _, err := u.snapshotNow(ctx, false); err != nil {
				return err
			}
			u.staged()
		}
		u.retentionIfDue(ctx)
		return nil
	}
}

func (u *uploader) upload(ctx context.Context, f staging.Frozen) error {
	key := fmt.Sprintf("level %d %s", f.Level, ltx.FormatFilename(f.Min, f.Max))
	post, err := u.stage.PostApply(f)
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	r, err := u.stage.Open(f)
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	defer r.Close()
	if _, err := u.client.WriteLTXFile(ctx, f.Level, f.Min, f.Max, r); err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	u.metrics.UploadOK.Add(1)
	u.metrics.UploadedBytes.Add(uint64(f.Size))
	u.repMu.Lock()
	if f.Max > u.replicaPos.TXID {
		u.replicaPos = staging.Pos{TXID: f.Max, Checksum: post}
	}
	u.repMu.Unlock()
	u.confirmed.advance(f.Max)
	u.metrics.unsent.confirmed(f.Max)
	u.logger.Debug("uploaded", "object", key, "bytes", f.Size)
	if err := u.stage.Remove(f); err != nil {
		return err
	}
	if f.Level == replica.SnapshotLevel {
		if !u.retentionDue {
			u.retentionDue, u.retentionSince = true, u.now()
		}
	} else {
		u.mu.Lock()
		u.uploadedSince += f.Size
		u.mu.Unlock()
	}
	return nil
}

// fenced returns why uploads stopped for good, if they did: another writer
// owns the replica, and nothing may be written to it any more.
func (u *uploader) fenced() error {
	if state, err := u.capture.State(); state == StateStopped && errors.Is(err, ErrFenced) {
		return err
	}
	return nil
}

// checkReplicaAfterLease runs when we (re)take the lease: if the replica
// moved past what we know, another writer wrote it meanwhile. A daemon that
// has not written this replica yet (it just started, the previous writer
// died) continues that history with a new snapshot; one that had the lease
// before and lost it while idle is fenced: the other writer is alive.
func (u *uploader) checkReplicaAfterLease(ctx context.Context) error {
	remote, _, _, err := replicaState(ctx, u.client)
	if err != nil {
		return fmt.Errorf("read replica after taking the lease: %w", err)
	}
	u.repMu.Lock()
	moved := remote.TXID > u.replicaPos.TXID
	if moved {
		u.replicaPos = remote
	}
	u.repMu.Unlock()
	switch {
	case moved && u.leasedBefore:
		return fmt.Errorf("%w: another writer advanced the replica to TXID %d while our lease had lapsed", ErrFenced, remote.TXID)
	case moved:
		u.logger.Warn("another writer advanced the replica while we waited for the lease; taking a new snapshot that continues its TXIDs", "replica_txid", remote.TXID)
		u.needRebase.Store(true)
	}
	u.leasedBefore = true
	return nil
}
