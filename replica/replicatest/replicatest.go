package replicatest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/litefs-dev/litefs/replica"
	"github.com/superfly/ltx"
)

// ManyFiles is how many files the pagination subtest writes: more than one
// S3 ListObjectsV2 page of 1,000 keys.
const ManyFiles = 1005

// baseTime is far from now so a backend that reports its own clock instead
// of the header timestamp fails CreatedAt checks.
var baseTime = time.Date(2021, 3, 4, 5, 6, 7, 891_000_000, time.UTC)

// Run runs the conformance suite. newClient must return a client on a fresh,
// empty replica each time it is called.
func Run(t *testing.T, newClient func(t *testing.T) replica.ReplicaClient) {
	t.Run("WriteListSeek", func(t *testing.T) { testWriteListSeek(t, newClient(t)) })
	t.Run("AscendingOrder", func(t *testing.T) { testAscendingOrder(t, newClient(t)) })
	t.Run("ReadRanges", func(t *testing.T) { testReadRanges(t, newClient(t)) })
	t.Run("CreateIfAbsent", func(t *testing.T) { testCreateIfAbsent(t, newClient(t)) })
	t.Run("PlainReader", func(t *testing.T) { testPlainReader(t, newClient(t)) })
	t.Run("FailedWriteLeavesNothing", func(t *testing.T) { testFailedWrite(t, newClient(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newClient(t)) })
	t.Run("ManyFiles", func(t *testing.T) { testManyFiles(t, newClient(t)) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, newClient(t)) })
	t.Run("ContextCancel", func(t *testing.T) { testContextCancel(t, newClient(t)) })
	t.Run("LevelIsolation", func(t *testing.T) { testLevelIsolation(t, newClient(t)) })
	t.Run("CreatedAt", func(t *testing.T) { testCreatedAt(t, newClient(t)) })
}

func ts(txid ltx.TXID) time.Time {
	return baseTime.Add(time.Duration(txid) * time.Second)
}

// write stores a NewFile and checks the FileInfo WriteLTXFile returns.
func write(t *testing.T, c replica.ReplicaClient, level int, minTXID, maxTXID ltx.TXID) []byte {
	t.Helper()
	b := NewFile(t, minTXID, maxTXID, ts(maxTXID))
	info, err := c.WriteLTXFile(context.Background(), level, minTXID, maxTXID, bytes.NewReader(b))
	if err != nil {
		t.Fatalf("write %d/%s-%s: %v", level, minTXID, maxTXID, err)
	}
	checkInfo(t, info, level, b)
	return b
}

// checkInfo compares a FileInfo with what the file's bytes say.
func checkInfo(t *testing.T, info *ltx.FileInfo, level int, b []byte) {
	t.Helper()
	var hdr ltx.Header
	var trailer ltx.Trailer
	if err := hdr.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if err := trailer.UnmarshalBinary(b[len(b)-ltx.TrailerSize:]); err != nil {
		t.Fatal(err)
	}
	if info == nil {
		t.Fatalf("nil FileInfo for %d/%s-%s", level, hdr.MinTXID, hdr.MaxTXID)
	}
	want := ltx.FileInfo{
		Level: level, MinTXID: hdr.MinTXID, MaxTXID: hdr.MaxTXID,
		PreApplyChecksum: hdr.PreApplyChecksum, PostApplyChecksum: trailer.PostApplyChecksum,
		Size: int64(len(b)),
	}
	got := *info
	got.CreatedAt = time.Time{}
	if got != want {
		t.Errorf("FileInfo = %+v, want %+v", got, want)
	}
	if info.CreatedAt.UnixMilli() != hdr.Timestamp {
		t.Errorf("%d/%s-%s: CreatedAt = %s, want header timestamp %s", level, hdr.MinTXID, hdr.MaxTXID,
			info.CreatedAt.UTC().Format(time.RFC3339Nano), time.UnixMilli(hdr.Timestamp).UTC().Format(time.RFC3339Nano))
	}
}

func list(t *testing.T, c replica.ReplicaClient, level int, seek ltx.TXID) []*ltx.FileInfo {
	t.Helper()
	infos, err := c.LTXFiles(context.Background(), level, seek)
	if err != nil {
		t.Fatalf("list level %d seek %s: %v", level, seek, err)
	}
	return infos
}

func checkRanges(t *testing.T, infos []*ltx.FileInfo, want ...[2]ltx.TXID) {
	t.Helper()
	var got [][2]ltx.TXID
	for _, info := range infos {
		got = append(got, [2]ltx.TXID{info.MinTXID, info.MaxTXID})
	}
	if len(got) != len(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("listed %v, want %v", got, want)
		}
	}
}

