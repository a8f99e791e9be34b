package replica

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
		if got, want := ^crcUpdate(^uint64(0), p), crc64.Checksum(p, tab); got != want {
			t.Errorf("len %d: crcUpdate gives %x, hash/crc64 %x", n, got, want)
		}
		// The register splits at any point: the CRC's linearity.
		for _, k := range []int{0, n / 3, n / 2, n} {
			reg := crcUpdate(crcUpdate(^uint64(0), p[:k]), p[k:])
			if ^reg != crc64.Checksum(p, tab) {
				t.Errorf("len %d split at %d: wrong", n, k)
			}
		}
	}
}

func TestPageHasher(t *testing.T) {
	r := rand.NewChaCha8([32]byte{8})
	for _, pageSize := range []uint32{512, 1024, 4096, 65536} {
		h := hasherFor(pageSize)
		if hasherFor(pageSize) != h {
			t.Fatal("hasherFor does not cache")
		}
		for _, page := range [][]byte{randBytes(r, int(pageSize)), make([]byte, pageSize)} {
			d := h.data(page)
			for _, pgno := range []uint32{1, 2, 255, 256, 1 << 20, 0xfffffffe} {
				if got, want := h.pageChecksum(pgno, d), ltx.ChecksumPage(pgno, page); got != want {
					t.Fatalf("page size %d pgno %d: pageChecksum %s, ltx.ChecksumPage %s", pageSize, pgno, got, want)
				}
			}
			// The file register: header bytes, then the page.
			prefix := randBytes(r, 10)
			want := crcUpdate(crcUpdate(^uint64(0), prefix), page)
			if got := h.feed(crcUpdate(^uint64(0), prefix), d); got != want {
				t.Fatalf("page size %d: feed gives %x, want %x", pageSize, got, want)
			}
		}
	}
}

func TestPageSums(t *testing.T) {
	const pageSize = 512
	h := hasherFor(pageSize)
	lock := ltx.LockPgno(pageSize)
	r := rand.NewChaCha8([32]byte{9})
	// The model against a sparse image through grow, write, shrink, regrow,
	// across the lock page. Unwritten pages are zeros (TestPageHasher checks
	// pageChecksum of a zero page against ltx.ChecksumPage).
	written := map[uint32][]byte{}
	var commit uint32
	var s pageSums
	s.reset(h)
	resize := func(n uint32) {
		for pgno := range written {
			if pgno > n {
				delete(written, pgno)
			}
		}
		commit = n
		s.resize(n)
	}
	write := func(pgno uint32) {
		p := randBytes(r, pageSize)
		written[pgno] = p
		s.set(pgno, h.pageChecksum(pgno, h.data(p)))
	}
	check := func(step string) {
		t.Helper()
		want := ltx.ChecksumFlag
		for pgno := uint32(1); pgno <= commit; pgno++ {
			switch p, ok := written[pgno]; {
			case pgno == lock:
			case ok:
				want ^= ltx.ChecksumPage(pgno, p)
			default:
				want ^= h.pageChecksum(pgno, 0)
			}
		}
		if got := s.checksum(); got != ltx.ChecksumFlag|want {
			t.Fatalf("%s: pageSums %s, image %s", step, got, ltx.ChecksumFlag|want)
		}
	}
	check("empty")
	resize(8)
	write(1)
	write(5)
	check("grown")
	resize(3)
	check("shrunk")
	resize(lock + 3)
	write(lock + 2)
	write(2)
	check("regrown past the lock page")
	resize(lock - 1)
	check("shrunk below the lock page")
	s.reset(h)
	commit, written = 0, map[uint32][]byte{}
	check("reset")
}

// Random grows, shrinks and writes against a dense model.
func TestPageSumsRandom(t *testing.T) {
	const pageSize = 4096
	h := hasherFor(pageSize)
	r := rand.New(rand.NewPCG(1, 2))
	var s pageSums
	s.reset(h)
	var img []ltx.Checksum // by pgno-1: the page's checksum
	for step := range 2000 {
		switch op := r.IntN(10); {
		case op == 0:
			n := uint32(r.IntN(5000))
			for uint32(len(img)) < n {
				img = append(img, h.pageChecksum(uint32(len(img)+1), 0))
			}
			img = img[:n]
			s.resize(n)
		case len(img) > 0:
			pgno := uint32(r.IntN(len(img))) + 1
			sum := ltx.ChecksumFlag | ltx.Checksum(r.Uint64())
			img[pgno-1] = sum
			s.set(pgno, sum)
		}
		want := ltx.ChecksumFlag
		for _, sum := range img {
			want ^= sum
		}
		if got := s.checksum(); got != ltx.ChecksumFlag|want {
			t.Fatalf("step %d: %s, want %s", step, got, ltx.ChecksumFlag|want)
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
	h := hasherFor(pageSize)
	dst := make([]byte, pageSize)
	var sink uint64
	b.Run("UncompressThenCRC", func(b *testing.B) {
		b.SetBytes(pageSize)
		for b.Loop() {
			_, _ = lz4.UncompressBlock(src, dst)
			sink ^= h.data(dst)
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
