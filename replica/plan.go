package replica

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/superfly/ltx"
)

// ErrNoReplica is returned (wrapped) when the replica holds no LTX files, so
// callers such as restore -if-replica-exists can tell "nothing to restore"
// from a broken replica.
var ErrNoReplica = errors.New("replica holds no LTX files")

// ErrGap is returned (wrapped) when the history needed for the target has
// missing TXIDs, or does not start at TXID 1.
var ErrGap = errors.New("replica history is not contiguous")

// ErrNotBoundary is returned (wrapped) when a target TXID is not the last
// TXID of any file: a restore can only stop between files.
var ErrNotBoundary = errors.New("TXID is not a file boundary")

// Key names an object the same way on every backend: level/<min>-<max>.ltx.
func Key(info *ltx.FileInfo) string {
	return strconv.Itoa(info.Level) + "/" + ltx.FormatFilename(info.MinTXID, info.MaxTXID)
}

// Plan returns the files to apply, in order: the newest level-9 snapshot at or
// before the target (optional), then across levels 8..0 repeatedly the file
// with MinTXID <= current+1 reaching the highest MaxTXID, until the target.
// txid 0 and a zero ts mean the latest state; ts selects the newest state
// committed at or before it (by FileInfo.CreatedAt, MaxTXID's commit time).
// At most one of txid and ts may be set.
//
// Any file the target could use that lies past a gap makes Plan fail: a
// restore must never silently stop short of what the replica holds.
func Plan(ctx context.Context, c ReplicaClient, txid ltx.TXID, ts time.Time) ([]*ltx.FileInfo, error) {
	if txid != 0 && !ts.IsZero() {
		return nil, errors.New("plan restore: set a target TXID or a timestamp, not both")
	}
	levels, err := listAll(ctx, c)
	if err != nil {
		return nil, err
	}
	var n int
	for _, infos := range levels {
		n += len(infos)
	}
	if n == 0 {
		return nil, fmt.Errorf("plan restore: %w", ErrNoReplica)
	}

	usable := func(f *ltx.FileInfo) bool {
		return (txid == 0 || f.MaxTXID <= txid) && (ts.IsZero() || !f.CreatedAt.After(ts))
	}
	if txid != 0 {
		if err := checkBoundary(levels, txid); err != nil {
			return nil, err
		}
	}

	var plan []*ltx.FileInfo
	var cur ltx.TXID
	for _, f := range levels[SnapshotLevel] {
		if usable(f) && f.MaxTXID > cur {
			plan, cur = []*ltx.FileInfo{f}, f.MaxTXID
		}
	}

	// Files are sorted by MinTXID and cur only grows, so each level's usable
	// prefix (MinTXID <= cur+1) only grows: keep a cursor and the prefix's
	// furthest-reaching file per level, making the walk linear in the number
	// of files (a 72 h history of 1 s uploads is 259,200 of them).
	next := make([]int, SnapshotLevel)
	best := make([]*ltx.FileInfo, SnapshotLevel)
	for {
		var pick *ltx.FileInfo
		for level := SnapshotLevel - 1; level >= 0; level-- {
			infos := levels[level]
			for ; next[level] < len(infos) && infos[next[level]].MinTXID <= cur+1; next[level]++ {
				if f := infos[next[level]]; usable(f) && (best[level] == nil || f.MaxTXID > best[level].MaxTXID) {
					best[level] = f
				}
			}
			// Strictly greater: on a tie the higher level (fewer, larger
			// files) wins.
			if f := best[level]; f != nil && f.MaxTXID > cur && (pick == nil || f.MaxTXID > pick.MaxTXID) {
				pick = f
			}
		}
		if pick == nil {
			break
		}
		plan, cur = append(plan, pick), pick.MaxTXID
	}

	// Whatever usable file reaches past cur could not be chained: a gap.
	var after *ltx.FileInfo
	for _, infos := range levels {
		for _, f := range infos {
			if usable(f) && f.MaxTXID > cur && (after == nil || f.MinTXID < after.MinTXID) {
				after = f
			}
		}
	}
	switch {
	case after != nil && cur == 0:
		return nil, fmt.Errorf("plan restore: %w: no snapshot, and the history starts at TXID %s (object %s), not 1",
			ErrGap, after.MinTXID, Key(after))
	case after != nil:
		return nil, fmt.Errorf("plan restore: %w: TXIDs %s-%s are missing between object %s and object %s",
			ErrGap, cur+1, after.MinTXID-1, Key(plan[len(plan)-1]), Key(after))
	case len(plan) == 0 && !ts.IsZero():
		return nil, fmt.Errorf("plan restore: no state committed at or before %s: the earliest is %s",
			ts.UTC().Format(time.RFC3339Nano), earliest(levels).UTC().Format(time.RFC3339Nano))
	case len(plan) == 0:
		return nil, fmt.Errorf("plan restore: no file ends at or before TXID %s", txid)
	}
	return plan, nil
}

