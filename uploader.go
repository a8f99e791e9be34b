package litefs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

// Run uploads staged segments until ctx ends. With a sync interval it waits
// that long after the first new segment so one object carries the whole
// window; with 0 it uploads as soon as the previous upload returned. An idle
// database sends nothing: no lease renewals, no listings.
func (d *DB) Run(ctx context.Context) {
	backoff := time.Duration(0)
	pending := d.hasStaged() || d.needRebase.Load()
	for {
		if !pending {
			var snapDue <-chan time.Time
			var timer *time.Timer
			if at, ok := d.nextSnapshotAt(); ok {
				timer = time.NewTimer(time.Until(at))
				snapDue = timer.C
			}
			select {
			case <-ctx.Done():
			case <-d.notify:
			case <-snapDue:
			}
			if timer != nil {
				timer.Stop()
			}
			if ctx.Err() != nil {
				return
			}
		}
		wait := d.syncInterval
		if backoff > 0 {
			wait = backoff
		}
		if wait > 0 && sleep(ctx, wait) != nil {
			return
		}
		err := d.Flush(ctx)
		var held *leaseWaitError
		switch {
		case err == nil:
			backoff, pending = 0, false
			d.leaseWait.Store(nil)
		case ctx.Err() != nil:
			return
		case errors.As(err, &held):
			if d.leaseWait.Swap(held) == nil {
				d.logger.Warn(held.Error())
			}
			// Look again every second: a clean stop of the other writer
			// releases the lease long before it expires.
			backoff, pending = min(max(time.Until(held.expires), minBackoff), leasePoll), true
		case errors.Is(err, replica.ErrConflict) || errors.Is(err, ErrFenced):
			d.lease = nil // not ours to release any more
			d.mu.Lock()
			d.stop(fmt.Errorf("%w: another writer owns the replica of %s; uploads stopped and nothing was overwritten: %v", ErrFenced, d.name, err))
			d.mu.Unlock()
			return
		default:
			d.Metrics.UploadErr.Add(1)
			backoff = nextBackoff(backoff)
			d.logger.Warn("upload failed; will retry (the app is not affected, staging holds the data)", "err", err, "retry_in", backoff.Round(time.Millisecond))
			pending = true
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
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

func (d *DB) hasStaged() bool { return d.stage.Bytes() > 0 }

// Flush takes a snapshot if one is due, freezes what is staged and uploads
// every frozen object in TXID order, inside the lease. A frozen object is
// deleted only after the replica confirmed it.
func (d *DB) Flush(ctx context.Context) error {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	d.drain()
	if err := d.fenced(); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if d.needRebase.Load() {
			if _, err := d.takeSnapshot(ctx, true); err != nil {
				return err
			}
		} else if d.snapshotDue() {
			if _, err := d.takeSnapshot(ctx, false); err != nil {
				return err
			}
		}
		if _, err := d.stage.Freeze(); err != nil {
			return err
		}
		files, err := d.stage.Frozen()
		if err != nil || len(files) == 0 {
			return err
		}
		if err := d.ensureLease(ctx); err != nil {
			return err
		}
		if d.needRebase.Load() && attempt == 0 {
			continue // the replica moved on while we waited for the lease
		}
		for _, f := range files {
			if !d.inLease() {
				if err := d.ensureLease(ctx); err != nil {
					return err
				}
			}
			if err := d.upload(ctx, f); err != nil {
				return err
			}
		}
		pos := d.Pos()
		if pos.TXID == d.ReplicaPos().TXID {
			// Keep the WAL position on disk once staging is empty: start-up
			// needs it to find commits a crash left only in the WAL.
			if err := d.stage.WritePos(pos, false); err != nil {
				return err
			}
		}
		d.retentionIfDue(ctx)
		return nil
	}
}

func (d *DB) upload(ctx context.Context, f staging.Frozen) error {
	key := fmt.Sprintf("level %d %s", f.Level, ltx.FormatFilename(f.Min, f.Max))
	post, err := d.stage.PostApply(f)
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	r, err := d.stage.Open(f)
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	defer r.Close()
	if _, err := d.client.WriteLTXFile(ctx, f.Level, f.Min, f.Max, r); err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	d.Metrics.UploadOK.Add(1)
	d.Metrics.UploadedBytes.Add(uint64(f.Size))
	d.repMu.Lock()
	if f.Max > d.replicaPos.TXID {
		d.replicaPos = staging.Pos{TXID: f.Max, Checksum: post}
	}
	d.repMu.Unlock()
	d.Metrics.unsent.confirmed(f.Max)
	d.logger.Debug("uploaded", "object", key, "bytes", f.Size)
	if err := d.stage.Remove(f); err != nil {
		return err
	}
	if f.Level == replica.SnapshotLevel {
		if !d.retentionDue {
			d.retentionDue, d.retentionSince = true, d.now()
		}
	} else {
		d.mu.Lock()
		d.uploadedSince += f.Size
		d.mu.Unlock()
	}
	return nil
}

// fenced returns why uploads stopped for good, if they did: another writer
// owns the replica, and nothing may be written to it any more.
func (d *DB) fenced() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == StateStopped && errors.Is(d.err, ErrFenced) {
		return d.err
	}
	return nil
}

// checkReplicaAfterLease runs when we (re)take the lease: if the replica
// moved past what we know, another writer wrote it meanwhile. A daemon that
// has not written this replica yet (it just started, the previous writer
// died) continues that history with a new snapshot; one that had the lease
// before and lost it while idle is fenced: the other writer is alive.
func (d *DB) checkReplicaAfterLease(ctx context.Context) error {
	remote, _, _, err := replicaState(ctx, d.client)
	if err != nil {
		return fmt.Errorf("read replica after taking the lease: %w", err)
	}
	d.repMu.Lock()
	moved := remote.TXID > d.replicaPos.TXID
	if moved {
		d.replicaPos = remote
	}
	d.repMu.Unlock()
	switch {
	case moved && d.leasedBefore:
		return fmt.Errorf("%w: another writer advanced the replica to TXID %d while our lease had lapsed", ErrFenced, remote.TXID)
	case moved:
		d.logger.Warn("another writer advanced the replica while we waited for the lease; taking a new snapshot that continues its TXIDs", "replica_txid", remote.TXID)
		d.needRebase.Store(true)
	}
	d.leasedBefore = true
	return nil
}

// Close releases the lease and makes staging and the position durable. The
// uploader must have stopped.
func (d *DB) Close(ctx context.Context) error {
	d.closeQueue()
	err := d.releaseLease(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	serr := d.stage.Sync()
	if err == nil {
		err = serr
	}
	// Staging that could not be written or synced must not be claimed by a
	// durable position: start-up would skip those commits in the WAL.
	if serr == nil {
		if werr := d.stage.WritePos(d.pos, true); err == nil {
			err = werr
		}
	}
	if cerr := d.stage.Close(); err == nil {
		err = cerr
	}
	return err
}
