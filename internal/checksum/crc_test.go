package checksum

import (
	"hash/crc64"
	"math/rand/v2"
	"testing"

	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"
)

func randBytes(r *rand.ChaCha8, n int) []byte {
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

func TestCRCUpdateMatchesHashCRC64(t *testing.T) {
	r := rand.NewChaCha8([32]byte{7})
	tab := crc64.MakeTable(crc64.ISO)
	for _, n := range []int{0, 1, 7, 15, 16, 17, 100, 512, 4096, 4099} {
		p := randBytes(r, n)
		if got, want := ^Update(^uint64(0), p), crc64.Checksum(p, tab); got != want {
			t.Errorf("len %d: Update gives %x, hash/crc64 %x", n, got, want)
		}
		// The register splits at any point: the CRC's linearity.
		for _, k := range []int{0, n / 3, n / 2, n} {
			reg := Update(Update(^uint64(0), p[:k]), p[k:])
			if ^reg != crc64.Checksum(p, tab) {
				t.Errorf("len %d split at %d: wrong", n, k)
			}
		}
	}
}

func TestPageHasher(t *testing.T) {
	r := rand.NewChaCha8([32]byte{8})
	for _, pageSize := range []uint32{512, 1024, 4096, 65536} {
		h := HasherFor(pageSize)
		if HasherFor(pageSize) != h {
			t.Fatal("HasherFor does not cache")
		}
		if h.PageSize() != pageSize {
			t.Fatalf("PageSize %d, want %d", h.PageSize(), pageSize)
		}
		for _, page := range [][]byte{randBytes(r, int(pageSize)), make([]byte, pageSize)} {
			d := h.Data(page)
			for _, pgno := range []uint32{1, 2, 255, 256, 1 << 20, 0xfffffffe} {
				if got, want := h.PageChecksum(pgno, d), ltx.ChecksumPage(pgno, page); got != want {
					t.Fatalf("page size %d pgno %d: PageChecksum %s, ltx.ChecksumPage %s", pageSize, pgno, got, want)
				}
			}
			// The file register: header bytes, then the page.
			prefix := randBytes(r, 10)
			want := Update(Update(^uint64(0), prefix), page)
			if got := h.Feed(Update(^uint64(0), prefix), d); got != want {
				t.Fatalf("page size %d: Feed gives %x, want %x", pageSize, got, want)
			}
		}
	}
}

// shift_n is feeding n zero bytes for any n, not only the powers of two of
// valid page sizes: Sums relies on it for whatever size a header names.
func TestShiftOpAnyLength(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 3, 8, 100, 512, 1000, 3000, 4096, 65535, 65536} {
		op := newShiftOp(n)
		for range 4 {
			reg := r.Uint64()
			if got, want := op.apply(reg), Update(reg, make([]byte, n)); got != want {
				t.Fatalf("shift_%d(%x) = %x, feeding zeros gives %x", n, reg, got, want)
			}
		}
	}
}

func BenchmarkDecodePage(b *testing.B) {
	const pageSize = 4096
	r := rand.NewChaCha8([32]byte{11})
	page := randBytes(r, pageSize)
	var c lz4.Compressor
	buf := make([]byte, lz4.CompressBlockBound(pageSize))
	n, _ := c.CompressBlock(page, buf)
	src := buf[:n]
	h := HasherFor(pageSize)
	dst := make([]byte, pageSize)
	var sink uint64
	b.Run("UncompressThenCRC", func(b *testing.B) {
		b.SetBytes(pageSize)
		for b.Loop() {
			_, _ = lz4.UncompressBlock(src, dst)
			sink ^= h.Data(dst)
		}
	})
	b.Run("HashCRC64", func(b *testing.B) {
		b.SetBytes(pageSize)
		tab := crc64.MakeTable(crc64.ISO)
		for b.Loop() {
			sink ^= crc64.Checksum(dst, tab)
		}
	})
	_ = sink
}
