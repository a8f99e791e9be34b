package replica

import (
	"encoding/binary"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"github.com/superfly/ltx"
)

// DatabaseChecksum computes the rolling checksum of a database file:
// ChecksumFlag | XOR of ltx.ChecksumPage(pgno, page) over every page but the
// lock page, the value an LTX file's PostApplyChecksum holds. The page size
// comes from the database header (bytes 16-17, 1 meaning 65536). An empty
// file has the checksum of an empty database, ChecksumFlag.
func DatabaseChecksum(path string) (ltx.Checksum, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("database checksum: %w", err)
	}
	defer f.Close()

	hdr := make([]byte, 18)
	if n, err := io.ReadFull(f, hdr); n == 0 && err == io.EOF {
		return ltx.ChecksumFlag, nil
	} else if err != nil {
		return 0, fmt.Errorf("database checksum: read header of %s: %w", path, err)
	}
	pageSize := uint32(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if !ltx.IsValidPageSize(pageSize) {
		return 0, fmt.Errorf("database checksum: %s: invalid page size %d in header", path, pageSize)
	}
	chk, err := fileChecksum(f, pageSize)
	if err != nil {
		return 0, fmt.Errorf("database checksum: %s: %w", path, err)
	}
	return chk, nil
}

// parallelChecksumBytes is the file size from which fileChecksum uses several
// workers. A variable for tests.
var parallelChecksumBytes int64 = 64 << 20

// fileChecksum checksums f with a known page size. Large files are hashed by
// several workers: XOR does not care about order. (Restore does not read its
// output back: it keeps the checksum of every page as it writes it.)
func fileChecksum(f *os.File, pageSize uint32) (ltx.Checksum, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Size()%int64(pageSize) != 0 {
		return 0, fmt.Errorf("size %d is not a whole number of %d-byte pages", fi.Size(), pageSize)
	}
	n := uint64(fi.Size()) / uint64(pageSize)
	workers := uint64(1)
	if fi.Size() >= parallelChecksumBytes {
		workers = uint64(min(runtime.GOMAXPROCS(0), 8))
	}
	per := (n + workers - 1) / workers

	sums := make([]ltx.Checksum, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := uint64(0); w < workers && w*per < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sums[w], errs[w] = rangeChecksum(f, pageSize, w*per+1, min(n, (w+1)*per))
		}()
	}
	wg.Wait()
	chk := ltx.ChecksumFlag
	for w := range sums {
		if errs[w] != nil {
			return 0, errs[w]
		}
		chk ^= sums[w]
	}
	return ltx.ChecksumFlag | chk, nil
}

// rangeChecksum XORs the page checksums of pages first..last.
func rangeChecksum(f *os.File, pageSize uint32, first, last uint64) (ltx.Checksum, error) {
	h := hasherFor(pageSize)
	lock := uint64(ltx.LockPgno(pageSize))
	per := max(1, (1<<20)/uint64(pageSize)) // pages per read
	buf := make([]byte, per*uint64(pageSize))
	var chk ltx.Checksum
	for pgno := first; pgno <= last; {
		n := min(per, last-pgno+1)
		b := buf[:n*uint64(pageSize)]
		if _, err := f.ReadAt(b, int64(pgno-1)*int64(pageSize)); err != nil {
			return 0, fmt.Errorf("read pages %d-%d: %w", pgno, pgno+n-1, err)
		}
		for ; len(b) > 0; pgno, b = pgno+1, b[pageSize:] {
			if pgno != lock {
				chk ^= h.pageChecksum(uint32(pgno), h.data(b[:pageSize]))
			}
		}
	}
	return chk, nil
}

// CRC-64/ISO as LTX uses it (hash/crc64 with crc64.ISO), computed on the
// register: a CRC is the register's complement, and the register after
// bytes p starting from r is shift_len(p)(r) XOR data(p), where data(p) is
// the register after p starting from zero and shift_n is the linear map of
// feeding n zero bytes. So one pass over a page gives data(page), and both
// the file checksum (whose register has seen everything before the page)
// and the page checksum (whose register has seen only the page number) are
// a few table lookups away. The pass itself runs the four quarters of a
// page at once (independent chains keep more of the CPU busy) and joins
// them with shift_quarter: about twice the speed of hash/crc64's
// slicing-by-8 here.

// crcTables are slicing-by-8 tables: crcTables[0] is hash/crc64's ISO table
// and crcTables[k][b] the register after byte b then k zero bytes.
var crcTables = func() *[8][256]uint64 {
	t := new([8][256]uint64)
	t[0] = *crc64.MakeTable(crc64.ISO)
	for i := range 256 {
		crc := t[0][i]
		for k := 1; k < 8; k++ {
			crc = t[0][crc&0xff] ^ crc>>8
			t[k][i] = crc
		}
	}
	return t
}()