func read(t *testing.T, c replica.ReplicaClient, level int, minTXID, maxTXID ltx.TXID, offset, size int64) []byte {
	t.Helper()
	rc, err := c.OpenLTXFile(context.Background(), level, minTXID, maxTXID, offset, size)
	if err != nil {
		t.Fatalf("open %d/%s-%s at %d+%d: %v", level, minTXID, maxTXID, offset, size, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %d/%s-%s at %d+%d: %v", level, minTXID, maxTXID, offset, size, err)
	}
	return b
}

func testWriteListSeek(t *testing.T, c replica.ReplicaClient) {
	files := map[[2]ltx.TXID][]byte{}
	for _, r := range [][2]ltx.TXID{{1, 1}, {2, 5}, {6, 6}, {7, 10}} {
		files[r] = write(t, c, 0, r[0], r[1])
	}
	infos := list(t, c, 0, 0)
	checkRanges(t, infos, [2]ltx.TXID{1, 1}, [2]ltx.TXID{2, 5}, [2]ltx.TXID{6, 6}, [2]ltx.TXID{7, 10})
	for _, info := range infos {
		checkInfo(t, info, 0, files[[2]ltx.TXID{info.MinTXID, info.MaxTXID}])
	}
	checkRanges(t, list(t, c, 0, 1), [2]ltx.TXID{1, 1}, [2]ltx.TXID{2, 5}, [2]ltx.TXID{6, 6}, [2]ltx.TXID{7, 10})
	// Seek compares MinTXID: a file that merely contains the seek TXID is out.
	checkRanges(t, list(t, c, 0, 3), [2]ltx.TXID{6, 6}, [2]ltx.TXID{7, 10})
	checkRanges(t, list(t, c, 0, 6), [2]ltx.TXID{6, 6}, [2]ltx.TXID{7, 10})
	checkRanges(t, list(t, c, 0, 7), [2]ltx.TXID{7, 10})
	checkRanges(t, list(t, c, 0, 11))
}

func testAscendingOrder(t *testing.T, c replica.ReplicaClient) {
	// Hex digits past 9 and a multi-digit boundary catch decimal or
	// unpadded sorting.
	ranges := [][2]ltx.TXID{{0x9, 0x9}, {0xa, 0xf}, {0x10, 0x10}, {0x11, 0xff}, {0x100, 0x100}, {0xabc, 0x1000}, {0x1001, 0xffffffff1}}
	for _, i := range rand.Perm(len(ranges)) {
		write(t, c, 2, ranges[i][0], ranges[i][1])
	}
	checkRanges(t, list(t, c, 2, 0), ranges...)
	checkRanges(t, list(t, c, 2, 0x100), ranges[4:]...)
}

func testReadRanges(t *testing.T, c replica.ReplicaClient) {
	b := write(t, c, 0, 3, 4)
	n := int64(len(b))
	for _, tc := range []struct{ offset, size int64 }{
		{0, 0}, {0, n}, {10, 20}, {1, 1}, {50, 0}, {n - ltx.TrailerSize, ltx.TrailerSize}, {n - 1, 0},
	} {
		want := b[tc.offset:]
		if tc.size > 0 {
			want = want[:tc.size]
		}
		if got := read(t, c, 0, 3, 4, tc.offset, tc.size); !bytes.Equal(got, want) {
			t.Errorf("read offset=%d size=%d: got %d bytes, want %d (contents differ)", tc.offset, tc.size, len(got), len(want))
		}
	}
}

func testCreateIfAbsent(t *testing.T, c replica.ReplicaClient) {
	ctx := context.Background()
	orig := write(t, c, 0, 5, 8)

	// A retried upload whose reply was lost sends the same bytes again.
	info, err := c.WriteLTXFile(ctx, 0, 5, 8, bytes.NewReader(orig))
	if err != nil {
		t.Fatalf("rewrite with identical bytes: %v", err)
	}
	checkInfo(t, info, 0, orig)

	other := NewFile(t, 5, 8, ts(8).Add(time.Millisecond))
	if _, err := c.WriteLTXFile(ctx, 0, 5, 8, bytes.NewReader(other)); !errors.Is(err, replica.ErrConflict) {
		t.Fatalf("rewrite with different bytes: err = %v, want ErrConflict", err)
	}
	if got := read(t, c, 0, 5, 8, 0, 0); !bytes.Equal(got, orig) {
		t.Fatal("a conflicting write changed the stored object")
	}
	infos := list(t, c, 0, 0)
	checkRanges(t, infos, [2]ltx.TXID{5, 8})
	checkInfo(t, infos[0], 0, orig)
}

// The uploader may hand over any io.Reader: one that is not seekable, has no
// known length, and returns a byte at a time must still be stored exactly.
func testPlainReader(t *testing.T, c replica.ReplicaClient) {
	b := NewFile(t, 1, 2, ts(2))
	info, err := c.WriteLTXFile(context.Background(), 0, 1, 2, iotest.OneByteReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("write from a plain reader: %v", err)
	}
	checkInfo(t, info, 0, b)
	if got := read(t, c, 0, 1, 2, 0, 0); !bytes.Equal(got, b) {
		t.Fatal("stored bytes differ")
	}
	// And the idempotent retry from a plain reader.
	if _, err := c.WriteLTXFile(context.Background(), 0, 1, 2, iotest.HalfReader(bytes.NewReader(b))); err != nil {
		t.Fatalf("rewrite from a plain reader: %v", err)
	}
}

var errInjectedRead = errors.New("replicatest: injected read error")

// failingReader fails after handing out part of a file, like a staging file
// that cannot be read to the end.
type failingReader struct {
	b []byte
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, errInjectedRead
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func testFailedWrite(t *testing.T, c replica.ReplicaClient) {
	b := NewFile(t, 1, 3, ts(3))
	_, err := c.WriteLTXFile(context.Background(), 0, 1, 3, &failingReader{b: b[:len(b)/2]})
	if err == nil {
		t.Fatal("write from a failing reader succeeded")
	}
	if !strings.Contains(err.Error(), errInjectedRead.Error()) {
		t.Logf("write from a failing reader: %v (the injected error is not mentioned)", err)
	}
	checkRanges(t, list(t, c, 0, 0))
	if _, err := c.OpenLTXFile(context.Background(), 0, 1, 3, 0, 0); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("open after failed write: err = %v, want ErrNotFound", err)
	}
	// The name is still free for the real upload.
	write(t, c, 0, 1, 3)
}

func testDelete(t *testing.T, c replica.ReplicaClient) {
	ctx := context.Background()
	write(t, c, 0, 1, 1)
	write(t, c, 0, 2, 2)
	write(t, c, 0, 3, 3)
	infos := list(t, c, 0, 0)
	missing := &ltx.FileInfo{Level: 0, MinTXID: 40, MaxTXID: 41}
	if err := c.DeleteLTXFiles(ctx, []*ltx.FileInfo{infos[0], infos[2], missing}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	checkRanges(t, list(t, c, 0, 0), [2]ltx.TXID{2, 2})
	if _, err := c.OpenLTXFile(ctx, 0, 1, 1, 0, 0); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("open deleted: err = %v, want ErrNotFound", err)
	}
	if err := c.DeleteLTXFiles(ctx, infos[:1]); err != nil {
		t.Fatalf("delete again: %v", err)
	}
	if err := c.DeleteLTXFiles(ctx, nil); err != nil {
		t.Fatalf("delete nothing: %v", err)
	}
	// A deleted name can be written again (retention then a new history).
	write(t, c, 0, 1, 1)
}

func testManyFiles(t *testing.T, c replica.ReplicaClient) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Parallel writes keep this cheap on remote backends.
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	next := make(chan ltx.TXID)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for txid := range next {
				b, err := newFile(txid, txid, ts(txid))
				if err == nil {
					_, err = c.WriteLTXFile(ctx, 3, txid, txid, bytes.NewReader(b))
				}
				if err != nil {
					once.Do(func() { firstErr = err; cancel() })
				}
			}
		}()
	}
	for txid := ltx.TXID(1); txid <= ManyFiles && ctx.Err() == nil; txid++ {
		next <- txid
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("write: %v", firstErr)
	}

	infos := list(t, c, 3, 0)
	if len(infos) != ManyFiles {
		t.Fatalf("listed %d files, want %d", len(infos), ManyFiles)
	}
	for i, info := range infos {
		if want := ltx.TXID(i + 1); info.MinTXID != want || info.MaxTXID != want || info.Level != 3 {
			t.Fatalf("file %d is %d/%s-%s, want 3/%s-%s", i, info.Level, info.MinTXID, info.MaxTXID, want, want)
		}
	}
	// Seeking past the first page must not restart from the beginning.
	infos = list(t, c, 3, 1001)
	if len(infos) != ManyFiles-1000 || infos[0].MinTXID != 1001 {
		t.Fatalf("seek 1001: listed %d files starting at %v, want %d from 1001", len(infos), first(infos), ManyFiles-1000)
	}
	checkRanges(t, list(t, c, 2, 0))
	checkRanges(t, list(t, c, 4, 0))
}

