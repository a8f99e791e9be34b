package litefs

import (
	"context"
	"sort"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/replica"
)

// maxRetentionDelay is how long retention may wait for a moment when
// nothing is staged.
const maxRetentionDelay = 30 * time.Second

// retentionIfDue runs retention after a snapshot upload, at the end of a
// Flush that left nothing staged: its listings and deletes would otherwise
// hold up the next commits' upload. Under a steady stream of commits it
// waits at most maxRetentionDelay. Called with flushMu held.
func (u *uploader) retentionIfDue(ctx context.Context) {
	if !u.retentionDue || (u.hasStaged() && u.now().Sub(u.retentionSince) < maxRetentionDelay) {
		return
	}
	u.retentionDue = false
	u.enforceRetention(ctx)
}

// enforceRetention deletes what no restore within the retention window can
// need: snapshots older than the newest one taken before the window began,
// and segments that snapshot covers. The newest snapshot and its chain are
// never deleted. Runs after a snapshot upload (see retentionIfDue), so an
// idle database costs no requests; failures are logged and retried at the
// next snapshot.
func (u *uploader) enforceRetention(ctx context.Context) {
	if u.retention <= 0 {
		return
	}
	cutoff := u.now().Add(-u.retention)
	snaps, err := u.client.LTXFiles(ctx, replica.SnapshotLevel, 0)
	if err != nil {
		u.logger.Warn("retention: list snapshots", "err", err)
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
		if err := u.client.DeleteLTXFiles(ctx, doomed); err != nil {
			u.logger.Warn("retention: delete snapshots", "err", err)
			return
		}
	}
	n := len(doomed)
	for level := 0; level < replica.SnapshotLevel; level++ {
		files, err := u.client.LTXFiles(ctx, level, 0)
		if err != nil {
			u.logger.Warn("retention: list", "level", level, "err", err)
			return
		}
		var old []*ltx.FileInfo
		for _, f := range files {
			if f.MaxTXID <= base.MaxTXID {
				old = append(old, f)
			}
		}
		if len(old) > 0 {
			if err := u.client.DeleteLTXFiles(ctx, old); err != nil {
				u.logger.Warn("retention: delete", "level", level, "err", err)
				return
			}
			n += len(old)
		}
	}
	if n > 0 {
		u.logger.Info("retention: deleted objects no restore within the window needs", "count", n, "base_snapshot", base.MaxTXID, "retention", u.retention)
	}
}
