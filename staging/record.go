package staging

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/wal"
)

// The record format is drawn in doc.go. lenPrefixSize is the length in
// front of each record in the log; recordHeaderLen is the record's own
// fixed header, from the magic to the page count.
const (
	lenPrefixSize    = 8
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

// appendLogRecord appends a record behind its length prefix, as the log
// holds it.
func appendLogRecord(buf []byte, hdr ltx.Header, post ltx.Checksum, pages []wal.Page) []byte {
	start := len(buf)
	buf = appendRecord(append(buf, make([]byte, lenPrefixSize)...), hdr, post, pages)
	binary.BigEndian.PutUint64(buf[start:], uint64(len(buf)-start-lenPrefixSize))
	return buf
}
