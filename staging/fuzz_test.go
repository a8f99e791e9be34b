package staging

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/wal"
)

// fuzzRecord builds one staged record (without its length prefix).
func fuzzRecord(pageSize, commit uint32, txid ltx.TXID, pgnos ...uint32) []byte {
	hdr := ltx.Header{PageSize: pageSize, Commit: commit, MinTXID: txid, MaxTXID: txid, Timestamp: 1700000000000 + int64(txid),
		PreApplyChecksum: ltx.ChecksumFlag | ltx.Checksum(txid), WALOffset: 32, WALSize: int64(len(pgnos)) * int64(pageSize+24),
		WALSalt1: 0x11223344, WALSalt2: 0x55667788}
	var pages []wal.Page
	for _, pgno := range pgnos {
		data := bytes.Repeat([]byte{byte(pgno), byte(txid)}, int(pageSize)/2)
		pages = append(pages, wal.Page{Pgno: pgno, Data: data})
	}
	return appendRecord(nil, hdr, ltx.ChecksumFlag|ltx.Checksum(txid+1), pages)
}

// withCRC returns b with its last four bytes replaced by the CRC-32C of the
// rest, so mutations reach the parser behind the checksum.
func withCRC(b []byte) []byte {
	if len(b) < recordTrailerLen {
		return b
	}
	out := bytes.Clone(b)
	body := out[:len(out)-recordTrailerLen]
	binary.BigEndian.PutUint32(out[len(body):], crc32.Checksum(body, castagnoli))
	return out
}

// FuzzDecodeRecord: decodeRecord, scanRecords and encodeBatch never panic
// on any bytes; a record that decodes re-encodes to the same bytes; and a
// decoded record that encodeBatch accepts becomes a valid LTX file holding
// its pages. Each input is tried as it is and with its CRC fixed up, so
// the fuzzer explores past the checksum too.
func FuzzDecodeRecord(f *testing.F) {
	seeds := [][]byte{
		fuzzRecord(512, 1, 1, 1),
		fuzzRecord(1024, 4, 2, 1, 3, 4),
		fuzzRecord(4096, 9, 7, 2, 9),
		fuzzRecord(512, 3, 3),                  // no pages (a commit that only shrank)
		fuzzRecord(65536, 2, 5, 1),             // the largest page size
		fuzzRecord(1024, 2, 4, 1, 2, 7)[:1000], // torn
		append(fuzzRecord(512, 2, 6, 2), 0),    // one byte too many
		[]byte(recordMagic),                    // header only
		make([]byte, recordHeaderLen+recordTrailerLen),
	}
	// A staging log: records behind their lengths, the last one torn.
	var log []byte
	for i, rec := range [][]byte{fuzzRecord(512, 2, 8, 1, 2), fuzzRecord(512, 3, 9, 3), fuzzRecord(512, 3, 10, 2)} {
		if i == 2 {
			rec = rec[:len(rec)-5]
		}
		log = binary.BigEndian.AppendUint64(log, uint64(len(rec)))
		log = append(log, rec...)
	}
	seeds = append(seeds, log)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkRecordBytes(t, b)
		checkRecordBytes(t, withCRC(b))
		checkLog(t, b)
	})
}

func checkRecordBytes(t *testing.T, b []byte) {
	r, err := decodeRecord(b)
	if err != nil {
		return
	}
	// Re-encode from what was decoded: the same bytes.
	var pages []wal.Page
	for i := 0; i < r.pages; i++ {
		po, do := r.pageAt(i)
		pages = append(pages, wal.Page{
			Pgno: binary.BigEndian.Uint32(b[po:]),
			Data: b[do : do+int64(r.hdr.PageSize)],
		})
	}
	if again := appendRecord(nil, r.hdr, r.post, pages); !bytes.Equal(again, b) {
		t.Fatalf("record decodes (TXID %d, page size %d, commit %d, %d pages %v) but re-encodes to different bytes (%d, was %d)",
			r.hdr.MinTXID, r.hdr.PageSize, r.hdr.Commit, r.pages, pgnos(pages), len(again), len(b))
	}

	// A batch of it is a valid LTX file with the latest version of each
	// page up to the commit, or an error; never a panic.
	var out bytes.Buffer
	if err := encodeBatch(&out, bytes.NewReader(b), []record{r}, []int64{0}); err != nil {
		return
	}
	want := map[uint32][]byte{}
	for _, p := range pages {
		if p.Pgno <= r.hdr.Commit {
			want[p.Pgno] = p.Data
		}
	}
	dec := ltx.NewDecoder(&out)
	if err := dec.DecodeHeader(); err != nil {
		t.Fatalf("encodeBatch wrote an LTX file whose header does not decode: %v", err)
	}
	if h := dec.Header(); h.MinTXID != r.hdr.MinTXID || h.MaxTXID != r.hdr.MinTXID || h.Commit != r.hdr.Commit ||
		h.PageSize != r.hdr.PageSize || h.PreApplyChecksum != r.hdr.PreApplyChecksum {
		t.Fatalf("batch header %+v from record %+v", h, r.hdr)
	}
	data := make([]byte, r.hdr.PageSize)
	var prev uint32
	n := 0
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("encodeBatch wrote an LTX file whose page after %d does not decode: %v", prev, err)
		}
		if ph.Pgno <= prev || !bytes.Equal(data, want[ph.Pgno]) {
			t.Fatalf("batch page %d (after %d) is not the record's latest version of it", ph.Pgno, prev)
		}
		prev = ph.Pgno
		n++
	}
	if n != len(want) {
		t.Fatalf("batch holds %d pages, the record %d distinct pages up to its commit", n, len(want))
	}
	if err := dec.Close(); err != nil {
		t.Fatalf("encodeBatch wrote an LTX file that fails verification: %v", err)
	}
	if dec.Trailer().PostApplyChecksum != r.post {
		t.Fatalf("batch post-apply checksum %s, record %s", dec.Trailer().PostApplyChecksum, r.post)
	}
}

// checkLog runs the start-up scan of a staging log over b: it never panics,
// keeps a prefix of b, and every record it keeps decodes.
func checkLog(t *testing.T, b []byte) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var offs []int64
	valid, n, err := scanRecords(f, func(r record, off int64) { offs = append(offs, off) })
	if err != nil {
		t.Fatalf("scanRecords: %v", err)
	}
	if valid < 0 || valid > int64(len(b)) || n != len(offs) {
		t.Fatalf("scanRecords kept %d bytes of %d, %d records (%d seen)", valid, len(b), n, len(offs))
	}
	for _, off := range offs {
		l := int64(binary.BigEndian.Uint64(b[off-lenPrefixSize:]))
		if _, err := decodeRecord(b[off : off+l]); err != nil {
			t.Fatalf("scanRecords kept a record at %d that does not decode: %v", off, err)
		}
	}
}

func pgnos(pages []wal.Page) []uint32 {
	var out []uint32
	for _, p := range pages {
		out = append(out, p.Pgno)
	}
	if len(out) > 8 {
		out = append(slices.Clip(out[:8]), 0)
	}
	return out
}
