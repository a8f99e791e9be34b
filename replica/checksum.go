package replica

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

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

// fileChecksum checksums f with a known page size; restore uses it with the
// LTX page size so the result never depends on page 1's contents. Large
// files are hashed by several workers: XOR does not care about order, and
// CRC-64 of a multi-GiB database is otherwise seconds of a restore.
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
	off := int64(first-1) * int64(pageSize)
	r := bufio.NewReaderSize(io.NewSectionReader(f, off, int64(last-first+1)*int64(pageSize)), 1<<20)
	lock := uint64(ltx.LockPgno(pageSize))
	h := ltx.NewHasher()
	buf := make([]byte, pageSize)
	var chk ltx.Checksum
	for pgno := first; pgno <= last; pgno++ {
		if _, err := io.ReadFull(r, buf); err != nil {
			return 0, fmt.Errorf("read page %d: %w", pgno, err)
		}
		if pgno != lock {
			chk ^= ltx.ChecksumPageWithHasher(h, uint32(pgno), buf)
		}
	}
	return chk, nil
}
