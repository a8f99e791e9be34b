package wal

import (
	"bytes"
	"errors"
	"testing"
)

// TestScanMatchesSQLite checks Scan against SQLite's own recovery: the
// transactions it finds, applied to the database file, give the database
// SQLite's checkpoint produces from the same two files.
func TestScanMatchesSQLite(t *testing.T) {
	for _, c := range corpus {
		t.Run(c.name, func(t *testing.T) {
			dbb, walb := loadCorpus(t, c)
			hdr, end, txns := scanAll(t, walb)
			if hdr.PageSize != c.pageSize {
				t.Fatalf("page size %d, want %d", hdr.PageSize, c.pageSize)
			}
			if len(txns) != c.commits {
				t.Fatalf("%d transactions, want %d", len(txns), c.commits)
			}
			fsz := int64(FrameHeaderSize + c.pageSize)
			next := int64(HeaderSize)
			padded := false
			for i, x := range txns {
				if x.Offset != next || x.Size <= 0 || x.Size%fsz != 0 {
					t.Fatalf("txn %d: %s, want offset %d", i, summary(x), next)
				}
				if x.Salt1 != hdr.Salt1 || x.Salt2 != hdr.Salt2 || x.PageSize != hdr.PageSize {
					t.Fatalf("txn %d: %s: salts or page size differ from header", i, summary(x))
				}
				for j, p := range x.Pages {
					if p.Pgno == 0 || p.Pgno > x.Commit || (j > 0 && p.Pgno <= x.Pages[j-1].Pgno) {
						t.Fatalf("txn %d: pages not ascending within commit: %s", i, summary(x))
					}
				}
				if int64(len(x.Pages))*fsz < x.Size {
					padded = true // more frames than pages: rewrites or padding
				}
				next = x.End()
			}
			if end != next {
				t.Fatalf("end %d, want %d", end, next)
			}
			if tail := end < int64(len(walb)); tail != c.tail {
				t.Fatalf("bytes after the last commit: %v, want %v (end %d, size %d)", tail, c.tail, end, len(walb))
			}
			if c.padded && !padded {
				t.Fatalf("no padding folded in a psow=0 WAL")
			}
			want := checkpointWithSQLite(t, dbb, walb)
			if got := apply(dbb, txns); !bytes.Equal(got, want) {
				t.Fatalf("applied transactions (%d bytes) differ from SQLite's checkpoint (%d bytes)", len(got), len(want))
			}
		})
	}
}

// TestScanBigEndian feeds the corpus rewritten with big-endian checksums,
// checking both Scan and SQLite accept it the same way.
func TestScanBigEndian(t *testing.T) {
	for _, c := range corpus {
		t.Run(c.name, func(t *testing.T) {
			dbb, walb := loadCorpus(t, c)
			_, _, le := scanAll(t, walb)
			bew := transcode(t, walb)
			hdr, _, be := scanAll(t, bew)
			if !hdr.BigEndian() {
				t.Fatalf("magic %#x", hdr.Magic)
			}
			if len(be) != len(le) {
				t.Fatalf("%d transactions big-endian, %d little-endian", len(be), len(le))
			}
			want := checkpointWithSQLite(t, dbb, bew)
			if got := apply(dbb, be); !bytes.Equal(got, want) {
				t.Fatalf("big-endian WAL applies differently from SQLite's checkpoint")
			}
		})
	}
}

func TestScanEdges(t *testing.T) {
	_, walb := loadCorpus(t, corpus[0])
	hdr, _ := ParseHeader(walb)
	fsz := FrameHeaderSize + int(hdr.PageSize)

	for _, n := range []int{0, 10, HeaderSize - 1} {
		h, end, txns := scanAll(t, walb[:n])
		if h != (Header{}) || end != 0 || len(txns) != 0 {
			t.Fatalf("size %d: %+v %d %d", n, h, end, len(txns))
		}
	}
	if _, end, txns := scanAll(t, walb[:HeaderSize+fsz-1]); end != HeaderSize || len(txns) != 0 {
		t.Fatalf("header only: end %d, %d txns", end, len(txns))
	}
	bad := bytes.Clone(walb)
	bad[HeaderSize+FrameHeaderSize+5] ^= 1 // first page: chain broken from the start
	if h, end, txns := scanAll(t, bad); h != hdr || end != HeaderSize || len(txns) != 0 {
		t.Fatalf("corrupt first frame: end %d, %d txns", end, len(txns))
	}
	bad = bytes.Clone(walb)
	bad[0] = 0
	if h, end, _ := scanAll(t, bad); h != (Header{}) || end != 0 {
		t.Fatalf("bad magic accepted")
	}

	boom := errors.New("boom")
	calls := 0
	_, end, err := Scan(bytes.NewReader(walb), int64(len(walb)), func(x *Txn) error {
		if calls++; calls == 2 {
			return boom
		}
		return nil
	})
	_, _, all := scanAll(t, walb)
	if !errors.Is(err, boom) || end != all[0].End() {
		t.Fatalf("callback error: err %v, end %d, want end %d", err, end, all[0].End())
	}

	// A size larger than the file: the reader's EOF ends the scan.
	if _, end, err := Scan(bytes.NewReader(walb), int64(len(walb))+1<<20, nil); err != nil || end != all[len(all)-1].End() {
		t.Fatalf("size past EOF: end %d, err %v", end, err)
	}
}

// TestScanPadding checks the folding rule on a synthetic WAL: copies of the
// commit frame are folded, a later identical frame that is not directly
// after the commit is its own transaction, and pages past the commit size
// are left out.
func TestScanPadding(t *testing.T) {
	const ps = 512
	w := newWALBuilder(ps, false, 7, 9)
	w.frame(5, 0, page(ps, 5)) // beyond the commit size: dropped
	w.frame(1, 0, page(ps, 1))
	w.frame(2, 3, page(ps, 2))
	w.frame(2, 3, page(ps, 2)) // padding
	w.frame(2, 3, page(ps, 2)) // padding
	w.frame(3, 0, page(ps, 3))
	w.frame(2, 4, page(ps, 2)) // commit size differs: not padding
	w.frame(2, 4, page(ps, 9)) // page differs: not padding
	_, end, txns := scanAll(t, w.b)
	fsz := int64(FrameHeaderSize + ps)
	if len(txns) != 3 {
		t.Fatalf("%d txns", len(txns))
	}
	if x := txns[0]; x.Size != 5*fsz || x.Commit != 3 || len(x.Pages) != 2 || x.Pages[0].Pgno != 1 || x.Pages[1].Pgno != 2 {
		t.Fatalf("txn 0: %s", summary(x))
	}
	if x := txns[1]; x.Offset != HeaderSize+5*fsz || x.Size != 2*fsz || len(x.Pages) != 2 {
		t.Fatalf("txn 1: %s", summary(x))
	}
	if x := txns[2]; x.Size != fsz || x.Pages[0].Data[0] != 9 {
		t.Fatalf("txn 2: %s", summary(x))
	}
	if end != int64(len(w.b)) {
		t.Fatalf("end %d, want %d", end, len(w.b))
	}
}
