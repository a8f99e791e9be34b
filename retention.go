package litefs

import (
	"context"
	"sort"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/replica"
)

// snapshotDue says whether the uploader should snapshot now: the database
// changed since the newest snapshot, and either snapshot-interval passed or
// more bytes were uploaded since than the database holds (which bounds how
// much a restore downloads).
func (d *DB) snapshotDue() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != StateReplicating || d.pos.TXID <= d.snap.TXID {
		return false
	}
	if d.snapInterval > 0 && !d.now().Before(d.snap.Time.Add(d.snapInterval)) {
		return true
	}
	return d.uploadedSince > int64(len(d.sums.sums))*int64(d.sums.pageSize)
}

// nextSnapshotAt is when snapshot-interval next expires.
func (d *DB) nextSnapshotAt() (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.snapInterval <= 0 || d.state != StateReplicating {
		return time.Time{}, false
	}
	return d.snap.Time.Add(d.snapInterval), true
}

// noteSnapshot records a staged snapshot. Called with d.mu held.
func (d *DB) noteSnapshot(txid ltx.TXID) {
	d.snap = snapshotInfo{TXID: txid, Time: d.now()}
	d.uploadedSince = 0
}

// maxRetentionDelay is how long retention may wait for a moment when
// nothing is staged.
const maxRetentionDelay = 30 * time.Second

// retentionIfDue runs retention after a snapshot upload, at the end of a
// Flush that left nothing staged: its listings and deletes would otherwise
// hold up the next commits' upload. Under a steady stream of commits it
// waits at most maxRetentionDelay. Called with flushMu held.
func (d *DB) retentionIfDue(ctx context.Context) {
	if !d.retentionDue || (d.hasStaged() && d.now().Sub(d.retentionSince) < maxRetentionDelay) {
		return
	}
	d.retentionDue = false
	d.enforceRetention(ctx)
}

// enforceRetention deletes what no restore within the retention window can
// need: snapshots older than the newest one taken before the window began,
// and segments that snapshot covers. The newest snapshot and its chain are
// never deleted. Runs after a snapshot upload (see retentionIfDue), so an
// idle database costs no requests; failures are logged and retried at the
// next snapshot.
func (d *DB) enforceRetention(ctx context.Context) {
	if d.retention <= 0 {
		return
	}
	cutoff := d.now().Add(-d.retention)
	snaps, err := d.client.LTXFiles(ctx, replica.SnapshotLevel, 0)
	if err != nil {
		d.logger.Warn("retention: list snapshots", "err", err)
		return
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].MaxTXID < snaps[j].MaxTXID })
	var base *ltx.FileInfo
	for _, s := range snaps[:max(len(snaps)-1, 0)] {
		if !s.CreatedAt.After(cutoff) {
			base = s
		}
	}
	if base == nil {
		return
	}
	var doomed []*ltx.FileInfo
	for _, s := range snaps {
		if s.MaxTXID < base.MaxTXID {
			doomed = append(doomed, s)
		}
	}
	if len(doomed) > 0 {
		if err := d.client.DeleteLTXFiles(ctx, doomed); err != nil {
			d.logger.Warn("retention: delete snapshots", "err", err)
			return
		}
	}
	n := len(doomed)
	for level := 0; level < replica.SnapshotLevel; level++ {
		files, err := d.client.LTXFiles(ctx, level, 0)
		if err != nil {
			d.logger.Warn("retention: list", "level", level, "err", err)
			return
		}
		var old []*ltx.FileInfo
		for _, f := range files {
			if f.MaxTXID <= base.MaxTXID {
				old = append(old, f)
			}
		}
		if len(old) > 0 {
			if err := d.client.DeleteLTXFiles(ctx, old); err != nil {
				d.logger.Warn("retention: delete", "level", level, "err", err)
				return
			}
			n += len(old)
		}
	}
	if n > 0 {
		d.logger.Info("retention: deleted objects no restore within the window needs", "count", n, "base_snapshot", base.MaxTXID, "retention", d.retention)
	}
}
