package wal

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
)

// harness drives a Tracker and a shadow copy of the WAL file with the same
// operations, as fs/ would (the file first, then the tracker), and checks
// every emitted transaction independently against the bytes of the shadow:
// it must start where the previous one ended (or at 32 in a new generation),
// consist of fully written frames with the header's salts, extend the
// checksum chain, end in a commit frame followed only by padding copies, and
// carry exactly the latest pages of those frames. Position advancing without
// an emission must be over padding copies only.
//
// In strict mode (real SQLite traffic) it also checks after every operation
// that the tracker emitted exactly what Scan finds in the shadow: no commit
// late, none early.
type harness struct {
	t      testing.TB
	tr     *Tracker
	strict bool
	shadow []byte

	emitted  []Txn // every transaction emitted, in order
	genStart int   // index in emitted of the current generation's first
	fail     error // returned by onCommit once
	failed   int   // onCommit calls refused

	// The checker's own model of the generation.
	gen      bool
	genHdr   [HeaderSize]byte
	hdr      Header
	next     int64     // where the next transaction must start
	seed     [2]uint32 // checksum chain at next
	haveLast bool
	lastF    []byte // last commit frame
	ops      int
}

func newHarness(t testing.TB, strict bool) *harness {
	h := &harness{t: t, strict: strict}
	h.tr = NewTracker(h.onCommit)
	return h
}

func (h *harness) shadowHeader() (b [HeaderSize]byte) {
	copy(b[:], h.shadow)
	return b
}

func (h *harness) write(off int64, p []byte) error {
	h.ops++
	before := h.shadowHeader()
	if end := off + int64(len(p)); end > int64(len(h.shadow)) {
		h.shadow = append(h.shadow, make([]byte, end-int64(len(h.shadow)))...)
	}
	copy(h.shadow[off:], p)
	if after := h.shadowHeader(); after != before {
		h.headerChanged(after)
	}
	err := h.tr.Write(off, p)
	h.after(fmt.Sprintf("write(%d, %d bytes)", off, len(p)))
	return err
}

func (h *harness) truncate(size int64) {
	h.ops++
	if size < int64(len(h.shadow)) {
		h.shadow = h.shadow[:size]
	} else {
		h.shadow = append(h.shadow, make([]byte, size-int64(len(h.shadow)))...)
	}
	if size < HeaderSize {
		h.gen = false
	}
	h.tr.Truncate(size)
	h.after(fmt.Sprintf("truncate(%d)", size))
}

func (h *harness) unlink() {
	h.ops++
	h.shadow = nil
	h.gen = false
	h.tr.Unlink()
	h.after("unlink")
}

// headerChanged applies the spec's barrier rule: new header bytes that form
// a valid header start a generation at 32; anything else leaves none.
func (h *harness) headerChanged(b [HeaderSize]byte) {
	hdr, err := ParseHeader(b[:])
	if err != nil {
		h.gen = false
		return
	}
	h.gen, h.genHdr, h.hdr = true, b, hdr
	h.next, h.seed = HeaderSize, [2]uint32{hdr.Checksum1, hdr.Checksum2}
	h.haveLast = false
	h.genStart = len(h.emitted)
}

// verifyFrame is the checker's own frame validation, deliberately not
// sharing code with the tracker: salts equal the header's, the page number
// is not 0, and the checksum, computed word by word, continues the chain.
func verifyFrame(hdr Header, ck [2]uint32, f []byte) ([2]uint32, bool) {
	be := binary.BigEndian
	if be.Uint32(f[0:]) == 0 || be.Uint32(f[8:]) != hdr.Salt1 || be.Uint32(f[12:]) != hdr.Salt2 {
		return ck, false
	}
	word := binary.ByteOrder(binary.LittleEndian)
	if hdr.Magic == MagicBE {
		word = binary.BigEndian
	}
	s1, s2 := ck[0], ck[1]
	sum := func(b []byte) {
		for i := 0; i < len(b); i += 8 {
			s1 += word.Uint32(b[i:]) + s2
			s2 += word.Uint32(b[i+4:]) + s1
		}
	}
	sum(f[:8])
	sum(f[FrameHeaderSize:])
	return [2]uint32{s1, s2}, s1 == be.Uint32(f[16:]) && s2 == be.Uint32(f[20:])
}

func (h *harness) fsz() int64 { return FrameHeaderSize + int64(h.hdr.PageSize) }

// shadowFrame returns the frame at off in the shadow, if the file holds it.
func (h *harness) shadowFrame(off int64) []byte {
	if off < 0 || off+h.fsz() > int64(len(h.shadow)) {
		return nil
	}
	return h.shadow[off : off+h.fsz()]
}