func first(infos []*ltx.FileInfo) any {
	if len(infos) == 0 {
		return nil
	}
	return infos[0].MinTXID
}

func testNotFound(t *testing.T, c replica.ReplicaClient) {
	ctx := context.Background()
	// Nothing written at all: the level's prefix or directory is missing.
	if _, err := c.OpenLTXFile(ctx, 0, 1, 1, 0, 0); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("open in empty replica: err = %v, want ErrNotFound", err)
	}
	checkRanges(t, list(t, c, 0, 0))
	checkRanges(t, list(t, c, replica.SnapshotLevel, 0))

	write(t, c, 0, 1, 5)
	for _, r := range [][3]int{{0, 1, 4}, {0, 2, 5}, {0, 6, 6}, {1, 1, 5}} {
		if _, err := c.OpenLTXFile(ctx, r[0], ltx.TXID(r[1]), ltx.TXID(r[2]), 0, 0); !errors.Is(err, replica.ErrNotFound) {
			t.Errorf("open missing %d/%d-%d: err = %v, want ErrNotFound", r[0], r[1], r[2], err)
		}
	}
	// A ranged read of a missing object too (restore fetches in ranges).
	if _, err := c.OpenLTXFile(ctx, 0, 6, 6, 10, 10); !errors.Is(err, replica.ErrNotFound) {
		t.Errorf("ranged open of missing object: err = %v, want ErrNotFound", err)
	}
}

