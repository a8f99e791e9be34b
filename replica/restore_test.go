package replica_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/replica/replicatest"
	"github.com/superfly/ltx"
)

// testPage is deterministic, part random and part repetitive so LZ4 has
// something to do both ways.
func testPage(pageSize int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	b := make([]byte, pageSize)
	for i := range b[:pageSize/4] {
		b[i] = byte(r.Uint32())
	}
	for i := pageSize / 4; i < pageSize; i++ {
		b[i] = byte(seed)
	}
	return b
}

// syntheticChain is a history that grows, rewrites, shrinks, and grows again
// past pages it never rewrites (which must come back as zeros).
func syntheticChain(t *testing.T, pageSize uint32) *replicatest.Chain {
	t.Helper()
	ch := replicatest.NewChain(pageSize)
	seed := uint64(0)
	pages := func(pgnos ...uint32) map[uint32][]byte {
		m := make(map[uint32][]byte)
		for _, pgno := range pgnos {
			seed++
			m[pgno] = testPage(int(pageSize), seed)
		}
		return m
	}
	txs := []struct {
		commit uint32
		pgnos  []uint32
	}{
		{6, []uint32{1, 2, 3, 4, 5, 6}},
		{6, []uint32{2, 3}},
		{9, []uint32{1, 7, 8, 9}},
		{9, []uint32{4}},
		{5, []uint32{1}},
		{8, []uint32{6}},
		{8, []uint32{2, 8}},
		{8, []uint32{1, 5}},
	}
	for _, tx := range txs {
		txid := ch.TXID() + 1
		if _, err := ch.Commit(commitTime(txid), tx.commit, pages(tx.pgnos...)); err != nil {
			t.Fatal(err)
		}
	}
	return ch
}

