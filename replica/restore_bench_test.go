package replica_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/replica/replicatest"
	"github.com/superfly/ltx"
)

// benchMB is the database size of BenchmarkRestoreFile in MiB
// (LITEFS_REPLICA_BENCH_MB, default 64).
func benchMB() int {
	if v, err := strconv.Atoi(os.Getenv("LITEFS_REPLICA_BENCH_MB")); err == nil && v > 0 {
		return v
	}
	return 64
}

// benchPage fills p the way SQLite's randomblob rows do: mostly
// incompressible bytes, with a little structure at the start.
func benchPage(p []byte, r *rand.ChaCha8) {
	_, _ = r.Read(p)
	clear(p[:16])
}

// largeReplica writes a file replica holding a level-9 snapshot of an mb MiB database of 4 KiB pages, followed by a few
// small level-0 files rewriting scattered pages, and returns it with the
// database size in bytes.
func largeReplica(tb testing.TB, mb int) (*file.Client, int64) {
	tb.Helper()
	const pageSize = 4096
	c := file.NewClient(tb.TempDir())
	commit := uint32(mb << 20 / pageSize)
	lock := ltx.LockPgno(pageSize)
	rng := rand.NewChaCha8([32]byte{1})
	chk := ltx.ChecksumFlag
	sums := make([]ltx.Checksum, commit+1)

	encode := func(level int, minTXID, maxTXID ltx.TXID, pre ltx.Checksum, pgnos func(yield func(uint32) bool)) {
		path := c.Path(level, minTXID, maxTXID)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		f, err := os.Create(path)
		if err != nil {
			tb.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		enc, err := ltx.NewEncoder(w)
		if err != nil {
			tb.Fatal(err)
		}
		hdr := ltx.Header{Version: ltx.Version, PageSize: pageSize, Commit: commit, MinTXID: minTXID, MaxTXID: maxTXID,
			Timestamp: time.Date(2026, 1, 1, 0, 0, int(maxTXID), 0, time.UTC).UnixMilli(), PreApplyChecksum: pre}
		if err := enc.EncodeHeader(hdr); err != nil {
			tb.Fatal(err)
		}
		data := make([]byte, pageSize)
		for pgno := range pgnos {
			benchPage(data, rng)
			if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, data); err != nil {
				tb.Fatal(err)
			}
			s := ltx.ChecksumPage(pgno, data)
			if sums[pgno] != 0 {
				chk ^= sums[pgno]
			}
			sums[pgno] = s
			chk = ltx.ChecksumFlag | (chk ^ s)
		}
		enc.SetPostApplyChecksum(chk)
		if err := enc.Close(); err != nil {
			tb.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			tb.Fatal(err)
		}
		if err := f.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	encode(replica.SnapshotLevel, 1, 1, 0, func(yield func(uint32) bool) {
		for pgno := uint32(1); pgno <= commit; pgno++ {
			if pgno != lock && !yield(pgno) {
				return
			}
		}
	})
	for txid := ltx.TXID(2); txid <= 5; txid++ {
		pre := chk
		encode(0, txid, txid, pre, func(yield func(uint32) bool) {
			for pgno := uint32(txid); pgno <= commit; pgno += commit / 64 {
				if pgno != lock && !yield(pgno) {
					return
				}
			}
		})
	}
	return c, int64(commit) * pageSize
}

// ramClient serves a file replica's objects from memory, so a benchmark
// measures the restore rather than the backend.
type ramClient struct {
	replica.ReplicaClient
	objs map[string][]byte
}

func newRAMClient(tb testing.TB, c *file.Client) *ramClient {
	m := &ramClient{ReplicaClient: c, objs: map[string][]byte{}}
	for level := 0; level <= replica.SnapshotLevel; level++ {
		infos, err := c.LTXFiles(context.Background(), level, 0)
		if err != nil {
			tb.Fatal(err)
		}
		for _, info := range infos {
			b, err := os.ReadFile(c.Path(level, info.MinTXID, info.MaxTXID))
			if err != nil {
				tb.Fatal(err)
			}
			m.objs[replica.Key(info)] = b
		}
	}
	return m
}

func (m *ramClient) OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, offset, size int64) (io.ReadCloser, error) {
	b, ok := m.objs[replica.Key(&ltx.FileInfo{Level: level, MinTXID: minTXID, MaxTXID: maxTXID})]
	if !ok {
		return nil, fmt.Errorf("open: %w", replica.ErrNotFound)
	}
	b = b[min(offset, int64(len(b))):]
	if size > 0 {
		b = b[:min(size, int64(len(b)))]
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// BenchmarkRestoreFile restores a large replica (LITEFS_REPLICA_BENCH_MB)
// from memory and from a file replica; MB/s are of the database.
func BenchmarkRestoreFile(b *testing.B) {
	fc, size := largeReplica(b, benchMB())
	for _, tc := range []struct {
		name string
		c    replica.ReplicaClient
	}{
		{"mem", newRAMClient(b, fc)},
		{"file", fc},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(size)
			dir := b.TempDir()
			var peak uint64
			for i := 0; b.Loop(); i++ {
				out := filepath.Join(dir, fmt.Sprintf("db%d", i))
				if _, err := replica.Restore(context.Background(), tc.c, replica.RestoreOptions{OutputPath: out}); err != nil {
					b.Fatal(err)
				}
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapSys-ms.HeapReleased)
				b.StopTimer()
				os.Remove(out)
				b.StartTimer()
			}
			b.ReportMetric(float64(peak)/(1<<20), "heap-MiB")
		})
	}
}