func testContextCancel(t *testing.T, c replica.ReplicaClient) {
	write(t, c, 0, 1, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	if _, err := c.LTXFiles(ctx, 0, 0); err == nil {
		t.Error("LTXFiles with a cancelled context succeeded")
	}
	if rc, err := c.OpenLTXFile(ctx, 0, 1, 1, 0, 0); err == nil {
		// Some backends only notice on the first read; that must fail then.
		_, err = io.ReadAll(rc)
		rc.Close()
		if err == nil {
			t.Error("OpenLTXFile and read with a cancelled context succeeded")
		}
	}
	b := NewFile(t, 2, 2, ts(2))
	if _, err := c.WriteLTXFile(ctx, 0, 2, 2, bytes.NewReader(b)); err == nil {
		t.Error("WriteLTXFile with a cancelled context succeeded")
	}
	if _, err := c.OpenLTXFile(context.Background(), 0, 2, 2, 0, 0); !errors.Is(err, replica.ErrNotFound) {
		t.Errorf("object of a cancelled write: err = %v, want ErrNotFound", err)
	}
}

func testLevelIsolation(t *testing.T, c replica.ReplicaClient) {
	ctx := context.Background()
	// The same name on two levels holds different bytes and is no conflict.
	b0 := write(t, c, 0, 1, 4)
	b1 := NewFile(t, 1, 4, ts(4).Add(time.Millisecond))
	info, err := c.WriteLTXFile(ctx, 1, 1, 4, bytes.NewReader(b1))
	if err != nil {
		t.Fatalf("same name on another level: %v", err)
	}
	checkInfo(t, info, 1, b1)
	b9 := write(t, c, replica.SnapshotLevel, 1, 4)

	for level, want := range map[int][]byte{0: b0, 1: b1, replica.SnapshotLevel: b9} {
		infos := list(t, c, level, 0)
		checkRanges(t, infos, [2]ltx.TXID{1, 4})
		checkInfo(t, infos[0], level, want)
		if got := read(t, c, level, 1, 4, 0, 0); !bytes.Equal(got, want) {
			t.Errorf("level %d returned another level's bytes", level)
		}
	}
	for _, level := range []int{2, 8} {
		checkRanges(t, list(t, c, level, 0))
	}

	if err := c.DeleteLTXFiles(ctx, []*ltx.FileInfo{{Level: 0, MinTXID: 1, MaxTXID: 4}}); err != nil {
		t.Fatal(err)
	}
	checkRanges(t, list(t, c, 0, 0))
	checkRanges(t, list(t, c, 1, 0), [2]ltx.TXID{1, 4})
	checkRanges(t, list(t, c, replica.SnapshotLevel, 0), [2]ltx.TXID{1, 4})
}

func testCreatedAt(t *testing.T, c replica.ReplicaClient) {
	ctx := context.Background()
	// Timestamps with non-zero milliseconds, one far in the past, one in the
	// future: neither can be confused with the upload time.
	stamps := []time.Time{
		time.Date(2001, 2, 3, 4, 5, 6, 789_000_000, time.UTC),
		time.Now().Add(72 * time.Hour).Truncate(time.Millisecond),
	}
	for i, st := range stamps {
		txid := ltx.TXID(i + 1)
		b := NewFile(t, txid, txid, st)
		info, err := c.WriteLTXFile(ctx, 0, txid, txid, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		checkInfo(t, info, 0, b)
	}
	infos := list(t, c, 0, 0)
	if len(infos) != len(stamps) {
		t.Fatalf("listed %d files, want %d", len(infos), len(stamps))
	}
	for i, info := range infos {
		if !info.CreatedAt.Equal(stamps[i]) {
			t.Errorf("%s: CreatedAt = %s, want %s", info.MinTXID, info.CreatedAt, stamps[i])
		}
	}
}
