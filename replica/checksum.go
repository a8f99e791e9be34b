package replica

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"

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

// fileChecksum checksums f with a known page size; restore uses it with the
// LTX page size so the result never depends on page 1's contents.
func fileChecksum(f *os.File, pageSize uint32) (ltx.Checksum, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Size()%int64(pageSize) != 0 {
		return 0, fmt.Errorf("size %d is not a whole number of %d-byte pages", fi.Size(), pageSize)
	}
	n := uint32(fi.Size() / int64(pageSize))
	lock := ltx.LockPgno(pageSize)
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, fi.Size()), 1<<20)
	h := ltx.NewHasher()
	buf := make([]byte, pageSize)
	chk := ltx.ChecksumFlag
	for pgno := uint32(1); pgno <= n; pgno++ {
		if _, err := io.ReadFull(r, buf); err != nil {
			return 0, fmt.Errorf("read page %d: %w", pgno, err)
		}
		if pgno != lock {
			chk ^= ltx.ChecksumPageWithHasher(h, pgno, buf)
		}
	}
	return ltx.ChecksumFlag | chk, nil
}
