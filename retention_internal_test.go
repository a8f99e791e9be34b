package litefs

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/vfs"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/staging"
	"github.com/litefs-dev/litefs/wal"
)

// listCounter counts listings: each retention pass starts with one.
type listCounter struct {
	replica.ReplicaClient
	lists int
}

func (c *listCounter) LTXFiles(ctx context.Context, level int, seek ltx.TXID) ([]*ltx.FileInfo, error) {
	c.lists++
	return c.ReplicaClient.LTXFiles(ctx, level, seek)
}

// Retention after a snapshot upload waits while commits are staged (it would
// hold up their upload), but not longer than maxRetentionDelay.
func TestRetentionWaitsForIdle(t *testing.T) {
	dir := t.TempDir()
	stage, _, err := staging.Open(vfs.Default, filepath.Join(dir, "staging"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stage.Close()
	now := time.Unix(1e9, 0)
	client := &listCounter{ReplicaClient: file.NewClient(filepath.Join(dir, "replica"))}
	d := &uploader{client: client, stage: stage, retention: time.Hour,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), now: func() time.Time { return now }}
	ctx := context.Background()

	d.retentionIfDue(ctx)
	if client.lists != 0 {
		t.Fatalf("retention ran %d times with no snapshot uploaded", client.lists)
	}
	d.retentionDue, d.retentionSince = true, now
	hdr := ltx.Header{Version: ltx.Version, PageSize: 1024, Commit: 1, MinTXID: 2, MaxTXID: 2, PreApplyChecksum: ltx.ChecksumFlag | 1}
	if _, err := stage.Append(hdr, ltx.ChecksumFlag|2, []wal.Page{{Pgno: 1, Data: make([]byte, 1024)}}); err != nil {
		t.Fatal(err)
	}
	d.retentionIfDue(ctx)
	if client.lists != 0 || !d.retentionDue {
		t.Fatalf("retention ran while a commit was staged (%d listings)", client.lists)
	}
	now = now.Add(maxRetentionDelay)
	d.retentionIfDue(ctx)
	if client.lists == 0 || d.retentionDue {
		t.Fatalf("retention still waiting %v after the snapshot", maxRetentionDelay)
	}
	before := client.lists
	d.retentionIfDue(ctx)
	if client.lists != before {
		t.Fatal("retention ran again without a new snapshot")
	}
	if err := stage.Discard(); err != nil {
		t.Fatal(err)
	}
	d.retentionDue, d.retentionSince = true, now
	d.retentionIfDue(ctx)
	if client.lists == before {
		t.Fatal("retention waited although nothing was staged")
	}
}
