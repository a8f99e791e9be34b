package wal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// cloneTxn deep-copies a Txn out of a callback.
func cloneTxn(x *Txn) Txn {
	c := *x
	c.Pages = make([]Page, len(x.Pages))
	for i, p := range x.Pages {
		c.Pages[i] = Page{Pgno: p.Pgno, Data: bytes.Clone(p.Data)}
	}
	return c
}

// collector gathers emitted transactions and checks the order invariants as
// they come.
type collector struct {
	txns []Txn
	err  error // returned by the next call, once
}

func (c *collector) onCommit(x *Txn) error {
	if err := c.err; err != nil {
		c.err = nil
		return err
	}
	c.txns = append(c.txns, cloneTxn(x))
	return nil
}

func scanAll(t testing.TB, wal []byte) (Header, int64, []Txn) {
	t.Helper()
	var c collector
	hdr, end, err := Scan(bytes.NewReader(wal), int64(len(wal)), c.onCommit)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return hdr, end, c.txns
}

// apply plays transactions onto a database file the way a checkpoint does.
func apply(db []byte, txns []Txn) []byte {
	db = bytes.Clone(db)
	for _, x := range txns {
		size := int(x.Commit) * int(x.PageSize)
		if len(db) < size {
			db = append(db, make([]byte, size-len(db))...)
		}
		for _, p := range x.Pages {
			off := int(p.Pgno-1) * int(x.PageSize)
			copy(db[off:off+int(x.PageSize)], p.Data)
		}
		db = db[:size]
	}
	return db
}

// sameTxns compares emitted transactions with what Scan found, page bytes
// included.
func sameTxns(got, want []Txn) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d transactions, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Salt1 != w.Salt1 || g.Salt2 != w.Salt2 || g.PageSize != w.PageSize ||
			g.Offset != w.Offset || g.Size != w.Size || g.Commit != w.Commit || len(g.Pages) != len(w.Pages) {
			return fmt.Errorf("txn %d: got %+v, want %+v", i, summary(g), summary(w))
		}
		for j := range g.Pages {
			if g.Pages[j].Pgno != w.Pages[j].Pgno || !bytes.Equal(g.Pages[j].Data, w.Pages[j].Data) {
				return fmt.Errorf("txn %d: page %d differs (pgno %d vs %d)", i, j, g.Pages[j].Pgno, w.Pages[j].Pgno)
			}
		}
	}
	return nil
}

func summary(x Txn) string {
	pg := make([]uint32, len(x.Pages))
	for i, p := range x.Pages {
		pg[i] = p.Pgno
	}
	return fmt.Sprintf("{salt %08x/%08x ps %d off %d size %d commit %d pages %v}",
		x.Salt1, x.Salt2, x.PageSize, x.Offset, x.Size, x.Commit, pg)
}

// walBuilder writes synthetic WALs the way SQLite's walFrames does, for the
// cases real traffic cannot be steered into.
type walBuilder struct {
	hdr Header
	b   []byte
	ck  [2]uint32
}

func newWALBuilder(pageSize uint32, bigEndian bool, salt1, salt2 uint32) *walBuilder {
	magic := uint32(MagicLE)
	if bigEndian {
		magic = MagicBE
	}
	h := Header{Magic: magic, Version: Version, PageSize: pageSize, Salt1: salt1, Salt2: salt2}.Seal()
	b, _ := h.AppendBinary(nil)
	return &walBuilder{hdr: h, b: b, ck: [2]uint32{h.Checksum1, h.Checksum2}}
}

// encodeFrame returns a valid frame continuing the chain ck (updated).
func encodeFrame(h Header, ck *[2]uint32, pgno, commit uint32, page []byte) []byte {
	f := make([]byte, FrameHeaderSize, FrameHeaderSize+len(page))
	binary.BigEndian.PutUint32(f[0:], pgno)
	binary.BigEndian.PutUint32(f[4:], commit)
	binary.BigEndian.PutUint32(f[8:], h.Salt1)
	binary.BigEndian.PutUint32(f[12:], h.Salt2)
	f = append(f, page...)
	ck[0], ck[1] = frameChecksum(h.BigEndian(), ck[0], ck[1], f)
	binary.BigEndian.PutUint32(f[16:], ck[0])
	binary.BigEndian.PutUint32(f[20:], ck[1])
	return f
}

