package checksum

import (
	"encoding/binary"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/wal"
)

// Sums tracks the checksum of every page of a database, so the rolling
// database checksum (ChecksumFlag | XOR of ltx.ChecksumPage over every page
// but the lock page, as Litestream and ltx define it) follows each change
// in O(pages changed) and never needs the file read back.
//
// Pages never written since the database grew past them are zeros, and
// the checksum of a zero page is affine in its number: zeroSum(pgno) =
// zeroSum(0) ^ G(pgno) with G linear (the page number is the only data the
// register sees, and shift_pageSize is linear). So the XOR over a range of
// zero pages is a closed form in the XOR of the range's numbers, and only
// written pages cost memory: 8 bytes each, in chunks allocated as pages
// are written (the size in an LTX file's header is not trusted before its
// checksum is, and a damaged one must not allocate gigabytes). Bit 63 (the
// checksum flag) is ignored until Checksum sets it.
//
// The zero value is an empty database with no page size; Reset or New
// gives it one. A Sums is not safe for concurrent use.
type Sums struct {
	h      *Hasher
	lock   uint32
	z0     uint64 // zeroSum(0)
	commit uint32
	w      uint64               // XOR over written pages of sum ^ zeroSum
	chunks map[uint32]*sumChunk // by pgno >> sumShift
	last   *sumChunk            // chunks[lastIx], the one pages go to
	lastIx uint32
}

const sumShift = 10

// sumChunk holds the sums of 1024 pages; 0 marks a page not written (a
// stored sum always has the checksum flag set, so is never 0).
type sumChunk [1 << sumShift]ltx.Checksum

// New returns the sums of an empty database of the page size (> 0).
func New(pageSize uint32) *Sums {
	s := new(Sums)
	s.Reset(pageSize)
	return s
}

// Reset empties the database and sets its page size (> 0): an LTX snapshot
// replaces everything, even the page size.
func (s *Sums) Reset(pageSize uint32) {
	h := HasherFor(pageSize)
	*s = Sums{h: h, lock: ltx.LockPgno(pageSize), chunks: make(map[uint32]*sumChunk)}
	s.z0 = ^h.page.apply(Update(^uint64(0), make([]byte, 4)))
}

// PageSize is the database's page size (0 before Reset).
func (s *Sums) PageSize() uint32 {
	if s.h == nil {
		return 0
	}
	return s.h.pageSize
}

// Pages is the database size in pages, the lock page included.
func (s *Sums) Pages() uint32 { return s.commit }

// Checksum is the rolling checksum of the database as tracked.
func (s *Sums) Checksum() ltx.Checksum {
	if s.h == nil {
		return ltx.ChecksumFlag
	}
	return ltx.ChecksumFlag | ltx.Checksum(s.zeroRange(s.commit)^s.w)
}

// PageSum is ltx.ChecksumPage(pgno, data) without its reflection-based
// binary.Write, which allocated on every page of every commit; a page of
// the database's page size takes the one-pass hasher.
func (s *Sums) PageSum(pgno uint32, data []byte) ltx.Checksum {
	if len(data) == int(s.h.pageSize) && s.h.fast() {
		return s.h.PageChecksum(pgno, s.h.Data(data))
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], pgno)
	return ltx.ChecksumFlag | ltx.Checksum(^Update(Update(^uint64(0), b[:]), data))
}

// Set records page pgno (>= 1) as holding a page whose checksum is sum. The
// lock page is never part of the checksum: setting it does nothing, not
// even grow the database. Setting a page past the end grows the database
// to it; the pages grown past read as zeros.
func (s *Sums) Set(pgno uint32, sum ltx.Checksum) { s.set(pgno, sum, nil) }

func (s *Sums) set(pgno uint32, sum ltx.Checksum, u *Undo) {
	if pgno == 0 {
		panic("checksum: Set of page 0")
	}
	if pgno == s.lock {
		return
	}
	s.commit = max(s.commit, pgno)
	s.put(pgno, sum|ltx.ChecksumFlag, u)
}

// put stores v (0: not written) as page pgno's sum, keeping w, and notes
// the old value in u when there is one.
func (s *Sums) put(pgno uint32, v ltx.Checksum, u *Undo) {
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
	old := s.last[i]
	if u != nil {
		u.changed = append(u.changed, pageSumAt{pgno, old})
	}
	// w holds sum ^ zeroSum of each written page; a rewrite swaps the sums
	// and skips the zeroSum, which would cancel.
	switch {
	case old == v:
	case old == 0:
		s.w ^= uint64(v) ^ s.zeroSum(pgno)
	case v == 0:
		s.w ^= uint64(old) ^ s.zeroSum(pgno)
	default:
		s.w ^= uint64(old ^ v)
	}
	s.last[i] = v
}

// Truncate sets the database size to commit pages. Pages it grows by read
// as zeros until set, whatever they held before a shrink.
func (s *Sums) Truncate(commit uint32) { s.truncate(commit, nil) }

func (s *Sums) truncate(commit uint32, u *Undo) {
	if commit < s.commit {
		for ix, c := range s.chunks {
			first := ix << sumShift // the pgno of c[0]; page 0 never is one
			if first+uint32(len(c))-1 <= commit {
				continue
			}
			for i, sum := range c {
				if pgno := first + uint32(i); pgno > commit && sum != 0 {
					if u != nil {
						u.changed = append(u.changed, pageSumAt{pgno, sum})
					}
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

// Undo holds what Undo needs to revert the last Apply. One is reused across
// commits so applying allocates nothing once it has grown.
type Undo struct {
	commit  uint32
	w       uint64
	changed []pageSumAt // the old value of each entry changed, in order
}

type pageSumAt struct {
	pgno uint32
	sum  ltx.Checksum // 0: not written
}

// Apply records a committed transaction's pages and its size in pages; u
// receives what Undo needs.
func (s *Sums) Apply(pages []wal.Page, commit uint32, u *Undo) {
	u.commit, u.w, u.changed = s.commit, s.w, u.changed[:0]
	for _, p := range pages {
		s.set(p.Pgno, s.PageSum(p.Pgno, p.Data), u)
	}
	s.truncate(commit, u)
}

// Undo reverts the last Apply (for a transaction that could not be staged):
// the sums are exactly as before it.
func (s *Sums) Undo(u *Undo) {
	// Backwards: an entry changed twice gets its first old value.
	for i := len(u.changed) - 1; i >= 0; i-- {
		c := u.changed[i]
		s.putRaw(c.pgno, c.sum)
	}
	s.commit, s.w = u.commit, u.w
}

// putRaw stores v as page pgno's sum without touching w: Undo restores w
// whole.
func (s *Sums) putRaw(pgno uint32, v ltx.Checksum) {
	ix := pgno >> sumShift
	c := s.chunks[ix]
	if c == nil {
		if v == 0 {
			return
		}
		c = new(sumChunk)
		s.chunks[ix] = c
	}
	c[pgno&(1<<sumShift-1)] = v
	s.last = nil
}

// zeroSum is the page checksum of a zero page, but for bit 63.
func (s *Sums) zeroSum(pgno uint32) uint64 {
	return s.z0 ^ s.g(pgno)
}

// g is the linear part of zeroSum.
func (s *Sums) g(x uint32) uint64 {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], x)
	return s.h.page.apply(Update(0, b[:]))
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
func (s *Sums) zeroRange(n uint32) uint64 {
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
