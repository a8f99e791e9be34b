package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestHeaderRealSQLite decodes the headers SQLite wrote: page sizes up to
// 65536 stored as the full value, the native (little-endian here) checksum
// order, and a header checksum that recomputes.
func TestHeaderRealSQLite(t *testing.T) {
	for _, c := range corpus {
		dbb, walb := loadCorpus(t, c)
		h, err := ParseHeader(walb)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if h.Magic != MagicLE || h.BigEndian() || h.Version != Version {
			t.Fatalf("%s: %+v", c.name, h)
		}
		if h.PageSize != c.pageSize || binary.BigEndian.Uint32(walb[8:]) != c.pageSize {
			t.Fatalf("%s: page size %d, want %d", c.name, h.PageSize, c.pageSize)
		}
		// The db header agrees (where 65536 is stored as 1).
		dbps := uint32(binary.BigEndian.Uint16(dbb[16:]))
		if dbps == 1 {
			dbps = 65536
		}
		if dbps != h.PageSize {
			t.Fatalf("%s: db page size %d, WAL %d", c.name, dbps, h.PageSize)
		}
		wantSeq := uint32(0)
		if c.name == "restart" {
			wantSeq = 1
		}
		if h.Seq != wantSeq {
			t.Fatalf("%s: checkpoint sequence %d, want %d", c.name, h.Seq, wantSeq)
		}
		b, _ := h.AppendBinary(nil)
		if !bytes.Equal(b, walb[:HeaderSize]) {
			t.Fatalf("%s: AppendBinary does not round-trip", c.name)
		}
		if h.Seal() != h {
			t.Fatalf("%s: Seal computes another checksum than SQLite", c.name)
		}
	}
}

// TestFrameChecksumRealSQLite recomputes the chain of the committed frames
// of every real WAL by hand from Checksum and compares with what SQLite stored.
func TestFrameChecksumRealSQLite(t *testing.T) {
	for _, c := range corpus {
		_, walb := loadCorpus(t, c)
		h, _ := ParseHeader(walb)
		_, end, _ := scanAll(t, walb)
		s1, s2 := h.Checksum1, h.Checksum2
		fsz := FrameHeaderSize + int(h.PageSize)
		for off := HeaderSize; off < int(end); off += fsz {
			fh := ParseFrameHeader(walb[off:])
			if fh.Pgno == 0 || fh.Salt1 != h.Salt1 || fh.Salt2 != h.Salt2 {
				t.Fatalf("%s: frame at %d: %+v", c.name, off, fh)
			}
			s1, s2 = Checksum(false, s1, s2, walb[off:off+8])
			s1, s2 = Checksum(false, s1, s2, walb[off+FrameHeaderSize:off+fsz])
			if s1 != fh.Checksum1 || s2 != fh.Checksum2 {
				t.Fatalf("%s: frame at %d: checksum %08x%08x, stored %08x%08x", c.name, off, s1, s2, fh.Checksum1, fh.Checksum2)
			}
			b, _ := fh.AppendBinary(nil)
			if !bytes.Equal(b, walb[off:off+FrameHeaderSize]) {
				t.Fatalf("%s: frame header does not round-trip", c.name)
			}
		}
	}
}

