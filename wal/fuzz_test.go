package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var errFuzzCommit = errors.New("fuzz: onCommit refused")

// fuzzWALs are the real WALs (and their big-endian transcodings) the fuzz
// programs write pieces of.
var fuzzWALs = sync.OnceValue(func() [][]byte {
	var out [][]byte
	for _, c := range corpus {
		b, err := os.ReadFile(filepath.Join(corpusDir, c.name+".db-wal"))
		if err != nil || c.pageSize > 4096 {
			continue // 64 KiB pages make each run too slow to explore much
		}
		out = append(out, b, transcode(&testing.T{}, b))
	}
	return out
})

// prog reads a fuzz input as a program; it yields zeros once exhausted.
type prog struct{ b []byte }

func (p *prog) done() bool { return len(p.b) == 0 }

func (p *prog) u8() int {
	if len(p.b) == 0 {
		return 0
	}
	v := p.b[0]
	p.b = p.b[1:]
	return int(v)
}

func (p *prog) u16() int { return p.u8()<<8 | p.u8() }

func (p *prog) bytes(n int) []byte {
	n = min(n, len(p.b))
	v := p.b[:n]
	p.b = p.b[n:]
	return v
}

// FuzzTracker runs random sequences of writes (pieces of a real WAL in
// order, re-writes, garbage, other generations' headers), truncates,
// unlinks and refused commits through a tracker, checking with the harness
// that every emitted transaction is a valid commit of the bytes the file
// held, in order, never twice. At the end it unlinks and writes the whole
// WAL again: whatever happened before, the tracker must then emit exactly
// the transactions Scan finds.
func FuzzTracker(f *testing.F) {
	for i := range fuzzWALs() {
		f.Add(uint8(i), []byte{0, 0xff, 0xff, 1, 0x04, 0x18, 2, 0x10, 0x00, 0xff, 0xff, 0xff})
		f.Add(uint8(i), []byte{0, 0, 32, 3, 0x20, 0, 4, 0, 40, 0, 200, 5, 0x01, 0x00, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9})
		f.Add(uint8(i), []byte{0, 0xff, 0xff, 6, 0, 0, 0, 0, 32, 0, 0xff, 0xff, 7, 1, 0, 0xff, 0xff, 0, 0xff, 0xff})
	}
	f.Fuzz(func(t *testing.T, which uint8, program []byte) {
		wals := fuzzWALs()
		if len(wals) == 0 {
			t.Skip("no testdata")
		}
		base := wals[int(which)%len(wals)]
		hdr, err := ParseHeader(base)
		if err != nil {
			t.Fatal(err)
		}
		fsz := FrameHeaderSize + int(hdr.PageSize)
		limit := len(base) + 2*fsz // keep the shadow small

		h := newHarness(t, false)
		h.tr.SetMaxPending(int64(len(base)))
		p := &prog{program}
		cursor := 0 // next byte of base written in order
		check := func(err error) {
			if err != nil && !errors.Is(err, errFuzzCommit) && !errors.Is(err, ErrPendingTooLarge) {
				t.Fatalf("op %d: unexpected error %v", h.ops, err)
			}
		}
		for ops := 0; !p.done() && ops < 500; ops++ {
			switch p.u8() % 8 {
			case 0, 1, 2: // the next piece of the WAL, in order
				n := 1 + p.u16()%(2*fsz)
				n = min(n, len(base)-cursor)
				if n > 0 {
					check(h.write(int64(cursor), base[cursor:cursor+n]))
					cursor += n
				}
			case 3: // re-write real bytes already written
				if cursor > 0 {
					off := p.u16() * 8 % cursor
					n := min(1+p.u16()%(2*fsz), cursor-off)
					check(h.write(int64(off), base[off:off+n]))
				}
			case 4: // garbage
				off := (p.u16() << 2) % limit
				check(h.write(int64(off), bytes.Clone(p.bytes(1+p.u8()))))
			case 5: // truncate
				size := p.u16() * 4 % limit
				if p.u8()%4 == 0 {
					size = 0
				}
				h.truncate(int64(size))
				cursor = min(cursor, size)
			case 6: // a restart: another generation's header, then its frames
				g := reheader(base, uint32(1+p.u8()))
				check(h.write(0, g[:HeaderSize]))
				if n := min(p.u16()%len(g), len(g)-HeaderSize); n > 0 {
					check(h.write(HeaderSize, g[HeaderSize:HeaderSize+n]))
				}
				cursor = 0
			case 7:
				switch p.u8() % 3 {
				case 0:
					h.unlink()
					cursor = 0
				case 1:
					h.fail = errFuzzCommit
				case 2:
					cursor = 0 // SQLite starting the same WAL over
				}
			}
		}

		// Liveness: a fresh WAL written in full is followed exactly.
		h.fail = nil
		h.unlink()
		_, end, want := scanAll(t, base)
		before := len(h.emitted)
		for off := 0; off < len(base); off += fsz {
			check(h.write(int64(off), base[off:min(off+fsz, len(base))]))
		}
		if got := len(h.emitted) - before; got != len(want) || h.tr.Position().Offset != end {
			t.Fatalf("after a fresh WAL: %d emitted, want %d; position %d, want %d",
				got, len(want), h.tr.Position().Offset, end)
		}
	})
}

// reheader returns base under a new generation: salt1 moved on, salt2
// changed, every valid frame re-chained. Frames past the last valid one are
// kept as they are (stale under the new salts).
func reheader(base []byte, bump uint32) []byte {
	h, err := ParseHeader(base)
	if err != nil {
		return base
	}
	oldCk := [2]uint32{h.Checksum1, h.Checksum2}
	oldSalt1, oldSalt2 := h.Salt1, h.Salt2
	h.Seq++
	h.Salt1 += bump
	h.Salt2 ^= 0x5a5a5a5a
	h = h.Seal()
	out, _ := h.AppendBinary(nil)
	ck := [2]uint32{h.Checksum1, h.Checksum2}
	fsz := FrameHeaderSize + int(h.PageSize)
	off := HeaderSize
	for ; off+fsz <= len(base); off += fsz {
		f := bytes.Clone(base[off : off+fsz])
		c1, c2, ok := checkFrame(h.BigEndian(), oldSalt1, oldSalt2, oldCk[0], oldCk[1], f)
		if !ok {
			break
		}
		oldCk = [2]uint32{c1, c2}
		binary.BigEndian.PutUint32(f[8:], h.Salt1)
		binary.BigEndian.PutUint32(f[12:], h.Salt2)
		ck[0], ck[1] = frameChecksum(h.BigEndian(), ck[0], ck[1], f)
		binary.BigEndian.PutUint32(f[16:], ck[0])
		binary.BigEndian.PutUint32(f[20:], ck[1])
		out = append(out, f...)
	}
	return append(out, base[off:]...)
}
