package wal

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestTrackerCorpus feeds every real WAL to a tracker in many write-splitting
// patterns, optionally re-writing the pending range in place (the same bytes,
// or garbage and then the right bytes back), and checks after every write
// that the tracker emitted exactly what Scan finds in the file so far.
func TestTrackerCorpus(t *testing.T) {
	for ci, c := range corpus {
		_, walb := loadCorpus(t, c)
		_, end, want := scanAll(t, walb)
		for si, sp := range splitters {
			for _, rewrite := range []bool{false, true} {
				name := c.name + "/" + sp.name
				if rewrite {
					name += "/rewrite"
				}
				t.Run(name, func(t *testing.T) {
					r := rand.New(rand.NewPCG(uint64(ci), uint64(si)))
					h := newHarness(t, true)
					mustWrite(t, h, 0, walb[:HeaderSize])
					for _, w := range sp.split(r, HeaderSize, walb[HeaderSize:], int(c.pageSize)) {
						mustWrite(t, h, w.off, w.data)
						if rewrite && r.IntN(3) == 0 {
							rewritePending(t, h, r, walb)
						}
					}
					got := h.emitted
					if len(got) != len(want) {
						t.Fatalf("%d transactions, want %d", len(got), len(want))
					}
					for i := range got {
						if sp.name == "whole" && got[i].Size != want[i].Size {
							t.Fatalf("txn %d: padding known at emission not folded: %s vs %s", i, summary(got[i]), summary(want[i]))
						}
						got[i].Size = want[i].Size
					}
					if err := sameTxns(got, want); err != nil {
						t.Fatal(err)
					}
					if pos := h.tr.Position(); pos.Offset != end {
						t.Fatalf("position %d, want %d", pos.Offset, end)
					}
				})
			}
		}
	}
}

func mustWrite(t testing.TB, h *harness, off int64, p []byte) {
	t.Helper()
	if err := h.write(off, p); err != nil {
		t.Fatalf("write(%d, %d bytes): %v", off, len(p), err)
	}
}

// rewritePending re-writes part of what was written past the tracker's
// position: either the same bytes again, or garbage then the final bytes.
func rewritePending(t testing.TB, h *harness, r *rand.Rand, final []byte) {
	t.Helper()
	lo, hi := h.tr.Position().Offset, int64(len(h.shadow))
	if lo >= hi {
		return
	}
	a := lo + r.Int64N(hi-lo)
	b := a + 1 + r.Int64N(min(hi-a, 5000))
	if r.IntN(2) == 0 {
		junk := make([]byte, b-a)
		for i := range junk {
			junk[i] = byte(r.Uint32())
		}
		mustWrite(t, h, a, junk)
	}
	for _, w := range splitters[4].split(r, a, final[a:b], 0) {
		mustWrite(t, h, w.off, w.data)
	}
}

// sqliteTxn writes one transaction the way walFrames does, including cache
// spills and in-place rewrites: frames are appended as a 24-byte header and
// a page write; once a spilled frame's page is overwritten in place, every
// later frame is written with zero salts and checksums, and at commit the
// headers from the first rewritten frame to the commit frame are rewritten
// one by one (walRewriteChecksums).
type sqliteTxn struct {
	h      *harness
	w      *walBuilder // the chain as of the last commit
	start  int64       // offset of the transaction's first frame
	frames []txFrame
	reCk   int // first frame rewritten in place, -1 if none
}

type txFrame struct {
	pgno uint32
	data []byte
}

func newSQLiteTxn(h *harness, w *walBuilder) *sqliteTxn {
	return &sqliteTxn{h: h, w: w, start: int64(len(w.b)), reCk: -1}
}

func (x *sqliteTxn) off(i int) int64 {
	return x.start + int64(i)*(FrameHeaderSize+int64(x.w.hdr.PageSize))
}