func TestChecksumByteOrders(t *testing.T) {
	// Two words 1 and 2 in each byte order: s1 = 1, s2 = 2 + 1.
	le := []byte{1, 0, 0, 0, 2, 0, 0, 0}
	be := []byte{0, 0, 0, 1, 0, 0, 0, 2}
	if s1, s2 := Checksum(false, 0, 0, le); s1 != 1 || s2 != 3 {
		t.Fatalf("little-endian: %d %d", s1, s2)
	}
	if s1, s2 := Checksum(true, 0, 0, be); s1 != 1 || s2 != 3 {
		t.Fatalf("big-endian: %d %d", s1, s2)
	}
	// Continuing is the same as one pass; the unrolled loop equals the
	// plain one; arithmetic wraps.
	b := bytes.Repeat([]byte{0xff, 0x13, 0x37, 0x80, 0x01}, 200)[:1000]
	for _, bigEndian := range []bool{false, true} {
		a1, a2 := Checksum(bigEndian, 7, 9, b)
		c1, c2 := Checksum(bigEndian, 7, 9, b[:40])
		c1, c2 = Checksum(bigEndian, c1, c2, b[40:])
		var r1, r2 uint32 = 7, 9
		for i := 0; i+8 <= len(b); i += 8 {
			var x, y uint32
			if bigEndian {
				x, y = binary.BigEndian.Uint32(b[i:]), binary.BigEndian.Uint32(b[i+4:])
			} else {
				x, y = binary.LittleEndian.Uint32(b[i:]), binary.LittleEndian.Uint32(b[i+4:])
			}
			r1 += x + r2
			r2 += y + r1
		}
		if a1 != c1 || a2 != c2 || a1 != r1 || a2 != r2 {
			t.Fatalf("bigEndian=%v: %x %x / %x %x / %x %x", bigEndian, a1, a2, c1, c2, r1, r2)
		}
	}
}

func TestParseHeaderRejects(t *testing.T) {
	good := newWALBuilder(4096, false, 1, 2).b
	if _, err := ParseHeader(good); err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	reseal := func(f func(h *Header)) []byte {
		h, _ := ParseHeader(good)
		f(&h)
		b, _ := h.Seal().AppendBinary(nil)
		return b
	}
	cases := map[string][]byte{
		"short":          good[:31],
		"magic":          reseal(func(h *Header) { h.Magic = 0x377f0684 }),
		"version":        reseal(func(h *Header) { h.Version = 3007001 }),
		"page size 0":    reseal(func(h *Header) { h.PageSize = 0 }),
		"page size 256":  reseal(func(h *Header) { h.PageSize = 256 }),
		"page size 3000": reseal(func(h *Header) { h.PageSize = 3000 }),
		"page size 128k": reseal(func(h *Header) { h.PageSize = 131072 }),
		"checksum":       mutate(func(b []byte) { b[31] ^= 1 }),
		"salt":           mutate(func(b []byte) { b[17] ^= 1 }),
		"byte order":     mutate(func(b []byte) { b[3] ^= 1 }), // same words, other order: checksum fails
	}
	for name, b := range cases {
		if _, err := ParseHeader(b); !errors.Is(err, ErrInvalidHeader) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	for _, ps := range []uint32{512, 1024, 32768, 65536} {
		if _, err := ParseHeader(newWALBuilder(ps, true, 3, 4).b); err != nil {
			t.Errorf("page size %d big-endian: %v", ps, err)
		}
	}
}

func TestParseFrameHeaderShort(t *testing.T) {
	if fh := ParseFrameHeader(make([]byte, 23)); fh != (FrameHeader{}) {
		t.Fatalf("%+v", fh)
	}
}

func TestTouchesHeader(t *testing.T) {
	cases := []struct {
		off  int64
		n    int
		want bool
	}{
		{0, 32, true}, {0, 1, true}, {31, 1, true}, {31, 100, true}, {-5, 6, true},
		{32, 24, false}, {0, 0, false}, {-5, 5, false}, {4096, 4096, false},
	}
	for _, c := range cases {
		if got := TouchesHeader(c.off, c.n); got != c.want {
			t.Errorf("TouchesHeader(%d, %d) = %v", c.off, c.n, got)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	for _, c := range corpus {
		b, err := os.ReadFile(filepath.Join(corpusDir, c.name+".db-wal"))
		if err == nil {
			f.Add(b[:HeaderSize])
		}
	}
	f.Add(newWALBuilder(65536, true, 1, 2).b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidHeader) || h != (Header{}) {
				t.Fatalf("err %v with header %+v", err, h)
			}
			return
		}
		if !validPageSize(h.PageSize) || h.Version != Version || h.Magic&^1 != MagicLE {
			t.Fatalf("accepted %+v", h)
		}
		out, _ := h.AppendBinary(nil)
		if !bytes.Equal(out, b[:HeaderSize]) || h.Seal() != h {
			t.Fatalf("accepted header does not round-trip: %+v", h)
		}
	})
}