// crc8 feeds 8 bytes, x (little endian) already XORed with the register.
func crc8(t *[8][256]uint64, x uint64) uint64 {
	return t[7][uint8(x)] ^ t[6][uint8(x>>8)] ^ t[5][uint8(x>>16)] ^ t[4][uint8(x>>24)] ^
		t[3][uint8(x>>32)] ^ t[2][uint8(x>>40)] ^ t[1][uint8(x>>48)] ^ t[0][x>>56]
}

// crcUpdate feeds p to the register crc (not a CRC: no complement).
func crcUpdate(crc uint64, p []byte) uint64 {
	t := crcTables
	for len(p) >= 8 {
		crc = crc8(t, binary.LittleEndian.Uint64(p)^crc)
		p = p[8:]
	}
	for _, v := range p {
		crc = t[0][uint8(crc)^v] ^ crc>>8
	}
	return crc
}

// crcQuarters returns data() of each quarter of p, whose length must be a
// multiple of 32. The loads skip bounds checks (a quarter of the time):
// every offset read is below 4*q <= len(p), checked once.
func crcQuarters(p []byte) (c0, c1, c2, c3 uint64) {
	q := uintptr(len(p) / 4)
	if len(p)%32 != 0 || q == 0 {
		panic("crcQuarters: length not a multiple of 32")
	}
	t := crcTables
	base := unsafe.Pointer(unsafe.SliceData(p))
	for i := uintptr(0); i < q; i += 8 {
		// Little endian, as binary.LittleEndian.Uint64: the tables are
		// for bytes in file order from the low end of the word.
		x0 := le64(unsafe.Add(base, i)) ^ c0
		x1 := le64(unsafe.Add(base, q+i)) ^ c1
		x2 := le64(unsafe.Add(base, 2*q+i)) ^ c2
		x3 := le64(unsafe.Add(base, 3*q+i)) ^ c3
		c0, c1, c2, c3 = crc8(t, x0), crc8(t, x1), crc8(t, x2), crc8(t, x3)
	}
	return c0, c1, c2, c3
}

// le64 loads 8 bytes at ptr as binary.LittleEndian.Uint64 would.
func le64(ptr unsafe.Pointer) uint64 {
	return binary.LittleEndian.Uint64((*[8]byte)(ptr)[:])
}

// gf2Matrix is a linear map on registers: column i is the image of bit i.
type gf2Matrix [64]uint64

func (m *gf2Matrix) apply(x uint64) uint64 {
	var y uint64
	for i := 0; x != 0; i, x = i+1, x>>1 {
		if x&1 != 0 {
			y ^= m[i]
		}
	}
	return y
}

// shiftOp is shift_n as byte tables: shift_n(x) = XOR over the bytes b_k of
// x of t[k][b_k].
type shiftOp [8][256]uint64

// newShiftOp returns shift_n for n a power of two.
func newShiftOp(n int) *shiftOp {
	var m gf2Matrix // one zero byte
	for i := range m {
		x := uint64(1) << i
		m[i] = crcTables[0][x&0xff] ^ x>>8
	}
	for k := 1; k < n; k *= 2 {
		var sq gf2Matrix
		for i := range m {
			sq[i] = m.apply(m[i])
		}
		m = sq
	}
	op := new(shiftOp)
	for k := range op {
		for b := range 256 {
			op[k][b] = m.apply(uint64(b) << (8 * k))
		}
	}
	return op
}

func (op *shiftOp) apply(x uint64) uint64 {
	return op[0][byte(x)] ^ op[1][byte(x>>8)] ^ op[2][byte(x>>16)] ^ op[3][byte(x>>24)] ^
		op[4][byte(x>>32)] ^ op[5][byte(x>>40)] ^ op[6][byte(x>>48)] ^ op[7][byte(x>>56)]
}

// pageHasher computes data(page) once and derives from it the page
// checksum and the file-checksum register, for one page size.
type pageHasher struct {
	pageSize uint32
	quarter  *shiftOp // shift by pageSize/4
	page     *shiftOp // shift by pageSize
}

var hashers sync.Map // page size → *pageHasher

// hasherFor returns the (shared, immutable) hasher for a valid page size.
func hasherFor(pageSize uint32) *pageHasher {
	if h, ok := hashers.Load(pageSize); ok {
		return h.(*pageHasher)
	}
	h := &pageHasher{pageSize: pageSize, quarter: newShiftOp(int(pageSize / 4)), page: newShiftOp(int(pageSize))}
	v, _ := hashers.LoadOrStore(pageSize, h)
	return v.(*pageHasher)
}

// data returns data(p) for a page of exactly pageSize bytes: the quarters'
// registers joined as data(q0 q1) = shift_quarter(data(q0)) ^ data(q1).
func (h *pageHasher) data(p []byte) uint64 {
	c0, c1, c2, c3 := crcQuarters(p[:h.pageSize])
	op := h.quarter
	return op.apply(op.apply(op.apply(c0)^c1)^c2) ^ c3
}

