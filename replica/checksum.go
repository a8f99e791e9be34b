package replica

import (
	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/checksum"
)

// DatabaseChecksum computes the rolling checksum of a database file:
// ChecksumFlag | XOR of ltx.ChecksumPage(pgno, page) over every page but the
// lock page, the value an LTX file's PostApplyChecksum holds. The page size
// comes from the database header (bytes 16-17, 1 meaning 65536). An empty
// file has the checksum of an empty database, ChecksumFlag. It is
// checksum.DatabaseChecksum, exported here for callers outside this module's
// internal tree (tests comparing a restored file with its replica).
func DatabaseChecksum(path string) (ltx.Checksum, error) {
	return checksum.DatabaseChecksum(path)
}
