package staging

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/superfly/ltx"
)

// encodeBatch writes one LTX file holding the records' transactions: the
// latest version of every page, the first record's pre-apply checksum and
// the last one's post-apply checksum. Pages are read from f by offset, so
// memory stays bounded by the number of distinct pages.
func encodeBatch(w io.Writer, f io.ReaderAt, recs []record, offs []int64) error {
	first, last := recs[0], recs[len(recs)-1]
	hdr := ltx.Header{
		Version: ltx.Version, PageSize: last.hdr.PageSize, Commit: last.hdr.Commit,
		MinTXID: first.hdr.MinTXID, MaxTXID: last.hdr.MaxTXID, Timestamp: last.hdr.Timestamp,
		PreApplyChecksum: first.hdr.PreApplyChecksum,
	}
	if len(recs) == 1 {
		hdr.WALOffset, hdr.WALSize, hdr.WALSalt1, hdr.WALSalt2 = first.hdr.WALOffset, first.hdr.WALSize, first.hdr.WALSalt1, first.hdr.WALSalt2
	}
	latest := map[uint32]int64{}
	// The page numbers lie at increasing offsets: one buffered pass reads
	// them, not a pread per page.
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, math.MaxInt64), 256<<10)
	var at int64
	var pgbuf [4]byte
	for i, r := range recs {
		if r.hdr.PageSize != hdr.PageSize {
			return fmt.Errorf("staged records change page size at TXID %s", r.hdr.MinTXID)
		}
		for j := 0; j < r.pages; j++ {
			po, do := r.pageAt(j)
			if skip := offs[i] + po - at; skip < 0 {
				return fmt.Errorf("staged records out of order at TXID %s", r.hdr.MinTXID)
			} else if _, err := br.Discard(int(skip)); err != nil {
				return fmt.Errorf("read staged page: %w", err)
			}
			if _, err := io.ReadFull(br, pgbuf[:]); err != nil {
				return fmt.Errorf("read staged page: %w", err)
			}
			at = offs[i] + po + 4
			latest[binary.BigEndian.Uint32(pgbuf[:])] = offs[i] + do
		}
	}
	pgnos := make([]uint32, 0, len(latest))
	for pgno := range latest {
		if pgno <= hdr.Commit {
			pgnos = append(pgnos, pgno)
		}
	}
	slices.Sort(pgnos)
	enc, err := ltx.NewEncoder(w)
	if err != nil {
		return err
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		return err
	}
	data := make([]byte, hdr.PageSize)
	for _, pgno := range pgnos {
		if _, err := f.ReadAt(data, latest[pgno]); err != nil {
			return fmt.Errorf("read staged page %d: %w", pgno, err)
		}
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, data); err != nil {
			return err
		}
	}
	enc.SetPostApplyChecksum(last.post)
	return enc.Close()
}