func (h *harness) onCommit(x *Txn) error {
	t := h.t
	t.Helper()
	_ = h.tr.Position() // must not deadlock
	if !h.gen {
		t.Fatalf("op %d: emitted %s with no valid header in the file", h.ops, summary(*x))
	}
	if x.Salt1 != h.hdr.Salt1 || x.Salt2 != h.hdr.Salt2 || x.PageSize != h.hdr.PageSize {
		t.Fatalf("op %d: emitted %s under header salts %08x/%08x", h.ops, summary(*x), h.hdr.Salt1, h.hdr.Salt2)
	}
	h.absorb(x.Offset, "emit") // padding absorbed earlier in the same write
	if x.Offset != h.next {
		t.Fatalf("op %d: emitted %s, next transaction starts at %d", h.ops, summary(*x), h.next)
	}
	fsz := h.fsz()
	if x.Size <= 0 || x.Size%fsz != 0 {
		t.Fatalf("op %d: emitted %s: size not whole frames", h.ops, summary(*x))
	}
	latest := map[uint32][]byte{}
	ck := h.seed
	var commitF []byte
	for off := x.Offset; off < x.End(); off += fsz {
		f := h.shadowFrame(off)
		if f == nil {
			t.Fatalf("op %d: emitted %s: frame at %d not in the file (size %d)", h.ops, summary(*x), off, len(h.shadow))
		}
		var ok bool
		if ck, ok = verifyFrame(h.hdr, ck, f); !ok {
			t.Fatalf("op %d: emitted %s: frame at %d does not continue the chain", h.ops, summary(*x), off)
		}
		pgno, commit := binary.BigEndian.Uint32(f), binary.BigEndian.Uint32(f[4:])
		switch {
		case commitF == nil:
			latest[pgno] = bytes.Clone(f[FrameHeaderSize:])
			if commit != 0 {
				commitF = bytes.Clone(f)
			}
		case !bytes.Equal(f[:8], commitF[:8]) || !bytes.Equal(f[FrameHeaderSize:], commitF[FrameHeaderSize:]):
			t.Fatalf("op %d: emitted %s: frame at %d after the commit frame is not padding", h.ops, summary(*x), off)
		}
	}
	if commitF == nil {
		t.Fatalf("op %d: emitted %s without a commit frame", h.ops, summary(*x))
	}
	want := Txn{Salt1: x.Salt1, Salt2: x.Salt2, PageSize: x.PageSize, Offset: x.Offset, Size: x.Size,
		Commit: binary.BigEndian.Uint32(commitF[4:])}
	for pgno, data := range latest {
		if pgno <= want.Commit {
			want.Pages = append(want.Pages, Page{Pgno: pgno, Data: data})
		}
	}
	slices.SortFunc(want.Pages, func(a, b Page) int { return cmp.Compare(a.Pgno, b.Pgno) })
	if err := sameTxns([]Txn{*x}, []Txn{want}); err != nil {
		t.Fatalf("op %d: emitted transaction differs from its frames: %v", h.ops, err)
	}
	if h.fail != nil {
		err := h.fail
		h.fail = nil
		h.failed++
		return err
	}
	h.emitted = append(h.emitted, cloneTxn(x))
	h.next, h.seed, h.haveLast, h.lastF = x.End(), ck, true, commitF
	return nil
}

// after checks the position (and in strict mode everything) after an op.
func (h *harness) after(op string) {
	t := h.t
	t.Helper()
	pos := h.tr.Position()
	if !h.gen {
		if pos != (Position{}) {
			t.Fatalf("op %d %s: position %+v without a valid header", h.ops, op, pos)
		}
		return
	}
	if pos.Salt1 != h.hdr.Salt1 || pos.Salt2 != h.hdr.Salt2 || pos.PageSize != h.hdr.PageSize || pos.Offset < h.next {
		t.Fatalf("op %d %s: position %+v, header %08x/%08x, next %d", h.ops, op, pos, h.hdr.Salt1, h.hdr.Salt2, h.next)
	}
	h.absorb(pos.Offset, op)
	if h.strict {
		h.checkStrict(op, pos)
	}
}

// absorb accounts for the tracker moving past padding copies of the last
// commit frame without emitting (checked against the shadow).
func (h *harness) absorb(upTo int64, op string) {
	t := h.t
	t.Helper()
	for h.next < upTo {
		f := h.shadowFrame(h.next)
		if f == nil || !h.haveLast || !bytes.Equal(f[:8], h.lastF[:8]) || !bytes.Equal(f[FrameHeaderSize:], h.lastF[FrameHeaderSize:]) {
			t.Fatalf("op %d %s: position moved to %d over a frame at %d that is not padding", h.ops, op, upTo, h.next)
		}
		var ok bool
		if h.seed, ok = verifyFrame(h.hdr, h.seed, f); !ok {
			t.Fatalf("op %d %s: position moved over an invalid padding frame at %d", h.ops, op, h.next)
		}
		h.next += h.fsz()
	}
}

func (h *harness) checkStrict(op string, pos Position) {
	t := h.t
	t.Helper()
	var c collector
	_, end, err := Scan(bytes.NewReader(h.shadow), int64(len(h.shadow)), c.onCommit)
	if err != nil {
		t.Fatal(err)
	}
	got := h.emitted[h.genStart:]
	if len(got) != len(c.txns) {
		t.Fatalf("op %d %s: %d transactions emitted in this generation, Scan of the file finds %d", h.ops, op, len(got), len(c.txns))
	}
	for i := range got {
		g, w := got[i], c.txns[i]
		if g.Size > w.Size {
			t.Fatalf("op %d %s: txn %d larger than Scan's: %s vs %s", h.ops, op, i, summary(g), summary(w))
		}
		g.Size = w.Size // padding that came after emission
		if err := sameTxns([]Txn{g}, []Txn{w}); err != nil {
			t.Fatalf("op %d %s: %v", h.ops, op, err)
		}
	}
	if pos.Offset != end {
		t.Fatalf("op %d %s: position %d, Scan ends at %d", h.ops, op, pos.Offset, end)
	}
}
