package replica_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/replicatest"
)

// bigChain is a history of a database of 4 KiB pages large enough to span
// several blocks, segments and chunks: incompressible and compressible
// pages, long runs and scattered pages, a shrink and a regrowth.
func bigChain(t testing.TB) *replicatest.Chain {
	t.Helper()
	const pageSize = 4096
	ch := replicatest.NewChain(pageSize)
	r := rand.New(rand.NewPCG(5, 6))
	page := func(pgno uint32) []byte {
		b := make([]byte, pageSize)
		switch pgno % 5 {
		case 0: // zeros but the page number
			binary.BigEndian.PutUint32(b, pgno)
		case 1: // repetitive
			for i := range b {
				b[i] = byte(i / 64)
			}
			binary.BigEndian.PutUint32(b[100:], pgno^r.Uint32())
		default: // incompressible
			for i := 0; i < len(b); i += 8 {
				binary.LittleEndian.PutUint64(b[i:], r.Uint64())
			}
		}
		return b
	}
	commit := func(n uint32, pgnos ...uint32) {
		pages := map[uint32][]byte{}
		for _, pgno := range pgnos {
			pages[pgno] = page(pgno)
		}
		if _, err := ch.Commit(commitTime(ch.TXID()+1), n, pages); err != nil {
			t.Fatal(err)
		}
	}
	run := func(from, to uint32) []uint32 {
		var a []uint32
		for p := from; p <= to; p++ {
			a = append(a, p)
		}
		return a
	}
	commit(1500, run(1, 1500)...)                         // 1: ~6 MiB
	commit(1500, 3, 700, 701, 702, 1499)                  // 2: scattered
	commit(1800, append(run(900, 1200), 1800)...)         // 3: a long run, and growth past pages never written
	commit(600, 1, 599, 600)                              // 4: shrink
	commit(1700, append(run(601, 650), 1650, 1700)...)    // 5: regrow: 651..1649 read as zeros
	commit(1700, run(2, 1200)...)                         // 6: most of it again
	commit(1700, 5, 10, 15, 20, 25, 30, 35, 40, 45, 1699) // 7
	return ch
}

func TestRestoreBigChain(t *testing.T) {
	ch := bigChain(t)
	c := newFileReplica(t)
	writeChain(t, c, ch, "9:1-2", "0:3-3", "0:4-4", "1:5-6", "0:7-7")
	for _, tc := range []struct {
		chunk       int64
		parallelism int
	}{{0, 8}, {0, 1}, {300 << 10, 3}, {100<<10 + 7, 8}, {4099, 2}} {
		func() {
			if tc.chunk != 0 {
				defer replica.SetChunkSize(tc.chunk)()
			}
			for _, txid := range []ltx.TXID{0, 4, 6} {
				want := txid
				if want == 0 {
					want = 7
				}
				restoreOK(t, c, ch, replica.RestoreOptions{TXID: txid, Parallelism: tc.parallelism}, want)
			}
		}()
	}
	// Through tmpfs, where O_DIRECT is refused at open, if there is one.
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "litefs-restore-")
		if err != nil {
			t.Skip(err)
		}
		defer os.RemoveAll(dir)
		restoreOK(t, c, ch, replica.RestoreOptions{OutputPath: filepath.Join(dir, "db")}, 7)
	}
}

// Damage anywhere in a file of many segments fails the restore by name.
func TestRestoreBigChainDamaged(t *testing.T) {
	ch := bigChain(t)
	orig, err := ch.File(1, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"FlipEarly", func(b []byte) []byte { b[ltx.HeaderSize+5000] ^= 0x20; return b }},
		{"FlipMiddle", func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b }},
		{"FlipLate", func(b []byte) []byte { b[len(b)-9000] ^= 0x80; return b }},
		{"FlipPageSize", func(b []byte) []byte { b[ltx.HeaderSize+ltx.PageHeaderSize+3] ^= 0x01; return b }},
		{"TruncateMiddle", func(b []byte) []byte { return b[:len(b)/2] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFileReplica(t)
			writeChain(t, c, ch, "9:1-2", "0:3-3")
			if err := os.WriteFile(c.Path(replica.SnapshotLevel, 1, 2), tc.damage(bytes.Clone(orig)), 0o644); err != nil {
				t.Fatal(err)
			}
			restoreFails(t, c, replica.RestoreOptions{}, "9/0000000000000001-0000000000000002.ltx", nil)
		})
	}
}

// flakyClient fails the first read of every chunk (offsets that are
// multiples of chunk) after half of it, and records the offsets of the
// reads.
type flakyClient struct {
	replica.ReplicaClient
	chunk   int64
	mu      sync.Mutex
	failed  map[[2]int64]bool
	offsets []int64
}

var errFlaky = errors.New("connection reset (injected)")