// write appends pgno or, when this transaction already wrote it (a spill),
// overwrites its page in place.
func (x *sqliteTxn) write(t testing.TB, pgno uint32, data []byte, commit uint32) {
	t.Helper()
	if commit == 0 {
		for i, f := range x.frames {
			if f.pgno == pgno {
				x.frames[i].data = data
				if x.reCk < 0 || i < x.reCk {
					x.reCk = i
				}
				mustWrite(t, x.h, x.off(i)+FrameHeaderSize, data)
				return
			}
		}
	}
	i := len(x.frames)
	x.frames = append(x.frames, txFrame{pgno, data})
	ck := x.chainBefore(i)
	f := encodeFrame(x.w.hdr, &ck, pgno, commit, data)
	if x.reCk >= 0 {
		clear(f[8:24])
	}
	mustWrite(t, x.h, x.off(i), f[:FrameHeaderSize])
	mustWrite(t, x.h, x.off(i)+FrameHeaderSize, data)
}

func (x *sqliteTxn) chainBefore(i int) [2]uint32 {
	ck := x.w.ck
	for _, f := range x.frames[:i] {
		encodeFrame(x.w.hdr, &ck, f.pgno, 0, f.data)
	}
	return ck
}

// commit writes the commit frame and, if needed, the header rewrite pass;
// onLast runs just before the last write of the transaction.
func (x *sqliteTxn) commit(t testing.TB, pgno, size uint32, data []byte, onLast func()) {
	t.Helper()
	if x.reCk < 0 {
		onLast()
	}
	x.write(t, pgno, data, size)
	if x.reCk >= 0 {
		ck := x.chainBefore(x.reCk)
		for i := x.reCk; i < len(x.frames); i++ {
			var c uint32
			if i == len(x.frames)-1 {
				c = size
				onLast()
			}
			f := encodeFrame(x.w.hdr, &ck, x.frames[i].pgno, c, x.frames[i].data)
			mustWrite(t, x.h, x.off(i), f[:FrameHeaderSize])
		}
	}
	for i, f := range x.frames {
		c := uint32(0)
		if i == len(x.frames)-1 {
			c = size
		}
		x.w.frame(f.pgno, c, f.data)
	}
}

func TestTrackerInPlaceRewrite(t *testing.T) {
	const ps = 1024
	for _, be := range []bool{false, true} {
		h := newHarness(t, true)
		w := newWALBuilder(ps, be, 41, 43)
		mustWrite(t, h, 0, w.b)

		// Rewrites in the very first transaction: the rewrite pass
		// seeds from the header checksum.
		x := newSQLiteTxn(h, w)
		x.write(t, 1, page(ps, 1), 0)
		x.write(t, 2, page(ps, 2), 0)
		x.write(t, 3, page(ps, 3), 0)
		x.write(t, 1, page(ps, 11), 0) // in place, frame 0
		x.write(t, 4, page(ps, 4), 0)  // zero salts from here
		x.write(t, 2, page(ps, 12), 0) // in place again, later frame
		n := len(h.emitted)
		x.commit(t, 5, 5, page(ps, 5), func() {
			if len(h.emitted) != n {
				t.Fatalf("emitted before the last header rewrite")
			}
		})
		if len(h.emitted) != n+1 {
			t.Fatalf("%d emitted, want %d", len(h.emitted), n+1)
		}
		got := h.emitted[n]
		if len(got.Pages) != 5 || got.Pages[0].Data[0] != 11 || got.Pages[1].Data[0] != 12 || got.Pages[2].Data[0] != 3 {
			t.Fatalf("emitted %s with stale pages", summary(got))
		}

		// A later transaction: the pass seeds from the frame before it.
		x = newSQLiteTxn(h, w)
		x.write(t, 2, page(ps, 22), 0)
		x.write(t, 3, page(ps, 23), 0)
		x.write(t, 3, page(ps, 33), 0) // in place, frame 1
		x.commit(t, 1, 5, page(ps, 21), func() {})
		if len(h.emitted) != n+2 || h.emitted[n+1].Pages[2].Data[0] != 33 {
			t.Fatalf("second transaction: %d emitted", len(h.emitted))
		}
		if _, end, txns := scanAll(t, w.b); end != h.tr.Position().Offset || len(txns) != 2 {
			t.Fatalf("builder and tracker disagree: end %d vs %d", end, h.tr.Position().Offset)
		}
	}
}

