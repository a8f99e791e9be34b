package checksum

import (
	"encoding/binary"
	"hash/crc64"
	"sync"
	"unsafe"

	"github.com/superfly/ltx"
)

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

// Update feeds p to the CRC-64/ISO register crc and returns the register.
// It is a register, not a CRC: start from ^0 and complement the result to
// get hash/crc64's checksum; keeping the register lets a caller feed the
// bytes of one LTX file in pieces, in file order.
func Update(crc uint64, p []byte) uint64 {
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

// then is the map of m followed by n.
func (m *gf2Matrix) then(n *gf2Matrix) gf2Matrix {
	var r gf2Matrix
	for i := range m {
		r[i] = n.apply(m[i])
	}
	return r
}

// shiftOp is shift_n as byte tables: shift_n(x) = XOR over the bytes b_k of
// x of t[k][b_k].
type shiftOp [8][256]uint64

// newShiftOp returns shift_n, by square and multiply on the map of one zero
// byte. Any n works: the page sizes of valid databases are powers of two,
// but Sums must also stay right for whatever size a damaged header names.
func newShiftOp(n int) *shiftOp {
	var step gf2Matrix // one zero byte
	for i := range step {
		x := uint64(1) << i
		step[i] = crcTables[0][x&0xff] ^ x>>8
	}
	var m gf2Matrix // shift_0, the identity
	for i := range m {
		m[i] = 1 << i
	}
	for ; n > 0; n >>= 1 {
		if n&1 != 0 {
			m = m.then(&step)
		}
		step = step.then(&step)
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

// Hasher computes data(page) once and derives from it the page checksum
// and the file-checksum register, for one page size.
type Hasher struct {
	pageSize uint32
	quarter  *shiftOp // shift by pageSize/4
	page     *shiftOp // shift by pageSize
}

var hashers sync.Map // page size → *Hasher

// HasherFor returns the (shared, immutable) hasher for a page size. Building
// one costs a few hundred microseconds of tables, so hashers are cached.
func HasherFor(pageSize uint32) *Hasher {
	if h, ok := hashers.Load(pageSize); ok {
		return h.(*Hasher)
	}
	h := &Hasher{pageSize: pageSize, quarter: newShiftOp(int(pageSize / 4)), page: newShiftOp(int(pageSize))}
	v, _ := hashers.LoadOrStore(pageSize, h)
	return v.(*Hasher)
}

// PageSize is the page size the hasher is for.
func (h *Hasher) PageSize() uint32 { return h.pageSize }

// fast reports whether Data works for this page size: every valid SQLite
// page size does.
func (h *Hasher) fast() bool { return h.pageSize >= 32 && h.pageSize%32 == 0 }

// Data returns data(p) for a page of exactly pageSize bytes, a multiple of
// 32 as every valid page size is: the quarters' registers joined as
// data(q0 q1) = shift_quarter(data(q0)) ^ data(q1).
func (h *Hasher) Data(p []byte) uint64 {
	c0, c1, c2, c3 := crcQuarters(p[:h.pageSize])
	op := h.quarter
	return op.apply(op.apply(op.apply(c0)^c1)^c2) ^ c3
}

// Feed returns register r after a page whose data() is d.
func (h *Hasher) Feed(r, d uint64) uint64 { return h.page.apply(r) ^ d }

// PageChecksum is ltx.ChecksumPage(pgno, page) for a page whose data() is d.
func (h *Hasher) PageChecksum(pgno uint32, d uint64) ltx.Checksum {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], pgno)
	return ltx.ChecksumFlag | ltx.Checksum(^h.Feed(Update(^uint64(0), b[:]), d))
}