// writeChain stores the chain's files named "level:min-max" (decimal).
func writeChain(t *testing.T, c replica.ReplicaClient, ch *replicatest.Chain, names ...string) {
	t.Helper()
	for _, name := range names {
		var level int
		var minTXID, maxTXID ltx.TXID
		if _, err := fmt.Sscanf(name, "%d:%d-%d", &level, &minTXID, &maxTXID); err != nil {
			t.Fatalf("bad name %q: %v", name, err)
		}
		b, err := ch.File(minTXID, maxTXID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteLTXFile(context.Background(), level, minTXID, maxTXID, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
}

func newFileReplica(t *testing.T) *file.Client {
	return file.NewClient(filepath.Join(t.TempDir(), "replica"))
}

// restoreOK restores opt into a fresh directory and checks the result is
// exactly the chain's image at want.
func restoreOK(t *testing.T, c replica.ReplicaClient, ch *replicatest.Chain, opt replica.RestoreOptions, want ltx.TXID) string {
	t.Helper()
	if opt.OutputPath == "" {
		opt.OutputPath = filepath.Join(t.TempDir(), "db")
	}
	pos, err := replica.Restore(context.Background(), c, opt)
	if err != nil {
		t.Fatalf("restore txid=%s ts=%v: %v", opt.TXID, opt.Timestamp, err)
	}
	if pos.TXID != want || pos.PostApplyChecksum != ch.Checksum(want) {
		t.Errorf("restored position %s, want %s/%s", pos, want, ch.Checksum(want))
	}
	got, err := os.ReadFile(opt.OutputPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ch.Image(want)) {
		t.Fatalf("restored database (%d bytes) differs from the state at TXID %s (%d bytes)", len(got), want, len(ch.Image(want)))
	}
	checkNoTemp(t, opt.OutputPath)
	return opt.OutputPath
}

func checkNoTemp(t *testing.T, out string) {
	t.Helper()
	if _, err := os.Stat(replica.TempPath(out)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp file %s left behind (err %v)", replica.TempPath(out), err)
	}
}

// restoreFails checks the restore fails naming key and leaves nothing.
func restoreFails(t *testing.T, c replica.ReplicaClient, opt replica.RestoreOptions, key string, target error) {
	t.Helper()
	dir := t.TempDir()
	opt.OutputPath = filepath.Join(dir, "db")
	_, err := replica.Restore(context.Background(), c, opt)
	if err == nil {
		t.Fatalf("restore txid=%s succeeded, want an error naming %s", opt.TXID, key)
	}
	if !strings.Contains(err.Error(), key) {
		t.Errorf("err = %q, want it to name %s", err, key)
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("err = %v, want %v", err, target)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		t.Errorf("failed restore left %s", e.Name())
	}
}

func TestRestoreSynthetic(t *testing.T) {
	ch := syntheticChain(t, 512)
	c := newFileReplica(t)
	writeChain(t, c, ch, "9:1-3", "0:1-1", "0:2-2", "0:3-3", "0:4-4", "0:5-6", "0:7-7", "0:8-8", "1:4-7")
	for _, txid := range []ltx.TXID{0, 1, 2, 3, 4, 6, 7, 8} {
		want := txid
		if want == 0 {
			want = 8
		}
		restoreOK(t, c, ch, replica.RestoreOptions{TXID: txid}, want)
	}
	// By time: the newest state committed at or before it.
	restoreOK(t, c, ch, replica.RestoreOptions{Timestamp: commitTime(6)}, 6)
	restoreOK(t, c, ch, replica.RestoreOptions{Timestamp: commitTime(7).Add(-time.Millisecond)}, 6)
	restoreOK(t, c, ch, replica.RestoreOptions{Timestamp: commitTime(100)}, 8)
	restoreFails(t, c, replica.RestoreOptions{TXID: 5}, "0000000000000004 below", replica.ErrNotBoundary)
}

// Compactions cover the shrink and regrowth inside one file.
func TestRestoreCompacted(t *testing.T) {
	ch := syntheticChain(t, 1024)
	c := newFileReplica(t)
	writeChain(t, c, ch, "0:1-2", "2:3-8", "0:3-3")
	restoreOK(t, c, ch, replica.RestoreOptions{}, 8)
	// Overlap: 1-4 then 3-8 re-applies TXIDs 3 and 4.
	c = newFileReplica(t)
	writeChain(t, c, ch, "1:1-4", "0:3-8")
	restoreOK(t, c, ch, replica.RestoreOptions{}, 8)
}

func TestRestoreNoChecksum(t *testing.T) {
	ch := syntheticChain(t, 512)
	ch.NoChecksum = true
	c := newFileReplica(t)
	writeChain(t, c, ch, "9:1-2", "0:3-4", "0:5-5", "0:6-8")
	restoreOK(t, c, ch, replica.RestoreOptions{}, 8)
	restoreOK(t, c, ch, replica.RestoreOptions{TXID: 5}, 5)
}

func TestRestoreOutputChecks(t *testing.T) {
	ch := syntheticChain(t, 512)
	c := newFileReplica(t)
	writeChain(t, c, ch, "0:1-8")
	ctx := context.Background()

	missing := filepath.Join(t.TempDir(), "volume", "db")
	_, err := replica.Restore(ctx, c, replica.RestoreOptions{OutputPath: missing})
	if err == nil || !strings.Contains(err.Error(), "does not exist: mount the volume") {
		t.Fatalf("restore into a missing directory: err = %v", err)
	}
	if !errors.Is(err, replica.ErrOutputDir) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("restore into a missing directory: err = %v, want ErrOutputDir and ErrNotExist", err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = replica.Restore(ctx, c, replica.RestoreOptions{OutputPath: filepath.Join(notDir, "db")})
	if want := "restore: " + notDir + " is not a directory"; err == nil || err.Error() != want || !errors.Is(err, replica.ErrOutputDir) {
		t.Fatalf("restore under a file: err = %v, want %q wrapping ErrOutputDir", err, want)
	}

	existing := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(existing, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.Restore(ctx, c, replica.RestoreOptions{OutputPath: existing}); err == nil {
		t.Fatal("restore replaced an existing database")
	} else if errors.Is(err, replica.ErrOutputDir) {
		t.Fatalf("existing database: err = %v is not about the directory", err)
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Fatal("existing database was modified")
	}

	if _, err := replica.Restore(ctx, newFileReplica(t), replica.RestoreOptions{OutputPath: filepath.Join(t.TempDir(), "db")}); !errors.Is(err, replica.ErrNoReplica) {
		t.Fatalf("empty replica: err = %v, want ErrNoReplica", err)
	}
}

func TestRestoreRemovesStaleFiles(t *testing.T) {
	ch := syntheticChain(t, 512)
	c := newFileReplica(t)
	writeChain(t, c, ch, "0:1-8")
	out := filepath.Join(t.TempDir(), "db")
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := os.WriteFile(out+suffix, []byte("stale"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A temp file from a killed restore is reused, not an obstacle.
	if err := os.WriteFile(replica.TempPath(out), []byte("half a database"), 0o644); err != nil {
		t.Fatal(err)
	}
	restoreOK(t, c, ch, replica.RestoreOptions{OutputPath: out}, 8)
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if _, err := os.Stat(out + suffix); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale %s survived the restore", suffix)
		}
	}
}

func TestRestoreLogs(t *testing.T) {
	ch := syntheticChain(t, 512)
	c := newFileReplica(t)
	writeChain(t, c, ch, "9:1-4", "0:5-8")
	var buf bytes.Buffer
	restoreOK(t, c, ch, replica.RestoreOptions{Logger: slog.New(slog.NewTextHandler(&buf, nil))}, 8)
	for _, want := range []string{"snapshot applied", "key=9/0000000000000001-0000000000000004.ltx",
		"msg=applied key=0/0000000000000005-0000000000000008.ltx", "elapsed=", "msg=renamed"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
}

// countingClient delays and counts concurrent reads to show that downloads
// run ahead in parallel, within the worker bound, in any completion order.
type countingClient struct {
	replica.ReplicaClient
	open, max, opens atomic.Int64
	onOpen           func(n int64)
}

func (c *countingClient) OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, offset, size int64) (io.ReadCloser, error) {
	n := c.opens.Add(1)
	if c.onOpen != nil {
		c.onOpen(n)
	}
	cur := c.open.Add(1)
	for {
		m := c.max.Load()
		if cur <= m || c.max.CompareAndSwap(m, cur) {
			break
		}
	}
	time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
	rc, err := c.ReplicaClient.OpenLTXFile(ctx, level, minTXID, maxTXID, offset, size)
	if err != nil {
		c.open.Add(-1)
		return nil, err
	}
	return &countedReader{ReadCloser: rc, c: c}, nil
}

type countedReader struct {
	io.ReadCloser
	c    *countingClient
	once sync.Once
}

func (r *countedReader) Close() error {
	r.once.Do(func() { r.c.open.Add(-1) })
	return r.ReadCloser.Close()
}

func TestRestoreParallelRangedReads(t *testing.T) {
	defer replica.SetChunkSize(100)()
	ch := syntheticChain(t, 4096)
	fc := newFileReplica(t)
	writeChain(t, fc, ch, "9:1-2", "0:3-3", "0:4-4", "0:5-5", "0:6-6", "0:7-7", "0:8-8")
	for _, parallelism := range []int{1, 3, 8} {
		c := &countingClient{ReplicaClient: fc}
		restoreOK(t, c, ch, replica.RestoreOptions{Parallelism: parallelism}, 8)
		if m := c.max.Load(); m > int64(parallelism) {
			t.Errorf("parallelism %d: %d reads at once", parallelism, m)
		} else if parallelism > 1 && m < 2 {
			t.Errorf("parallelism %d: reads never overlapped", parallelism)
		}
		if c.opens.Load() < 20 {
			t.Errorf("only %d ranged reads with 100-byte chunks", c.opens.Load())
		}
	}
}

func TestRestoreCancel(t *testing.T) {
	defer replica.SetChunkSize(100)()
	ch := syntheticChain(t, 4096)
	fc := newFileReplica(t)
	writeChain(t, fc, ch, "9:1-2", "0:3-3", "0:4-8")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &countingClient{ReplicaClient: fc, onOpen: func(n int64) {
		if n == 5 {
			cancel()
		}
	}}
	dir := t.TempDir()
	out := filepath.Join(dir, "db")
	if _, err := replica.Restore(ctx, c, replica.RestoreOptions{OutputPath: out, Parallelism: 2}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("cancelled restore left %d files", len(entries))
	}
	if n := c.open.Load(); n != 0 {
		t.Fatalf("%d reads still open after Restore returned", n)
	}
}
