package litefs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/wal"
)

// A staged segment is one committed transaction in a compact raw form:
// appending it is the only work on the commit path, so it is not LTX
// (LZ4 and the LTX file hash would cost more than the commit itself).
// Freezing turns a run of records into one LTX file.
//
//	offset size
//	0      4   magic "LFS1"
//	4      8   TXID
//	12     4   page size
//	16     4   commit (database size in pages after it)
//	20     8   timestamp, ms since the epoch
//	28     8   pre-apply rolling checksum
//	36     8   post-apply rolling checksum
//	44     8   WAL offset of its first frame
//	52     8   WAL size of its frames
//	60     4   WAL salt-1
//	64     4   WAL salt-2
//	68     4   page count N
//	72     N × (4-byte pgno, page)   ascending pgno, never the lock page
//	…      4   CRC-32C of everything before
//
// Each record sits behind an 8-byte big-endian length in the log, so a torn
// tail (a crash mid-append) is detected by its length or CRC and cut.
const (
	recordMagic      = "LFS1"
	recordHeaderLen  = 72
	recordTrailerLen = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is a decoded record header.
type record struct {
	hdr   ltx.Header
	post  ltx.Checksum
	pages int
}

// appendRecord encodes a transaction into buf (reused across commits).
func appendRecord(buf []byte, hdr ltx.Header, post ltx.Checksum, pages []wal.Page) []byte {
	lock := ltx.LockPgno(hdr.PageSize)
	n := 0
	for _, p := range pages {
		if p.Pgno != lock && p.Pgno <= hdr.Commit {
			n++
		}
	}
	start := len(buf)
	buf = append(buf, recordMagic...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(hdr.MinTXID))
	buf = binary.BigEndian.AppendUint32(buf, hdr.PageSize)
	buf = binary.BigEndian.AppendUint32(buf, hdr.Commit)
	buf = binary.BigEndian.AppendUint64(buf, uint64(hdr.Timestamp))
	buf = binary.BigEndian.AppendUint64(buf, uint64(hdr.PreApplyChecksum))
	buf = binary.BigEndian.AppendUint64(buf, uint64(post))
	buf = binary.BigEndian.AppendUint64(buf, uint64(hdr.WALOffset))
	buf = binary.BigEndian.AppendUint64(buf, uint64(hdr.WALSize))
	buf = binary.BigEndian.AppendUint32(buf, hdr.WALSalt1)
	buf = binary.BigEndian.AppendUint32(buf, hdr.WALSalt2)
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	for _, p := range pages {
		if p.Pgno == lock || p.Pgno > hdr.Commit {
			continue
		}
		buf = binary.BigEndian.AppendUint32(buf, p.Pgno)
		buf = append(buf, p.Data...)
	}
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
}

// decodeRecord parses and verifies a whole record.
func decodeRecord(b []byte) (record, error) {
	if len(b) < recordHeaderLen+recordTrailerLen || string(b[:4]) != recordMagic {
		return record{}, errors.New("not a staged record")
	}
	body := b[:len(b)-recordTrailerLen]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(body):]) {
		return record{}, errors.New("staged record checksum mismatch")
	}
	be := binary.BigEndian
	r := record{
		hdr: ltx.Header{
			Version:          ltx.Version,
			MinTXID:          ltx.TXID(be.Uint64(b[4:])),
			PageSize:         be.Uint32(b[12:]),
			Commit:           be.Uint32(b[16:]),
			Timestamp:        int64(be.Uint64(b[20:])),
			PreApplyChecksum: ltx.Checksum(be.Uint64(b[28:])),
			WALOffset:        int64(be.Uint64(b[44:])),
			WALSize:          int64(be.Uint64(b[52:])),
			WALSalt1:         be.Uint32(b[60:]),
			WALSalt2:         be.Uint32(b[64:]),
		},
		post:  ltx.Checksum(be.Uint64(b[36:])),
		pages: int(be.Uint32(b[68:])),
	}
	r.hdr.MaxTXID = r.hdr.MinTXID
	if !ltx.IsValidPageSize(r.hdr.PageSize) {
		return record{}, fmt.Errorf("staged record: bad page size %d", r.hdr.PageSize)
	}
	if r.pages < 0 || r.pages > (len(b)-recordHeaderLen)/(4+int(r.hdr.PageSize)) {
		return record{}, fmt.Errorf("staged record: %d pages do not fit in %d bytes", r.pages, len(b))
	}
	if want := recordHeaderLen + r.pages*(4+int(r.hdr.PageSize)) + recordTrailerLen; want != len(b) {
		return record{}, fmt.Errorf("staged record: %d bytes, want %d", len(b), want)
	}
	if r.hdr.MinTXID == 0 || r.hdr.Commit == 0 {
		return record{}, errors.New("staged record: zero TXID or commit size")
	}
	// Only what appendRecord writes: ascending page numbers within the
	// commit, never the lock page.
	lock := ltx.LockPgno(r.hdr.PageSize)
	var prev uint32
	for i := 0; i < r.pages; i++ {
		po, _ := r.pageAt(i)
		pgno := be.Uint32(b[po:])
		if pgno <= prev || pgno > r.hdr.Commit || pgno == lock {
			return record{}, fmt.Errorf("staged record: page %d after %d (commit %d, lock page %d)", pgno, prev, r.hdr.Commit, lock)
		}
		prev = pgno
	}
	return r, nil
}

// pageAt is where a record's i-th page and its number sit, relative to the
// record's start.
func (r record) pageAt(i int) (pgnoOff, dataOff int64) {
	off := int64(recordHeaderLen) + int64(i)*(4+int64(r.hdr.PageSize))
	return off, off + 4
}

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