// listAll lists every level at once: each listing is at least a round
// trip, and a restore of a small database is mostly listing.
func listAll(ctx context.Context, c ReplicaClient) ([][]*ltx.FileInfo, error) {
	levels := make([][]*ltx.FileInfo, SnapshotLevel+1)
	errs := make([]error, len(levels))
	var wg sync.WaitGroup
	for level := range levels {
		wg.Go(func() { levels[level], errs[level] = listLevel(ctx, c, level) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return levels, nil
}

func listLevel(ctx context.Context, c ReplicaClient, level int) ([]*ltx.FileInfo, error) {
	infos, err := c.LTXFiles(ctx, level, 0)
	if err != nil {
		return nil, fmt.Errorf("plan restore: list level %d: %w", level, err)
	}
	var out []*ltx.FileInfo
	var prev ltx.TXID
	for _, info := range infos {
		// Level 9 holds only snapshots; anything else there is not ours.
		if info.MinTXID == 0 || info.MinTXID > info.MaxTXID || (level == SnapshotLevel && info.MinTXID != 1) {
			continue
		}
		if info.MinTXID < prev {
			return nil, fmt.Errorf("plan restore: list level %d: %s-%s listed after MinTXID %s: backend broke ascending order",
				level, info.MinTXID, info.MaxTXID, prev)
		}
		prev = info.MinTXID
		cp := *info
		cp.Level = level
		out = append(out, &cp)
	}
	return out, nil
}

// checkBoundary fails unless some file ends at txid, naming the nearest
// boundaries on each side.
func checkBoundary(levels [][]*ltx.FileInfo, txid ltx.TXID) error {
	var below, above ltx.TXID
	for _, infos := range levels {
		for _, f := range infos {
			switch {
			case f.MaxTXID == txid:
				return nil
			case f.MaxTXID < txid && f.MaxTXID > below:
				below = f.MaxTXID
			case f.MaxTXID > txid && (above == 0 || f.MaxTXID < above):
				above = f.MaxTXID
			}
		}
	}
	switch {
	case above == 0:
		return fmt.Errorf("plan restore: %w: TXID %s is past the replica's latest TXID %s", ErrNotBoundary, txid, below)
	case below == 0:
		return fmt.Errorf("plan restore: %w: TXID %s is before the first boundary %s", ErrNotBoundary, txid, above)
	}
	return fmt.Errorf("plan restore: %w: TXID %s falls inside a file; the nearest boundaries are %s below and %s above",
		ErrNotBoundary, txid, below, above)
}

func earliest(levels [][]*ltx.FileInfo) time.Time {
	var t time.Time
	for _, infos := range levels {
		for _, f := range infos {
			if t.IsZero() || f.CreatedAt.Before(t) {
				t = f.CreatedAt
			}
		}
	}
	return t
}