func TestTrackerRolledBackSpill(t *testing.T) {
	const ps = 512
	h := newHarness(t, true)
	w := newWALBuilder(ps, false, 1, 2)
	mustWrite(t, h, 0, w.b)
	x := newSQLiteTxn(h, w)
	x.commit(t, 1, 1, page(ps, 1), func() {})

	// Spill four frames, then roll back: the WAL keeps them, uncommitted.
	spill := *w
	spill.b = bytes.Clone(w.b)
	y := newSQLiteTxn(h, &spill)
	for i := range 4 {
		y.write(t, uint32(2+i), page(ps, 0x50+byte(i)), 0)
	}
	if len(h.emitted) != 1 {
		t.Fatalf("spill emitted")
	}
	// The next transaction starts over at the same offset, shorter.
	z := newSQLiteTxn(h, w)
	z.write(t, 2, page(ps, 0x60), 0)
	z.commit(t, 3, 3, page(ps, 0x61), func() {})
	if len(h.emitted) != 2 || h.emitted[1].Pages[0].Data[0] != 0x60 || h.emitted[1].Pages[1].Data[0] != 0x61 {
		t.Fatalf("after rollback: %d emitted", len(h.emitted))
	}
}

func TestTrackerPaddingAfterEmit(t *testing.T) {
	const ps = 1024
	h := newHarness(t, true)
	w := newWALBuilder(ps, false, 5, 6)
	mustWrite(t, h, 0, w.b)
	fsz := int64(FrameHeaderSize + ps)

	f1 := w.frame(1, 0, page(ps, 1))
	f2 := w.frame(2, 2, page(ps, 2))
	mustWrite(t, h, HeaderSize, append(bytes.Clone(f1), f2...))
	if len(h.emitted) != 1 || h.emitted[0].Size != 2*fsz {
		t.Fatalf("commit not emitted")
	}
	// Two padding copies; the second split as at a sync point.
	p1 := w.frame(2, 2, page(ps, 2))
	p2 := w.frame(2, 2, page(ps, 2))
	off := HeaderSize + 2*fsz
	mustWrite(t, h, off, p1[:FrameHeaderSize])
	mustWrite(t, h, off+FrameHeaderSize, p1[FrameHeaderSize:])
	mustWrite(t, h, off+fsz, p2[:100])
	mustWrite(t, h, off+fsz+100, p2[100:])
	if len(h.emitted) != 1 || h.tr.Position().Offset != off+2*fsz {
		t.Fatalf("padding emitted or not absorbed: %d emitted, position %d", len(h.emitted), h.tr.Position().Offset)
	}
	// A commit of the same page with other bytes is a transaction.
	f3 := w.frame(2, 2, page(ps, 3))
	mustWrite(t, h, off+2*fsz, f3)
	// Pages past the commit size are left out (a shrinking commit).
	f4 := w.frame(9, 0, page(ps, 9))
	f5 := w.frame(1, 1, page(ps, 4))
	mustWrite(t, h, off+3*fsz, append(bytes.Clone(f4), f5...))
	if len(h.emitted) != 3 || h.emitted[1].Pages[0].Data[0] != 3 {
		t.Fatalf("%d emitted", len(h.emitted))
	}
	if x := h.emitted[2]; x.Commit != 1 || len(x.Pages) != 1 || x.Pages[0].Pgno != 1 || x.Size != 2*fsz {
		t.Fatalf("shrinking commit: %s", summary(x))
	}
}

