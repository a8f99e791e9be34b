package litefs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/wal"
)

// pageSums keeps one CRC-64 per page so that a commit updates the rolling
// database checksum in O(pages written) instead of re-reading the database.
// The rolling checksum is ChecksumFlag | XOR of ltx.ChecksumPage over every
// page but the lock page, as Litestream and ltx define it.
type pageSums struct {
	pageSize uint32
	sums     []ltx.Checksum // index pgno-1; 0 for the lock page
	xor      ltx.Checksum
	hasher   hash.Hash64
	zero     []byte
}

func newPageSums(pageSize uint32) *pageSums {
	return &pageSums{pageSize: pageSize, hasher: ltx.NewHasher()}
}

// Checksum is the rolling checksum of the database as tracked.
func (s *pageSums) Checksum() ltx.Checksum { return ltx.ChecksumFlag | s.xor }

// pageSum is ltx.ChecksumPage without its reflection-based binary.Write,
// which allocated on every page of every commit.
func (s *pageSums) pageSum(pgno uint32, data []byte) ltx.Checksum {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], pgno)
	s.hasher.Reset()
	_, _ = s.hasher.Write(b[:])
	_, _ = s.hasher.Write(data)
	return ltx.ChecksumFlag | ltx.Checksum(s.hasher.Sum64())
}

// set records a page's checksum. Pages the database grows past without
// writing them read as zeros, so they are counted as zero pages.
func (s *pageSums) set(pgno uint32, sum ltx.Checksum) {
	lock := ltx.LockPgno(s.pageSize)
	if pgno == lock {
		return
	}
	for n := uint32(len(s.sums)) + 1; n < pgno; n++ {
		s.grow(n, lock)
	}
	if uint32(len(s.sums)) < pgno {
		s.sums = append(s.sums, 0)
	}
	s.xor ^= s.sums[pgno-1] &^ ltx.ChecksumFlag
	s.sums[pgno-1] = sum
	s.xor ^= sum &^ ltx.ChecksumFlag
}

func (s *pageSums) grow(pgno, lock uint32) {
	var sum ltx.Checksum
	if pgno != lock {
		if len(s.zero) != int(s.pageSize) {
			s.zero = make([]byte, s.pageSize)
		}
		sum = s.pageSum(pgno, s.zero)
		s.xor ^= sum &^ ltx.ChecksumFlag
	}
	s.sums = append(s.sums, sum)
}

// truncate sets the database size to commit pages.
func (s *pageSums) truncate(commit uint32) {
	for uint32(len(s.sums)) > commit {
		s.xor ^= s.sums[len(s.sums)-1] &^ ltx.ChecksumFlag
		s.sums = s.sums[:len(s.sums)-1]
	}
	lock := ltx.LockPgno(s.pageSize)
	for n := uint32(len(s.sums)) + 1; n <= commit; n++ {
		s.grow(n, lock)
	}
}

func (s *pageSums) clone() *pageSums {
	c := *s
	c.sums = append([]ltx.Checksum(nil), s.sums...)
	c.hasher = ltx.NewHasher()
	return &c
}

// readDBHeader returns the page size and the number of pages of a database
// file from its 100-byte header. ok is false for an empty or missing file.
func readDBHeader(path string) (pageSize uint32, ok bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	} else if err != nil {
		return 0, false, err
	}
	defer f.Close()
	hdr := make([]byte, 100)
	if _, err := io.ReadFull(f, hdr); errors.Is(err, io.EOF) {
		return 0, false, nil
	} else if err != nil {
		return 0, false, fmt.Errorf("read database header of %s: %w", path, err)
	}
	if string(hdr[:16]) != "SQLite format 3\x00" {
		return 0, false, fmt.Errorf("%s is not a SQLite database (bad header)", path)
	}
	pageSize = uint32(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	return pageSize, true, nil
}

// sumFile computes the per-page checksums of a database file, whose size
// decides the page count.
func sumFile(path string, pageSize uint32) (*pageSums, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := newPageSums(pageSize)
	buf := make([]byte, pageSize)
	for pgno := uint32(1); ; pgno++ {
		if _, err := io.ReadFull(f, buf); errors.Is(err, io.EOF) {
			break
		} else if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%s: size is not a multiple of the page size %d", path, pageSize)
		} else if err != nil {
			return nil, fmt.Errorf("checksum %s: %w", path, err)
		}
		s.set(pgno, s.pageSum(pgno, buf))
	}
	return s, nil
}

// sumUndo restores pageSums after a transaction that could not be staged.
type sumUndo struct {
	xor     ltx.Checksum
	n       int
	changed []pageSumAt
}

type pageSumAt struct {
	pgno uint32
	sum  ltx.Checksum
}

// apply records a committed transaction's pages and size; u receives what
// undo needs (reused across calls to avoid allocating per commit).
func (s *pageSums) apply(pages []wal.Page, commit uint32, u *sumUndo) {
	u.xor, u.n, u.changed = s.xor, len(s.sums), u.changed[:0]
	for _, p := range pages {
		if int(p.Pgno) <= len(s.sums) {
			u.changed = append(u.changed, pageSumAt{p.Pgno, s.sums[p.Pgno-1]})
		}
		s.set(p.Pgno, s.pageSum(p.Pgno, p.Data))
	}
	s.truncate(commit)
}

// undo reverts the last apply. Shrinking only reslices, so the old tail is
// still in the backing array; growth may reallocate but copies the prefix.
func (s *pageSums) undo(u *sumUndo) {
	if cap(s.sums) >= u.n {
		s.sums = s.sums[:u.n]
	}
	for _, c := range u.changed {
		s.sums[c.pgno-1] = c.sum
	}
	s.xor = u.xor
}
