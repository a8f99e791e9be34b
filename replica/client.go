package replica

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/superfly/ltx"
)

// SnapshotLevel is the level holding full-database LTX files named 1-<max>.
const SnapshotLevel = 9

// ErrNotFound is returned (wrapped) when an LTX object does not exist.
var ErrNotFound = errors.New("ltx object not found")

// ErrConflict is returned (wrapped) by WriteLTXFile when an object with the
// same name already exists and holds different bytes: another writer owns the
// replica path. The caller must stop uploading and never overwrite it.
var ErrConflict = errors.New("ltx object already exists with different contents")

// ErrRefused is wrapped by errors where the replica answered and refused
// for a reason retrying does not fix: bad credentials, a bucket that does
// not exist. Start-up fails on it; any other error reading the replica at
// start-up is taken for an outage, and the daemon mounts anyway.
var ErrRefused = errors.New("replica refused the request")

// ReplicaClient stores LTX files by level and TXID range. Implementations
// live in one subpackage per backend and must pass replicatest.Run.
type ReplicaClient interface {
	// Type names the backend ("file", "s3").
	Type() string

	// LTXFiles lists the level's files whose MinTXID >= seek, ascending by
	// MinTXID. Names that are not <min>-<max>.ltx are ignored. CreatedAt is the
	// LTX header's timestamp as the backend records it (file mtime, S3
	// metadata), falling back to the object's modification time.
	LTXFiles(ctx context.Context, level int, seek ltx.TXID) ([]*ltx.FileInfo, error)

	// OpenLTXFile reads size bytes of a file starting at offset; size 0 means
	// to the end. A missing file returns an error wrapping ErrNotFound.
	OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, offset, size int64) (io.ReadCloser, error)

	// WriteLTXFile creates the file only if it does not exist. Writing the
	// same bytes again succeeds (a retried upload whose reply was lost);
	// different bytes under an existing name return ErrConflict.
	WriteLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, r io.Reader) (*ltx.FileInfo, error)

	// DeleteLTXFiles removes the files; missing ones are not an error.
	DeleteLTXFiles(ctx context.Context, a []*ltx.FileInfo) error
}

// CheckLevel rejects a level outside 0..SnapshotLevel. Every backend calls it
// before building a path or key, so a bad level fails the same way on all of
// them and never names an object outside the layout.
func CheckLevel(level int) error {
	if level < 0 || level > SnapshotLevel {
		return fmt.Errorf("invalid level %d: must be 0..%d", level, SnapshotLevel)
	}
	return nil
}

// CheckRange is CheckLevel plus the TXID range of a file name: TXID 0 does
// not exist and a range never runs backwards.
func CheckRange(level int, minTXID, maxTXID ltx.TXID) error {
	if err := CheckLevel(level); err != nil {
		return err
	}
	if minTXID == 0 || minTXID > maxTXID {
		return fmt.Errorf("invalid TXID range %s-%s", minTXID, maxTXID)
	}
	return nil
}