func TestTrackerRestartTruncateUnlink(t *testing.T) {
	const ps = 512
	fsz := int64(FrameHeaderSize + ps)
	h := newHarness(t, true)
	w := newWALBuilder(ps, false, 100, 200)
	for i := range 3 {
		w.frame(uint32(i+1), uint32(i+1), page(ps, byte(i)))
	}
	mustWrite(t, h, 0, w.b)
	if len(h.emitted) != 3 {
		t.Fatalf("%d emitted", len(h.emitted))
	}
	// The same header again is no new generation: nothing re-emitted.
	mustWrite(t, h, 0, w.b[:HeaderSize])
	mustWrite(t, h, HeaderSize, w.b[HeaderSize:])
	if len(h.emitted) != 3 || h.tr.Position().Offset != HeaderSize+3*fsz {
		t.Fatalf("identical header restarted the WAL")
	}

	// Restart: salt1+1, frames from 32 over the old generation.
	w2 := newWALBuilder(ps, false, 101, 999)
	w2.hdr.Seq = 1
	mustWrite(t, h, 0, w2.b[:HeaderSize])
	if pos := h.tr.Position(); pos.Offset != HeaderSize || pos.Salt1 != 101 {
		t.Fatalf("restart: position %+v", pos)
	}
	f := w2.frame(1, 3, page(ps, 7))
	mustWrite(t, h, HeaderSize, f)
	if len(h.emitted) != 4 || h.emitted[3].Salt1 != 101 {
		t.Fatalf("after restart: %d emitted", len(h.emitted))
	}

	// journal_size_limit: cut past the commit, mid-way in a pending frame.
	g := w2.frame(2, 0, page(ps, 8))
	mustWrite(t, h, HeaderSize+fsz, g[:300])
	h.truncate(HeaderSize + fsz + 100)
	mustWrite(t, h, HeaderSize+fsz+300, g[300:])
	if len(h.tr.written) == 1 {
		t.Fatalf("bytes 100..300 of the frame count as written after the truncate cut them")
	}
	c := w2.frame(3, 3, page(ps, 9))
	mustWrite(t, h, HeaderSize+2*fsz, c)
	if len(h.emitted) != 4 {
		t.Fatalf("emitted a transaction with a hole")
	}
	mustWrite(t, h, HeaderSize+fsz+100, g[100:300])
	if len(h.emitted) != 5 {
		t.Fatalf("%d emitted after the hole was filled", len(h.emitted))
	}

	// wal_checkpoint(TRUNCATE): no header until one is written.
	h.truncate(0)
	mustWrite(t, h, HeaderSize, f)
	w3 := newWALBuilder(ps, true, 102, 5)
	mustWrite(t, h, 0, w3.b[:HeaderSize])
	mustWrite(t, h, HeaderSize, w3.frame(4, 4, page(ps, 1)))
	if len(h.emitted) != 6 || h.emitted[5].Offset != HeaderSize {
		t.Fatalf("after truncate: %d emitted", len(h.emitted))
	}

	// Last close: unlink; the next WAL starts afresh.
	h.unlink()
	if h.tr.Position() != (Position{}) {
		t.Fatalf("position after unlink")
	}
	w4 := newWALBuilder(ps, false, 7, 7)
	w4.frame(1, 1, page(ps, 1))
	mustWrite(t, h, 0, w4.b)
	if len(h.emitted) != 7 {
		t.Fatalf("new WAL: %d emitted", len(h.emitted))
	}
}

func TestTrackerCommitError(t *testing.T) {
	const ps = 512
	fsz := int64(FrameHeaderSize + ps)
	boom := errors.New("staging full")
	h := newHarness(t, true)
	h.strict = false // the refused transaction is in the file, not emitted
	w := newWALBuilder(ps, false, 1, 1)
	w.frame(1, 1, page(ps, 1))
	h.fail = boom
	if err := h.write(0, w.b); !errors.Is(err, boom) {
		t.Fatalf("Write: %v, want %v", err, boom)
	}
	if h.failed != 1 || len(h.emitted) != 0 || h.tr.Position().Offset != HeaderSize {
		t.Fatalf("refused transaction counted as emitted")
	}
	// The next write, even past it, offers it again, then goes on.
	g := w.frame(2, 2, page(ps, 2))
	mustWrite(t, h, HeaderSize+fsz, g)
	if len(h.emitted) != 2 || h.tr.Position().Offset != HeaderSize+2*fsz {
		t.Fatalf("retry: %d emitted", len(h.emitted))
	}

	// Refused again, then SQLite writes another transaction over it.
	ck := w.ck
	x := w.frame(3, 3, page(ps, 3))
	h.fail = boom
	if err := h.write(HeaderSize+2*fsz, x); !errors.Is(err, boom) {
		t.Fatalf("Write: %v", err)
	}
	y := encodeFrame(w.hdr, &ck, 3, 3, page(ps, 4))
	mustWrite(t, h, HeaderSize+2*fsz, y[:FrameHeaderSize])
	if len(h.emitted) != 2 {
		t.Fatalf("emitted a half-overwritten transaction")
	}
	mustWrite(t, h, HeaderSize+2*fsz+FrameHeaderSize, y[FrameHeaderSize:])
	if len(h.emitted) != 3 || h.emitted[2].Pages[0].Data[0] != 4 {
		t.Fatalf("overwriting transaction not emitted")
	}
}