func (w *walBuilder) frame(pgno, commit uint32, page []byte) []byte {
	f := encodeFrame(w.hdr, &w.ck, pgno, commit, page)
	w.b = append(w.b, f...)
	return f
}

func page(pageSize uint32, fill byte) []byte { return bytes.Repeat([]byte{fill}, int(pageSize)) }

// transcode rewrites a WAL with the other checksum byte order (what SQLite
// on a big-endian machine would have written), keeping frames valid exactly
// as far as they were.
func transcode(t testing.TB, wal []byte) []byte {
	t.Helper()
	h, err := ParseHeader(wal)
	if err != nil {
		t.Fatal(err)
	}
	h.Magic ^= 1
	h = h.Seal()
	out, _ := h.AppendBinary(nil)
	oldCk := [2]uint32{}
	oldCk[0], oldCk[1] = Checksum(!h.BigEndian(), 0, 0, wal[:24])
	newCk := [2]uint32{h.Checksum1, h.Checksum2}
	fsz := FrameHeaderSize + int(h.PageSize)
	for off := HeaderSize; off+fsz <= len(wal); off += fsz {
		f := bytes.Clone(wal[off : off+fsz])
		c1, c2, ok := checkFrame(!h.BigEndian(), h.Salt1, h.Salt2, oldCk[0], oldCk[1], f)
		if !ok {
			out = append(out, wal[off:]...) // stays invalid
			return out
		}
		oldCk = [2]uint32{c1, c2}
		newCk[0], newCk[1] = frameChecksum(h.BigEndian(), newCk[0], newCk[1], f)
		binary.BigEndian.PutUint32(f[16:], newCk[0])
		binary.BigEndian.PutUint32(f[20:], newCk[1])
		out = append(out, f...)
	}
	return append(out, wal[len(out):]...)
}

// write is one piece handed to a tracker.
type write struct {
	off  int64
	data []byte
}

// splitter cuts a frame-aligned byte range into the writes a tracker sees.
type splitter struct {
	name  string
	split func(r *rand.Rand, off int64, b []byte, pageSize int) []write
}

var splitters = []splitter{
	{"whole", func(_ *rand.Rand, off int64, b []byte, _ int) []write { return []write{{off, b}} }},
	{"frames", func(_ *rand.Rand, off int64, b []byte, ps int) []write {
		return cuts(off, b, func(int) []int { return []int{FrameHeaderSize + ps} })
	}},
	{"24+page", func(_ *rand.Rand, off int64, b []byte, ps int) []write {
		return cuts(off, b, func(int) []int { return []int{FrameHeaderSize, ps} })
	}},
	{"24+4040+56", func(_ *rand.Rand, off int64, b []byte, ps int) []write {
		// The kernel splits the page at page-cache boundaries.
		return cuts(off, b, func(int) []int {
			if ps <= 4040 {
				return []int{FrameHeaderSize, ps}
			}
			return []int{FrameHeaderSize, 4040, ps - 4040}
		})
	}},
	{"random", func(r *rand.Rand, off int64, b []byte, _ int) []write {
		var ws []write
		for len(b) > 0 {
			n := min(len(b), 1+r.IntN(3000))
			ws = append(ws, write{off, b[:n]})
			off, b = off+int64(n), b[n:]
		}
		return ws
	}},
}

// cuts splits b into frames, each cut into the sizes pattern returns.
func cuts(off int64, b []byte, pattern func(frame int) []int) []write {
	var ws []write
	for i := 0; len(b) > 0; i++ {
		for _, n := range pattern(i) {
			n = min(n, len(b))
			if n == 0 {
				break
			}
			ws = append(ws, write{off, b[:n]})
			off, b = off+int64(n), b[n:]
		}
	}
	return ws
}
