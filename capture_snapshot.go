package litefs

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"time"

	"github.com/litefs-dev/litefs/internal/checksum"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/staging"
	"github.com/litefs-dev/litefs/wal"
	"github.com/superfly/ltx"
)

// pageSource yields page pgno, reading into buf or returning other bytes.
type pageSource func(pgno uint32, buf []byte) ([]byte, error)

// snapshot stages a snapshot (replica.SnapshotLevel) 1-<txid> of pages
// 1..commit. It streams page by page: memory stays bounded however large the
// database. It returns the per-page checksums of the state it captured.
func (c *Capture) snapshot(txid ltx.TXID, pageSize, commit uint32, page pageSource) (*checksum.Sums, error) {
	var sums *checksum.Sums
	ts := c.now()
	err := c.stage.WriteFrozen(replica.SnapshotLevel, 1, txid, func(w io.Writer) (err error) {
		sums, err = encodeSnapshot(w, txid, pageSize, commit, page, ts, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return sums, nil
}

// errSnapshotMismatch: the pages read do not add up to the checksum the
// snapshot must have (encodeSnapshot with want).
var errSnapshotMismatch = errors.New("snapshot pages do not match the tracked checksum")

// encodeSnapshot writes the LTX snapshot 1-<txid> of pages 1..commit to w
// and returns their checksums. With want, a state that does not match fails
// before the trailer is written, so a streamed upload is never completed.
func encodeSnapshot(w io.Writer, txid ltx.TXID, pageSize, commit uint32, page pageSource, ts time.Time, want *ltx.Checksum) (*checksum.Sums, error) {
	sums := checksum.New(pageSize)
	enc, err := ltx.NewEncoder(w)
	if err != nil {
		return nil, err
	}
	if err := enc.EncodeHeader(ltx.Header{
		Version: ltx.Version, PageSize: pageSize, Commit: commit,
		MinTXID: 1, MaxTXID: txid, Timestamp: ts.UnixMilli(),
	}); err != nil {
		return nil, err
	}
	buf := make([]byte, pageSize)
	lock := ltx.LockPgno(pageSize)
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if pgno == lock {
			continue
		}
		data, err := page(pgno, buf)
		if err != nil {
			return nil, err
		}
		sums.Set(pgno, sums.PageSum(pgno, data))
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, data); err != nil {
			return nil, fmt.Errorf("encode page %d: %w", pgno, err)
		}
	}
	sums.Truncate(commit)
	if want != nil && sums.Checksum() != *want {
		return sums, fmt.Errorf("%w: %s, want %s", errSnapshotMismatch, sums.Checksum(), *want)
	}
	enc.SetPostApplyChecksum(sums.Checksum())
	return sums, enc.Close()
}

func openIfExists(path string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return f, err
}

// readPage reads a page, zero past the end of the file (a database grown in
// the WAL but not yet checkpointed).
func readPage(f *os.File, pgno uint32, buf []byte) error {
	clear(buf)
	if f == nil {
		return nil
	}
	// A short read leaves the zeroed remainder: the page past the file's end.
	if _, err := f.ReadAt(buf, int64(pgno-1)*int64(len(buf))); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read page %d: %w", pgno, err)
	}
	return nil
}

// snapshotFromDisk stages a snapshot reading each page from the WAL frame
// the index names, else from the database file.
func (c *Capture) snapshotFromDisk(txid ltx.TXID, pageSize, commit uint32, index map[uint32]int64) (*checksum.Sums, error) {
	page, done, err := c.diskPages(index)
	if err != nil {
		return nil, err
	}
	defer done()
	return c.snapshot(txid, pageSize, commit, page)
}

// diskPages is the page source of a snapshot taken while the WAL is pinned:
// a page's frame from the WAL where the index names one, else the database
// file's page. done closes the files.
func (c *Capture) diskPages(index map[uint32]int64) (page pageSource, done func(), err error) {
	db, err := openIfExists(c.path)
	if err != nil {
		return nil, nil, err
	}
	var walf *os.File
	if len(index) > 0 {
		if walf, err = os.Open(c.path + "-wal"); err != nil {
			if db != nil {
				db.Close()
			}
			return nil, nil, fmt.Errorf("open WAL: %w", err)
		}
	}
	done = func() {
		if db != nil {
			db.Close()
		}
		if walf != nil {
			walf.Close()
		}
	}
	return func(pgno uint32, buf []byte) ([]byte, error) {
		if off, ok := index[pgno]; ok {
			if _, err := walf.ReadAt(buf, off+wal.FrameHeaderSize); err != nil {
				return nil, fmt.Errorf("read page %d from the WAL: %w", pgno, err)
			}
			return buf, nil
		}
		return buf, readPage(db, pgno, buf)
	}, done, nil
}

// snapshotPoint is the state a snapshot captures.
type snapshotPoint struct {
	txid     ltx.TXID    // the snapshot's TXID
	pos      staging.Pos // its checksum must come out of the pages read
	index    map[uint32]int64
	pageSize uint32
	commit   uint32
	seq      uint64 // the capture's overflowSeq at this point
}

// snapshotPoint returns the state to snapshot, once the log holds every
// record up to it. With rebase, staging is dropped and restarts from the
// snapshot under a new TXID.
func (c *Capture) snapshotPoint(rebase bool) (snapshotPoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != StateReplicating {
		return snapshotPoint{}, fmt.Errorf("snapshot %s: database is %s", c.name, c.state)
	}
	// The log must hold the records up to the snapshot's TXID: start-up
	// resumes from the newest record or snapshot, and only a record says
	// where in the WAL.
	if err := c.stage.WritePending(); err != nil {
		return snapshotPoint{}, fmt.Errorf("snapshot %s: %w", c.name, err)
	}
	p := snapshotPoint{txid: c.pos.TXID, pos: c.pos, index: maps.Clone(c.walIndex), pageSize: c.sums.PageSize(), commit: c.sums.Pages(), seq: c.overflowSeq}
	if rebase {
		p.txid = c.nextSnapshotTXID()
		if err := c.stage.Discard(); err != nil {
			return snapshotPoint{}, err
		}
		c.pos.TXID = p.txid
		c.posDirty = true
		c.overflowed = false // staging restarts from this snapshot
		c.unsent.reset(p.txid, c.now())
	}
	return p, nil
}

// snapshotStats is what the snapshot policy weighs: the state, the last
// staged TXID and the database's size in bytes (0 unless replicating).
func (c *Capture) snapshotStats() (DBState, ltx.TXID, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != StateReplicating {
		return c.state, c.pos.TXID, 0
	}
	return c.state, c.pos.TXID, int64(c.sums.Pages()) * int64(c.sums.PageSize())
}