func TestTrackerMaxPending(t *testing.T) {
	const ps = 512
	fsz := int64(FrameHeaderSize + ps)
	h := newHarness(t, false)
	h.tr.SetMaxPending(3 * fsz)
	w := newWALBuilder(ps, false, 1, 1)
	w.frame(1, 1, page(ps, 1))
	for i := range 3 {
		w.frame(uint32(i+2), 0, page(ps, 2))
	}
	w.frame(9, 9, page(ps, 9))
	mustWrite(t, h, 0, w.b[:HeaderSize+fsz])
	if err := h.write(HeaderSize+fsz, w.b[HeaderSize+fsz:]); !errors.Is(err, ErrPendingTooLarge) {
		t.Fatalf("Write: %v", err)
	}
	if len(h.emitted) != 1 {
		t.Fatalf("%d emitted", len(h.emitted))
	}
	// Desynced: nothing more until a new generation.
	mustWrite(t, h, HeaderSize+fsz, w.b[HeaderSize+fsz:])
	if len(h.emitted) != 1 || h.tr.Position().Offset != HeaderSize+fsz {
		t.Fatalf("desynced tracker emitted")
	}
	w2 := newWALBuilder(ps, false, 2, 1)
	w2.frame(1, 1, page(ps, 1))
	mustWrite(t, h, 0, w2.b)
	if len(h.emitted) != 2 {
		t.Fatalf("no resync at the next header")
	}
	if err := h.tr.Write(-1, []byte{1}); err == nil {
		t.Fatalf("negative offset accepted")
	}
}

// TestTrackerLoad seeds trackers from every real WAL cut at every frame
// boundary and mid-frame, then feeds the rest: the commits after the
// loaded ones must come out, the loaded ones not again.
func TestTrackerLoad(t *testing.T) {
	for _, c := range corpus {
		_, walb := loadCorpus(t, c)
		_, end, want := scanAll(t, walb)
		fsz := int64(FrameHeaderSize + c.pageSize)
		for cut := int64(0); cut <= int64(len(walb)); cut += fsz / 2 {
			h := newHarness(t, false)
			if err := h.tr.Load(bytes.NewReader(walb[:cut]), cut); err != nil {
				t.Fatal(err)
			}
			hdr, loadEnd, loaded := scanAll(t, walb[:cut])
			pos := h.tr.Position()
			if pos.Offset != loadEnd || pos.Salt1 != hdr.Salt1 || pos.Salt2 != hdr.Salt2 || pos.PageSize != hdr.PageSize {
				t.Fatalf("%s cut %d: position %+v, Scan ends at %d", c.name, cut, pos, loadEnd)
			}
			if loadEnd == 0 {
				continue
			}
			h.shadow = bytes.Clone(walb[:cut])
			h.headerChanged(h.shadowHeader())
			h.next, h.seed = loadEnd, chainAt(t, walb, loadEnd)
			if len(loaded) > 0 {
				h.haveLast, h.lastF = true, lastCommitFrame(walb, loaded[len(loaded)-1])
			}
			// SQLite recovers to loadEnd and appends from there.
			for _, w := range splitters[3].split(nil, loadEnd, walb[loadEnd:], int(c.pageSize)) {
				mustWrite(t, h, w.off, w.data)
			}
			got := h.emitted
			if len(got) != len(want)-len(loaded) || h.tr.Position().Offset != end {
				t.Fatalf("%s cut %d: %d emitted after load of %d, want %d (position %d, want %d)",
					c.name, cut, len(got), len(loaded), len(want), h.tr.Position().Offset, end)
			}
		}
	}
}

