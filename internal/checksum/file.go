package checksum

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/superfly/ltx"
)

// headerPageSize decodes the page size a SQLite database header (at least
// 18 bytes) records at bytes 16-17, big endian, where 1 means 65536 (the
// field is 16 bits wide). It does not validate the size.
func headerPageSize(hdr []byte) uint32 {
	pageSize := uint32(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	return pageSize
}

// ReadDBHeader returns the page size of a database file from its 100-byte
// header. ok is false for an empty or missing file; a file that is neither
// empty nor a SQLite database, or whose header is cut short, is an error.
func ReadDBHeader(path string) (pageSize uint32, ok bool, err error) {
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
	return headerPageSize(hdr), true, nil
}

// SumFile computes the per-page checksums of a database file, whose size
// decides the page count; the page size is the caller's (from ReadDBHeader).
func SumFile(path string, pageSize uint32) (*Sums, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := New(pageSize)
	buf := make([]byte, pageSize)
	for pgno := uint32(1); ; pgno++ {
		if _, err := io.ReadFull(f, buf); errors.Is(err, io.EOF) {
			break
		} else if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%s: size is not a multiple of the page size %d", path, pageSize)
		} else if err != nil {
			return nil, fmt.Errorf("checksum %s: %w", path, err)
		}
		s.Set(pgno, s.PageSum(pgno, buf))
	}
	return s, nil
}

// DatabaseChecksum computes the rolling checksum of a database file:
// ChecksumFlag | XOR of ltx.ChecksumPage(pgno, page) over every page but the
// lock page, the value an LTX file's PostApplyChecksum holds. The page size
// comes from the database header (bytes 16-17, 1 meaning 65536). An empty
// file has the checksum of an empty database, ChecksumFlag. Unlike
// ReadDBHeader it does not insist on the SQLite magic: it checksums any
// file of whole pages, as tests of restored images need.
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
	pageSize := headerPageSize(hdr)
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
	h := HasherFor(pageSize)
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
				chk ^= h.PageChecksum(uint32(pgno), h.Data(b[:pageSize]))
			}
		}
	}
	return chk, nil
}
