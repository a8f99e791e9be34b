package litefs

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/superfly/ltx"
)

// snapshot stages a level-9 snapshot 1-<txid> of the database file, with
// overlay pages (a transaction not yet checkpointed) taking precedence. It
// streams page by page: memory stays bounded however large the database.
// It returns the per-page checksums of the state it captured.
func (d *DB) snapshot(txid ltx.TXID, pageSize, commit uint32, overlay map[uint32][]byte) (*pageSums, error) {
	f, err := os.Open(d.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if f != nil {
		defer f.Close()
	}
	sums := newPageSums(pageSize)
	ts := d.now()
	err = d.stage.writeFrozen(9, 1, txid, func(w io.Writer) error {
		enc, err := ltx.NewEncoder(w)
		if err != nil {
			return err
		}
		if err := enc.EncodeHeader(ltx.Header{
			Version: ltx.Version, PageSize: pageSize, Commit: commit,
			MinTXID: 1, MaxTXID: txid, Timestamp: ts.UnixMilli(),
		}); err != nil {
			return err
		}
		buf := make([]byte, pageSize)
		lock := ltx.LockPgno(pageSize)
		for pgno := uint32(1); pgno <= commit; pgno++ {
			if pgno == lock {
				continue
			}
			data, ok := overlay[pgno]
			if !ok {
				data = buf
				if err := readPage(f, pgno, buf); err != nil {
					return err
				}
			}
			sums.set(pgno, sums.pageSum(pgno, data))
			if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, data); err != nil {
				return fmt.Errorf("encode page %d: %w", pgno, err)
			}
		}
		sums.truncate(commit)
		enc.SetPostApplyChecksum(sums.Checksum())
		return enc.Close()
	})
	if err != nil {
		return nil, err
	}
	return sums, nil
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