// chainAt is the checksum chain at a frame boundary: the checksum stored in
// the frame before it, or the header's.
func chainAt(t testing.TB, wal []byte, off int64) [2]uint32 {
	h, err := ParseHeader(wal)
	if err != nil {
		t.Fatal(err)
	}
	if off == HeaderSize {
		return [2]uint32{h.Checksum1, h.Checksum2}
	}
	f := ParseFrameHeader(wal[off-FrameHeaderSize-int64(h.PageSize):])
	return [2]uint32{f.Checksum1, f.Checksum2}
}

func lastCommitFrame(wal []byte, x Txn) []byte {
	fsz := int64(FrameHeaderSize + x.PageSize)
	return bytes.Clone(wal[x.End()-fsz : x.End()])
}

// TestForeignSalts: salts are compared, not summed, so a frame with another
// generation's salts can carry a checksum that continues the chain. SQLite
// rejects it; so must Scan and the tracker.
func TestForeignSalts(t *testing.T) {
	const ps = 512
	w := newWALBuilder(ps, false, 10, 20)
	w.frame(1, 1, page(ps, 1))
	other := w.hdr
	other.Salt1++
	ck := w.ck
	f := encodeFrame(other, &ck, 2, 2, page(ps, 2))
	wal := append(bytes.Clone(w.b), f...)
	if _, end, txns := scanAll(t, wal); len(txns) != 1 || end != int64(len(w.b)) {
		t.Fatalf("Scan: %d txns, end %d", len(txns), end)
	}
	h := newHarness(t, true)
	mustWrite(t, h, 0, wal)
	if len(h.emitted) != 1 {
		t.Fatalf("tracker: %d emitted", len(h.emitted))
	}
}

// TestTrackerLinear: a big spilled transaction with in-place rewrites and
// the final checksum pass costs a bounded number of frame checks per frame,
// not a re-validation from the last commit on every write.
func TestTrackerLinear(t *testing.T) {
	const ps, n = 512, 3000
	fsz := int64(FrameHeaderSize + ps)
	h := newHarness(t, false)
	final := newWALBuilder(ps, false, 3, 4)
	orig := newWALBuilder(ps, false, 3, 4)
	mustWrite(t, h, 0, orig.b)
	data := func(i int, v byte) []byte { p := page(ps, v); p[0], p[1] = byte(i), byte(i>>8); return p }
	for i := range n + 10 {
		commit := uint32(0)
		if i == n+9 {
			commit = n + 10
		}
		v := byte(1)
		if i == 1 {
			v = 2 // rewritten in place below
		}
		final.frame(uint32(i+1), commit, data(i, v))
	}
	off := func(i int) int64 { return HeaderSize + int64(i)*fsz }
	for i := range n { // the spill: valid frames
		f := orig.frame(uint32(i+1), 0, data(i, 1))
		mustWrite(t, h, off(i), f[:FrameHeaderSize])
		mustWrite(t, h, off(i)+FrameHeaderSize, f[FrameHeaderSize:])
	}
	for i := range n / 2 { // pages spilled again unchanged
		mustWrite(t, h, off(i)+FrameHeaderSize, data(i, 1))
	}
	mustWrite(t, h, off(1)+FrameHeaderSize, data(1, 2)) // changed: zero salts from now on
	for i := n; i < n+10; i++ {
		f := bytes.Clone(final.b[off(i) : off(i)+fsz])
		clear(f[8:24])
		mustWrite(t, h, off(i), f[:FrameHeaderSize])
		mustWrite(t, h, off(i)+FrameHeaderSize, f[FrameHeaderSize:])
	}
	for i := 1; i < n+10; i++ { // walRewriteChecksums
		if len(h.emitted) != 0 {
			t.Fatalf("emitted before the pass ended")
		}
		mustWrite(t, h, off(i), final.b[off(i):off(i)+FrameHeaderSize])
	}
	if len(h.emitted) != 1 || len(h.emitted[0].Pages) != n+10 {
		t.Fatalf("%d emitted", len(h.emitted))
	}
	if c := h.tr.checks; c > 4*n { // spill, pass, and a failed look at the next frame
		t.Fatalf("%d frame checks for %d frames", c, n+10)
	}
}