// rawGet reads every object in chunk-sized ranges with n workers and
// discards the bytes.
func rawGet(b testing.TB, c replica.ReplicaClient, files []*ltx.FileInfo, n int, chunk int64) {
	type job struct {
		f   *ltx.FileInfo
		off int64
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			for j := range jobs {
				rc, err := c.OpenLTXFile(context.Background(), j.f.Level, j.f.MinTXID, j.f.MaxTXID, j.off, min(chunk, j.f.Size-j.off))
				if err == nil {
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for _, f := range files {
		for off := int64(0); off < f.Size; off += chunk {
			jobs <- job{f, off}
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// manyFilesReplica is a 1 MiB snapshot followed by n level-0 files that
// each rewrite a few scattered pages: the shape of a long history.
func manyFilesReplica(tb testing.TB, n int) (*file.Client, *replicatest.Chain) {
	tb.Helper()
	const pageSize = 4096
	ch := replicatest.NewChain(pageSize)
	rng := rand.NewChaCha8([32]byte{3})
	page := func() []byte {
		b := make([]byte, pageSize)
		benchPage(b, rng)
		return b
	}
	first := map[uint32][]byte{}
	for pgno := uint32(1); pgno <= 256; pgno++ {
		first[pgno] = page()
	}
	if _, err := ch.Commit(commitTime(1), 256, first); err != nil {
		tb.Fatal(err)
	}
	for txid := 2; txid <= n+1; txid++ {
		pages := map[uint32][]byte{}
		for k := 0; k < 3; k++ {
			pages[uint32(txid*37+k*101)%256+1] = page()
		}
		if _, err := ch.Commit(commitTime(ltx.TXID(txid)), 256, pages); err != nil {
			tb.Fatal(err)
		}
	}
	c := file.NewClient(tb.TempDir())
	names := []string{"9:1-1"}
	for txid := 2; txid <= n+1; txid++ {
		names = append(names, fmt.Sprintf("0:%d-%d", txid, txid))
	}
	writeChainTB(tb, c, ch, names...)
	return c, ch
}

func writeChainTB(tb testing.TB, c replica.ReplicaClient, ch *replicatest.Chain, names ...string) {
	tb.Helper()
	for _, name := range names {
		var level int
		var minTXID, maxTXID ltx.TXID
		if _, err := fmt.Sscanf(name, "%d:%d-%d", &level, &minTXID, &maxTXID); err != nil {
			tb.Fatal(err)
		}
		b, err := ch.File(minTXID, maxTXID)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := c.WriteLTXFile(context.Background(), level, minTXID, maxTXID, bytes.NewReader(b)); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkRestoreManyFiles restores a snapshot and 2,000 small files from
// memory: per-file costs.
func BenchmarkRestoreManyFiles(b *testing.B) {
	fc, _ := manyFilesReplica(b, 2000)
	c := newRAMClient(b, fc)
	dir := b.TempDir()
	for i := 0; b.Loop(); i++ {
		out := filepath.Join(dir, fmt.Sprintf("db%d", i))
		if _, err := replica.Restore(context.Background(), c, replica.RestoreOptions{OutputPath: out}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(out)
		b.StartTimer()
	}
}