// feed returns register r after a page whose data() is d.
func (h *pageHasher) feed(r, d uint64) uint64 { return h.page.apply(r) ^ d }

// pageChecksum is ltx.ChecksumPage(pgno, page) for a page whose data() is d.
func (h *pageHasher) pageChecksum(pgno uint32, d uint64) ltx.Checksum {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], pgno)
	return ltx.ChecksumFlag | ltx.Checksum(^h.feed(crcUpdate(^uint64(0), b[:]), d))
}

// pageSums tracks the checksum of every page of the database being built,
// so the database checksum never needs the file read back.
//
// Pages never written since the database grew past them are zeros, and
// the checksum of a zero page is affine in its number: zeroSum(pgno) =
// zeroSum(0) ^ G(pgno) with G linear (the page number is the only data the
// register sees, and shift_pageSize is linear). So the XOR over a range of
// zero pages is a closed form in the XOR of the range's numbers, and only
// written pages cost memory: 8 bytes each, in chunks allocated as pages
// are written (the size in a file's header is not trusted before its
// checksum is, and a damaged one must not allocate gigabytes). Bit 63 (the
// checksum flag) is ignored until checksum sets it.
type pageSums struct {
	h      *pageHasher
	lock   uint32
	z0     uint64 // zeroSum(0)
	commit uint32
	w      uint64               // XOR over written pages of sum ^ zeroSum
	chunks map[uint32]*sumChunk // by pgno >> sumShift
	last   *sumChunk            // chunks[lastIdx], the one pages go to
	lastIx uint32
}

const sumShift = 10

// sumChunk holds the sums of 1024 pages; 0 marks a page not written.
type sumChunk [1 << sumShift]ltx.Checksum

// reset empties the database and sets its page size.
func (s *pageSums) reset(h *pageHasher) {
	*s = pageSums{h: h, lock: ltx.LockPgno(h.pageSize), chunks: make(map[uint32]*sumChunk)}
	s.z0 = ^h.page.apply(crcUpdate(^uint64(0), make([]byte, 4)))
}

// zeroSum is pageChecksum of a zero page, but for bit 63.
func (s *pageSums) zeroSum(pgno uint32) uint64 {
	return s.z0 ^ s.g(pgno)
}

// g is the linear part of zeroSum.
func (s *pageSums) g(x uint32) uint64 {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], x)
	return s.h.page.apply(crcUpdate(0, b[:]))
}

// xorUpTo is 1 ^ 2 ^ ... ^ n.
func xorUpTo(n uint32) uint32 {
	switch n % 4 {
	case 0:
		return n
	case 1:
		return 1
	case 2:
		return n + 1
	}
	return 0
}

// zeroRange is the XOR of zeroSum over pages 1..n but the lock page.
func (s *pageSums) zeroRange(n uint32) uint64 {
	var z uint64
	if n%2 == 1 {
		z = s.z0
	}
	z ^= s.g(xorUpTo(n))
	if s.lock <= n {
		z ^= s.zeroSum(s.lock)
	}
	return z
}

// resize makes the database commit pages long. Pages it grows by read as
// zeros until written, whatever they held before a shrink.
func (s *pageSums) resize(commit uint32) {
	if commit < s.commit {
		for ix, c := range s.chunks {
			first := ix << sumShift // the pgno of c[0]; page 0 never is one
			if first+uint32(len(c))-1 <= commit {
				continue
			}
			for i, sum := range c {
				if pgno := first + uint32(i); pgno > commit && sum != 0 {
					s.w ^= uint64(sum) ^ s.zeroSum(pgno)
					c[i] = 0
				}
			}
			if first > commit {
				delete(s.chunks, ix)
				if s.last == c {
					s.last = nil
				}
			}
		}
	}
	s.commit = commit
}

// set records page pgno (<= the size, not the lock page) as written.
func (s *pageSums) set(pgno uint32, sum ltx.Checksum) {
	ix := pgno >> sumShift
	if s.last == nil || s.lastIx != ix {
		c := s.chunks[ix]
		if c == nil {
			c = new(sumChunk)
			s.chunks[ix] = c
		}
		s.last, s.lastIx = c, ix
	}
	i := pgno & (1<<sumShift - 1)
	old := uint64(s.last[i])
	if old == 0 {
		old = s.zeroSum(pgno)
	}
	s.w ^= old ^ uint64(sum)
	s.last[i] = sum
}

// checksum is the database checksum, as DatabaseChecksum would compute it.
func (s *pageSums) checksum() ltx.Checksum {
	if s.h == nil {
		return ltx.ChecksumFlag
	}
	return ltx.ChecksumFlag | ltx.Checksum(s.zeroRange(s.commit)^s.w)
}
