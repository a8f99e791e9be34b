package staging

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/wal"
)

func page(b byte) []byte { return bytes.Repeat([]byte{b}, 1024) }

// Records round-trip, reject any flipped byte, and a batch of them becomes
// one LTX file with the latest version of each page.
func TestRecordsAndBatch(t *testing.T) {
	mk := func(txid ltx.TXID, commit uint32, pre, post ltx.Checksum, pages ...wal.Page) []byte {
		hdr := ltx.Header{PageSize: 1024, Commit: commit, MinTXID: txid, MaxTXID: txid, Timestamp: int64(txid),
			PreApplyChecksum: pre, WALOffset: 32, WALSize: 1048, WALSalt1: 7, WALSalt2: 9}
		return appendLogRecord(nil, hdr, post, pages)
	}
	var log bytes.Buffer
	log.Write(mk(2, 3, ltx.ChecksumFlag|1, ltx.ChecksumFlag|2, wal.Page{Pgno: 1, Data: page(1)}, wal.Page{Pgno: 3, Data: page(3)}))
	log.Write(mk(3, 4, ltx.ChecksumFlag|2, ltx.ChecksumFlag|3, wal.Page{Pgno: 3, Data: page(4)}, wal.Page{Pgno: 4, Data: page(5)}, wal.Page{Pgno: 9, Data: page(9)}))
	b := log.Bytes()

	var recs []record
	var offs []int64
	for off := 0; off < len(b); {
		l := int(binary.BigEndian.Uint64(b[off:]))
		rec, err := decodeRecord(b[off+lenPrefixSize : off+lenPrefixSize+l])
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < l; i += 97 {
			bad := append([]byte(nil), b[off+lenPrefixSize:off+lenPrefixSize+l]...)
			bad[i] ^= 0x40
			if _, err := decodeRecord(bad); err == nil {
				t.Fatalf("record with byte %d flipped decoded", i)
			}
		}
		recs, offs = append(recs, rec), append(offs, int64(off+lenPrefixSize))
		off += lenPrefixSize + l
	}
	if len(recs) != 2 || recs[1].pages != 2 || recs[1].post != ltx.ChecksumFlag|3 || recs[0].hdr.WALSalt2 != 9 {
		t.Fatalf("records: %+v", recs)
	}
	var out bytes.Buffer
	if err := encodeBatch(&out, bytes.NewReader(b), recs, offs); err != nil {
		t.Fatal(err)
	}
	dec := ltx.NewDecoder(&out)
	if err := dec.DecodeHeader(); err != nil {
		t.Fatal(err)
	}
	h := dec.Header()
	if h.MinTXID != 2 || h.MaxTXID != 3 || h.Commit != 4 || h.PreApplyChecksum != ltx.ChecksumFlag|1 {
		t.Fatalf("batch header %+v", h)
	}
	want := map[uint32]byte{1: 1, 3: 4, 4: 5}
	var ph ltx.PageHeader
	data := make([]byte, 1024)
	n := 0
	for {
		if err := dec.DecodePage(&ph, data); err != nil {
			break
		}
		if w, ok := want[ph.Pgno]; !ok || !bytes.Equal(data, page(w)) {
			t.Fatalf("page %d holds %d", ph.Pgno, data[0])
		}
		n++
	}
	if n != len(want) {
		t.Fatalf("%d pages in the batch, want %d (page 9 is past the commit)", n, len(want))
	}
	if err := dec.Close(); err != nil || dec.Trailer().PostApplyChecksum != ltx.ChecksumFlag|3 {
		t.Fatalf("close %v, post %s", err, dec.Trailer().PostApplyChecksum)
	}
}