func (c *flakyClient) OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, offset, size int64) (io.ReadCloser, error) {
	rc, err := c.ReplicaClient.OpenLTXFile(ctx, level, minTXID, maxTXID, offset, size)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offsets = append(c.offsets, offset)
	key := [2]int64{int64(minTXID), offset}
	if c.failed[key] || size < 2 || offset%c.chunk != 0 {
		return rc, nil
	}
	c.failed[key] = true
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, size/2), errReader{errFlaky}), rc}, nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// A read that breaks off resumes where it stopped.
func TestRestoreResumesRangedRead(t *testing.T) {
	defer replica.SetChunkSize(1 << 20)()
	ch := bigChain(t)
	fc := newFileReplica(t)
	writeChain(t, fc, ch, "9:1-7")
	c := &flakyClient{ReplicaClient: fc, chunk: 1 << 20, failed: map[[2]int64]bool{}}
	restoreOK(t, c, ch, replica.RestoreOptions{}, 7)
	resumed := 0
	for _, off := range c.offsets {
		if off%(1<<20) != 0 {
			resumed++
		}
	}
	if resumed == 0 {
		t.Fatalf("no read resumed inside a chunk: offsets %v", c.offsets)
	}
}

// encodeMixed encodes a file the way older LTX writers did where frame(i)
// says so (each page an LZ4 frame, no size prefix), else as ltx.Encoder
// does (an LZ4 block after a size).
func encodeMixed(t *testing.T, hdr ltx.Header, pages []replicatest.Page, post ltx.Checksum, frame func(i int) bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	h := crc64.New(crc64.MakeTable(crc64.ISO))
	b, err := hdr.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(b)
	h.Write(b)
	var index []byte
	for i, p := range pages {
		off := buf.Len()
		ph := ltx.PageHeader{Pgno: p.Pgno}
		if !frame(i) {
			ph.Flags = ltx.PageHeaderFlagSize
		}
		b, _ := ph.MarshalBinary()
		buf.Write(b)
		h.Write(b)
		if frame(i) {
			zw := lz4.NewWriter(&buf)
			if _, err := zw.Write(p.Data); err != nil {
				t.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
		} else {
			block := make([]byte, lz4.CompressBlockBound(len(p.Data)))
			var c lz4.Compressor
			n, err := c.CompressBlock(p.Data, block)
			if err != nil {
				t.Fatal(err)
			}
			size := binary.BigEndian.AppendUint32(nil, uint32(n))
			buf.Write(size)
			h.Write(size)
			buf.Write(block[:n])
		}
		h.Write(p.Data)
		index = binary.AppendUvarint(index, uint64(p.Pgno))
		index = binary.AppendUvarint(index, uint64(off))
		index = binary.AppendUvarint(index, uint64(buf.Len()-off))
	}
	end := make([]byte, ltx.PageHeaderSize)
	buf.Write(end)
	h.Write(end)
	index = binary.AppendUvarint(index, 0)
	index = binary.BigEndian.AppendUint64(index, uint64(len(index)))
	buf.Write(index)
	h.Write(index)
	trailer := binary.BigEndian.AppendUint64(nil, uint64(post))
	buf.Write(trailer)
	h.Write(trailer)
	buf.Write(binary.BigEndian.AppendUint64(nil, uint64(ltx.ChecksumFlag|ltx.Checksum(h.Sum64()))))
	return buf.Bytes()
}

// Pages stored as LZ4 frames (older LTX files), alone or mixed with blocks.
func TestRestoreFramePages(t *testing.T) {
	ch := syntheticChain(t, 4096)
	for name, frame := range map[string]func(int) bool{
		"AllFrames": func(int) bool { return true },
		"Mixed":     func(i int) bool { return i%2 == 0 },
	} {
		t.Run(name, func(t *testing.T) {
			c := newFileReplica(t)
			for _, f := range [][2]ltx.TXID{{1, 3}, {4, 8}} {
				b := encodeMixed(t, ch.Header(f[0], f[1]), ch.Pages(f[0], f[1]), ch.PostApplyChecksum(f[1]), frame)
				// What ltx.Decoder accepts, so the encoding is right.
				if err := ltx.NewDecoder(bytes.NewReader(b)).Verify(); err != nil {
					t.Fatalf("ltx.Decoder rejects the test file: %v", err)
				}
				level := 0
				if f[0] == 1 {
					level = replica.SnapshotLevel
				}
				if _, err := c.WriteLTXFile(context.Background(), level, f[0], f[1], bytes.NewReader(b)); err != nil {
					t.Fatal(err)
				}
			}
			restoreOK(t, c, ch, replica.RestoreOptions{}, 8)
			func() {
				defer replica.SetChunkSize(7)()
				restoreOK(t, c, ch, replica.RestoreOptions{Parallelism: 3}, 8)
			}()
		})
	}
}
