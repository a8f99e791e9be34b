package replica_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/replica/replicatest"
	"github.com/superfly/ltx"
)

var epoch = time.Date(2024, 5, 6, 7, 0, 0, 0, time.UTC)

// commitTime is when each TXID of the plan tests committed.
func commitTime(txid ltx.TXID) time.Time { return epoch.Add(time.Duration(txid) * time.Minute) }

// planReplica writes opaque files named by "level:min-max" (decimal).
func planReplica(t *testing.T, names ...string) replica.ReplicaClient {
	t.Helper()
	c := file.NewClient(filepath.Join(t.TempDir(), "replica"))
	for _, name := range names {
		var level int
		var minTXID, maxTXID ltx.TXID
		if _, err := fmt.Sscanf(name, "%d:%d-%d", &level, &minTXID, &maxTXID); err != nil {
			t.Fatalf("bad name %q: %v", name, err)
		}
		b := replicatest.NewFile(t, minTXID, maxTXID, commitTime(maxTXID))
		if _, err := c.WriteLTXFile(context.Background(), level, minTXID, maxTXID, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func planNames(plan []*ltx.FileInfo) string {
	var a []string
	for _, f := range plan {
		a = append(a, fmt.Sprintf("%d:%d-%d", f.Level, f.MinTXID, f.MaxTXID))
	}
	return strings.Join(a, " ")
}

func checkPlan(t *testing.T, c replica.ReplicaClient, txid ltx.TXID, ts time.Time, want string) {
	t.Helper()
	plan, err := replica.Plan(context.Background(), c, txid, ts)
	if err != nil {
		t.Fatalf("plan txid=%d ts=%v: %v", txid, ts, err)
	}
	if got := planNames(plan); got != want {
		t.Fatalf("plan txid=%d ts=%v = %q, want %q", txid, ts, got, want)
	}
}

func checkPlanErr(t *testing.T, c replica.ReplicaClient, txid ltx.TXID, ts time.Time, target error, substrs ...string) {
	t.Helper()
	plan, err := replica.Plan(context.Background(), c, txid, ts)
	if err == nil {
		t.Fatalf("plan txid=%d ts=%v = %q, want error", txid, ts, planNames(plan))
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("err = %v, want %v", err, target)
	}
	for _, s := range substrs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("err = %q, want it to mention %q", err, s)
		}
	}
}

func TestPlanEmpty(t *testing.T) {
	c := planReplica(t)
	checkPlanErr(t, c, 0, time.Time{}, replica.ErrNoReplica)
	checkPlanErr(t, c, 5, time.Time{}, replica.ErrNoReplica)
}

func TestPlanLevel0Only(t *testing.T) {
	c := planReplica(t, "0:1-1", "0:2-3", "0:4-4")
	checkPlan(t, c, 0, time.Time{}, "0:1-1 0:2-3 0:4-4")
	checkPlan(t, c, 3, time.Time{}, "0:1-1 0:2-3")
	checkPlan(t, c, 1, time.Time{}, "0:1-1")
}

func TestPlanSnapshotSelection(t *testing.T) {
	c := planReplica(t, "9:1-5", "9:1-10", "0:1-1", "0:2-5", "0:6-8", "0:9-10", "0:11-12")
	checkPlan(t, c, 0, time.Time{}, "9:1-10 0:11-12")
	checkPlan(t, c, 12, time.Time{}, "9:1-10 0:11-12")
	checkPlan(t, c, 10, time.Time{}, "9:1-10")
	checkPlan(t, c, 8, time.Time{}, "9:1-5 0:6-8")
	checkPlan(t, c, 5, time.Time{}, "9:1-5")
	checkPlan(t, c, 1, time.Time{}, "0:1-1")

	checkPlan(t, c, 0, commitTime(8), "9:1-5 0:6-8")
	checkPlan(t, c, 0, commitTime(9).Add(-time.Millisecond), "9:1-5 0:6-8")
	checkPlan(t, c, 0, commitTime(10), "9:1-10")
	checkPlan(t, c, 0, commitTime(100), "9:1-10 0:11-12")
	checkPlan(t, c, 0, commitTime(1), "0:1-1")
	checkPlanErr(t, c, 0, commitTime(1).Add(-time.Millisecond), nil, "no state committed at or before")

	checkPlanErr(t, c, 8, commitTime(8), nil, "not both")
}

func TestPlanOverlapAcrossLevels(t *testing.T) {
	// A compaction covers what level 0 also holds: fewer, larger files win.
	c := planReplica(t, "0:1-2", "0:3-3", "0:4-4", "0:5-5", "0:6-6", "1:3-5")
	checkPlan(t, c, 0, time.Time{}, "0:1-2 1:3-5 0:6-6")
	checkPlan(t, c, 4, time.Time{}, "0:1-2 0:3-3 0:4-4")

	// A file starting inside one already chosen still extends the chain.
	c = planReplica(t, "0:1-3", "0:4-6", "1:2-8", "0:7-8", "0:9-9")
	checkPlan(t, c, 0, time.Time{}, "0:1-3 1:2-8 0:9-9")
	checkPlan(t, c, 6, time.Time{}, "0:1-3 0:4-6")

	// Same range on two levels: the higher level is taken.
	c = planReplica(t, "0:1-1", "0:2-4", "2:2-4", "3:1-1")
	checkPlan(t, c, 0, time.Time{}, "3:1-1 2:2-4")

	// Older history the snapshot already covers is ignored.
	c = planReplica(t, "0:1-1", "0:2-2", "0:5-6", "9:1-4", "0:7-7")
	checkPlan(t, c, 0, time.Time{}, "9:1-4 0:5-6 0:7-7")
}

func TestPlanGap(t *testing.T) {
	c := planReplica(t, "0:1-2", "0:3-3", "0:6-7", "0:8-8")
	checkPlanErr(t, c, 0, time.Time{}, replica.ErrGap,
		"0000000000000004-0000000000000005", "0/0000000000000003-0000000000000003.ltx", "0/0000000000000006-0000000000000007.ltx")
	checkPlanErr(t, c, 8, time.Time{}, replica.ErrGap, "0000000000000004-0000000000000005")
	checkPlanErr(t, c, 0, commitTime(7), replica.ErrGap)
	// Before the gap everything is there.
	checkPlan(t, c, 3, time.Time{}, "0:1-2 0:3-3")
	checkPlan(t, c, 0, commitTime(5), "0:1-2 0:3-3")

	// A compaction or a snapshot bridges it.
	c = planReplica(t, "0:1-2", "0:3-3", "0:6-7", "1:3-5")
	checkPlan(t, c, 0, time.Time{}, "0:1-2 1:3-5 0:6-7")
	c = planReplica(t, "0:1-2", "0:3-3", "0:6-7", "9:1-5")
	checkPlan(t, c, 0, time.Time{}, "9:1-5 0:6-7")
}

func TestPlanMustStartAtOne(t *testing.T) {
	c := planReplica(t, "0:2-3", "0:4-4")
	checkPlanErr(t, c, 0, time.Time{}, replica.ErrGap, "not 1", "0/0000000000000002-0000000000000003.ltx")
	checkPlanErr(t, c, 3, time.Time{}, replica.ErrGap, "not 1")
}

func TestPlanNotBoundary(t *testing.T) {
	c := planReplica(t, "0:1-2", "0:3-5", "0:6-9", "1:1-4")
	checkPlanErr(t, c, 3, time.Time{}, replica.ErrNotBoundary, "0000000000000002 below", "0000000000000004 above")
	checkPlanErr(t, c, 7, time.Time{}, replica.ErrNotBoundary, "0000000000000005 below", "0000000000000009 above")
	checkPlanErr(t, c, 10, time.Time{}, replica.ErrNotBoundary, "latest TXID 0000000000000009")
	// A boundary on any level will do.
	checkPlan(t, c, 4, time.Time{}, "1:1-4")
	checkPlan(t, c, 5, time.Time{}, "1:1-4 0:3-5") // greedy reach, then overlap
}

func TestPlanLongHistoryIsLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 20,000 files")
	}
	// Plan's walk must not be quadratic: 20,000 files plan in well under a
	// second even with the race detector.
	const n = 20000
	c := &memClient{}
	for txid := ltx.TXID(1); txid <= n; txid++ {
		c.files = append(c.files, &ltx.FileInfo{Level: 0, MinTXID: txid, MaxTXID: txid, CreatedAt: commitTime(txid)})
	}
	start := time.Now()
	plan, err := replica.Plan(context.Background(), c, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != n {
		t.Fatalf("plan has %d files, want %d", len(plan), n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("planning %d files took %s", n, d)
	}
}

// memClient lists level-0 files it does not hold; enough for Plan.
type memClient struct {
	replica.ReplicaClient
	files []*ltx.FileInfo
}

func (c *memClient) Type() string { return "mem" }

func (c *memClient) LTXFiles(ctx context.Context, level int, seek ltx.TXID) ([]*ltx.FileInfo, error) {
	if level != 0 {
		return nil, nil
	}
	return c.files, nil
}
