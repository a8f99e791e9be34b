package wal

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// Page.Offset points at the frame holding that version of the page, in Scan
// and in the Tracker alike: DB reads pages back from the WAL by it.
func TestPageOffsets(t *testing.T) {
	files, _ := filepath.Glob("../testdata/wal/*.db-wal")
	if len(files) == 0 {
		t.Fatal("no testdata WAL files")
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		check := func(who string, txn *Txn) error {
			for _, p := range txn.Pages {
				fsz := int64(FrameHeaderSize) + int64(txn.PageSize)
				if p.Offset < txn.Offset || p.Offset+fsz > int64(len(b)) || (p.Offset-HeaderSize)%fsz != 0 {
					t.Fatalf("%s %s: page %d offset %d outside the transaction at %d", filepath.Base(path), who, p.Pgno, p.Offset, txn.Offset)
				}
				frame := b[p.Offset : p.Offset+fsz]
				if binary.BigEndian.Uint32(frame) != p.Pgno || !bytes.Equal(frame[FrameHeaderSize:], p.Data) {
					t.Fatalf("%s %s: page %d offset %d holds another frame", filepath.Base(path), who, p.Pgno, p.Offset)
				}
			}
			return nil
		}
		n := 0
		if _, _, err := Scan(bytes.NewReader(b), int64(len(b)), func(txn *Txn) error { n++; return check("scan", txn) }); err != nil {
			t.Fatal(err)
		}
		m := 0
		tr := NewTracker(func(txn *Txn) error { m++; return check("tracker", txn) })
		for off := 0; off < len(b); off += 1000 {
			end := min(off+1000, len(b))
			if err := tr.Write(int64(off), b[off:end]); err != nil {
				t.Fatal(err)
			}
		}
		if n != m {
			t.Fatalf("%s: scan found %d transactions, tracker %d", filepath.Base(path), n, m)
		}
	}
}
