package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
)

// DefaultMaxPending bounds the bytes a Tracker buffers past the last emitted
// commit: the frames of one uncommitted transaction (cache spills included).
const DefaultMaxPending = 512 << 20

// ErrPendingTooLarge is wrapped by the Write error that makes a tracker drop
// an uncommitted transaction larger than its limit (returned once; the write
// itself reached the file and need not fail). The tracker then emits nothing
// until the next WAL generation (header write, Truncate below HeaderSize,
// Unlink or Load): the commits in between are lost to it, and its owner must
// take a snapshot once it follows the WAL again.
var ErrPendingTooLarge = errors.New("wal: uncommitted frames exceed the tracker's limit")

// window buffers smaller than this are kept for the next transaction; bigger
// ones are released once empty so one huge transaction does not pin memory.
const keepBuffer = 16 << 20

// Tracker is fed what reaches a -wal file, after it reached the file, and
// calls onCommit once per committed transaction, in order, synchronously
// from Write. If onCommit returns an error, Write returns it (wrapped) and
// the transaction is not considered emitted: the next Write offers it again
// (after re-validating it if that write went into its range).
//
// A Tracker is safe for concurrent use. onCommit runs with the tracker
// locked: it may call Position (which still reports the position before the
// transaction) but no other method.
type Tracker struct {
	mu         sync.Mutex
	onCommit   func(*Txn) error
	maxPending int64

	hdrBuf [HeaderSize]byte // the header bytes as last written or loaded
	hdr    Header
	valid  bool // hdr is valid: frames are followed
	desync bool // pending frames were dropped (ErrPendingTooLarge)
	fsz    int64

	// The window mirrors the WAL from base, the end of the last emitted
	// commit, as far as it was written: mem[lo:hi] holds offsets base on.
	base    int64
	ck0     [2]uint32 // checksum chain at base
	mem     []byte    // len(mem) == cap(mem)
	lo, hi  int
	written spans       // bytes of the window written since it began
	cks     [][2]uint32 // chain after each validated frame from base; len = frames validated
	ckMem   [][2]uint32 // cks's backing array, reused once cks empties
	retry   bool        // onCommit failed: try again on the next Write
	checks  int         // frames checksummed, for tests of linearity

	// The last emitted commit frame: a copy of it right after it is padding.
	haveLast             bool
	lastPgno, lastCommit uint32
	lastData             []byte

	pages pageSet
	txn   Txn

	posMu sync.Mutex // separate from mu so onCommit may call Position
	pos   Position
}

// NewTracker returns a tracker with no WAL: it follows frames from the first
// valid header written (or loaded) on.
func NewTracker(onCommit func(*Txn) error) *Tracker {
	return &Tracker{onCommit: onCommit, maxPending: DefaultMaxPending}
}

// SetMaxPending changes the limit on buffered uncommitted bytes (see
// ErrPendingTooLarge); n <= 0 restores DefaultMaxPending.
func (t *Tracker) SetMaxPending(n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n <= 0 {
		n = DefaultMaxPending
	}
	t.maxPending = n
}

// Position is where the next transaction starts: header salts and the end
// offset of the last emitted (or loaded, or absorbed padding) commit. Zero
// value when there is no valid header.
func (t *Tracker) Position() Position {
	t.posMu.Lock()
	defer t.posMu.Unlock()
	return t.pos
}

func (t *Tracker) setPos() {
	var p Position
	if t.valid {
		p = Position{Salt1: t.hdr.Salt1, Salt2: t.hdr.Salt2, PageSize: t.hdr.PageSize, Offset: t.base}
	}
	t.posMu.Lock()
	t.pos = p
	t.posMu.Unlock()
}

// Write records that p now sits at off in the WAL file. Pieces may arrive
// split or merged in any way, and in any order within a transaction. Its
// errors come from onCommit, from ErrPendingTooLarge, or from an offset out
// of range; the tracker stays usable after any of them.
func (t *Tracker) Write(off int64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if off < 0 || off > math.MaxInt64-int64(len(p)) {
		return fmt.Errorf("wal: write of %d bytes at offset %d: offset out of range", len(p), off)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if off < HeaderSize {
		n := min(len(p), int(HeaderSize-off))
		t.writeHeader(off, p[:n])
		off, p = off+int64(n), p[n:]
		if len(p) == 0 {
			return nil
		}
	}
	if !t.valid || t.desync {
		return nil // nothing to follow
	}
	if off+int64(len(p)) <= t.base { // already emitted
		if t.retry {
			t.retry = false
			return t.advance()
		}
		return nil
	}
	if off < t.base {
		p = p[t.base-off:]
		off = t.base
	}
	rel := off - t.base
	end := rel + int64(len(p))
	if end > t.maxPending {
		t.resetWindow()
		t.desync = true
		return fmt.Errorf("wal: write of %d bytes at offset %d, %d bytes past the last commit at %d: %w",
			len(p), off, rel, t.base, ErrPendingTooLarge)
	}
	if !t.retry && end <= int64(t.hi-t.lo) && t.written.covers(rel, end) &&
		string(t.mem[t.lo+int(rel):t.lo+int(end)]) == string(p) {
		// The same bytes again change nothing; returning early also keeps
		// a page re-spilled unchanged into an early frame from costing a
		// re-validation of every frame after it.
		return nil
	}
	win := t.grow(end)
	copy(win[rel:], p)
	t.written.add(rel, end)

	// Only a write into the first frame not yet validated, or before it, can
	// change what validates next.
	first := int(rel / t.fsz)
	if first > len(t.cks) && !t.retry {
		return nil
	}
	if first < len(t.cks) {
		t.cks = t.cks[:first]
	}
	t.retry = false
	return t.advance()
}

// writeHeader applies a write into the header. A valid header that differs
// from the one followed starts a new generation: SQLite writes one only to
// restart the WAL (every frame before it was checkpointed) or to begin a new
// WAL file. Anything else there leaves no valid header, and nothing to follow.
func (t *Tracker) writeHeader(off int64, b []byte) {
	nb := t.hdrBuf
	copy(nb[off:], b)
	if nb == t.hdrBuf {
		return
	}
	t.hdrBuf = nb
	h, err := ParseHeader(nb[:])
	if err != nil {
		t.reset()
		t.hdrBuf = nb // a later write may complete it
		return
	}
	t.startGeneration(h)
}

func (t *Tracker) startGeneration(h Header) {
	t.resetWindow()
	t.hdr, t.valid, t.desync = h, true, false
	t.fsz = FrameHeaderSize + int64(h.PageSize)
	t.base = HeaderSize
	t.ck0 = [2]uint32{h.Checksum1, h.Checksum2}
	t.haveLast = false
	t.setPos()
}

// reset forgets the WAL entirely: no header, nothing pending.
func (t *Tracker) reset() {
	t.resetWindow()
	t.hdrBuf = [HeaderSize]byte{}
	t.hdr, t.valid, t.desync = Header{}, false, false
	t.fsz, t.base, t.ck0 = 0, 0, [2]uint32{}
	t.haveLast = false
	t.setPos()
}

func (t *Tracker) resetWindow() {
	t.lo, t.hi = 0, 0
	if len(t.mem) > keepBuffer {
		t.mem = nil
	}
	t.written = t.written[:0]
	t.cks = t.ckMem[:0]
	t.retry = false
}

// grow makes the window at least n bytes long and returns it. Bytes it adds
// hold garbage, but no frame is read before every byte of it was written.
func (t *Tracker) grow(n64 int64) []byte {
	n := int(n64)
	if t.hi-t.lo >= n {
		return t.mem[t.lo:t.hi]
	}
	live := t.hi - t.lo
	switch {
	case t.lo+n <= len(t.mem):
	case n <= len(t.mem) && live <= len(t.mem)/2:
		copy(t.mem, t.mem[t.lo:t.hi])
		t.lo, t.hi = 0, live
	default:
		size := max(n, min(2*len(t.mem), int(t.maxPending)), 64<<10)
		mem := make([]byte, size)
		copy(mem, t.mem[t.lo:t.hi])
		t.mem, t.lo, t.hi = mem, 0, live
	}
	t.hi = t.lo + n
	return t.mem[t.lo:t.hi]
}

// advance validates frames from the first unvalidated one on, emitting each
// commit it completes, until a frame is incomplete or invalid.
func (t *Tracker) advance() error {
	for {
		i := len(t.cks)
		f, ok := t.frame(i)
		if !ok {
			return nil
		}
		prev := t.ck0
		if i > 0 {
			prev = t.cks[i-1]
		}
		t.checks++
		c1, c2, ok := checkFrame(t.hdr.BigEndian(), t.hdr.Salt1, t.hdr.Salt2, prev[0], prev[1], f)
		if !ok {
			return nil
		}
		t.pushCk(c1, c2)
		if binary.BigEndian.Uint32(f[4:]) != 0 {
			if err := t.commit(i); err != nil {
				return err
			}
		}
	}
}

// frame returns frame i of the window if every byte of it was written.
func (t *Tracker) frame(i int) ([]byte, bool) {
	s := int64(i) * t.fsz
	e := s + t.fsz
	if e > int64(t.hi-t.lo) || !t.written.covers(s, e) {
		return nil, false
	}
	return t.mem[t.lo+int(s) : t.lo+int(e)], true
}

func (t *Tracker) pushCk(c1, c2 uint32) {
	if len(t.cks) == cap(t.cks) {
		ck := make([][2]uint32, len(t.cks), 2*cap(t.cks)+16)
		copy(ck, t.cks)
		t.cks, t.ckMem = ck, ck
	}
	t.cks = append(t.cks, [2]uint32{c1, c2})
}

// commit handles the validated commit frame i: a padding copy of the last
// emitted commit is absorbed, anything else is emitted with the padding
// copies already buffered behind it.
func (t *Tracker) commit(i int) error {
	f, _ := t.frame(i)
	pgno := binary.BigEndian.Uint32(f[0:])
	commit := binary.BigEndian.Uint32(f[4:])
	data := f[FrameHeaderSize:]
	if i == 0 && t.haveLast && isPadding(f, t.lastPgno, t.lastCommit, t.lastData) {
		t.rebase(1)
		return nil
	}
	n := i + 1
	for {
		g, ok := t.frame(n)
		if !ok || !isPadding(g, pgno, commit, data) {
			break
		}
		prev := t.cks[n-1]
		t.checks++
		c1, c2, ok := checkFrame(t.hdr.BigEndian(), t.hdr.Salt1, t.hdr.Salt2, prev[0], prev[1], g)
		if !ok {
			break
		}
		t.pushCk(c1, c2)
		n++
	}
	if t.onCommit != nil {
		t.pages.reset()
		for j := 0; j <= i; j++ {
			g, _ := t.frame(j)
			t.pages.add(binary.BigEndian.Uint32(g), t.base+int64(j)*t.fsz, g[FrameHeaderSize:])
		}
		t.txn = Txn{
			Salt1: t.hdr.Salt1, Salt2: t.hdr.Salt2, PageSize: t.hdr.PageSize,
			Offset: t.base, Size: int64(n) * t.fsz, Commit: commit,
			Pages: t.pages.build(commit),
		}
		err := t.onCommit(&t.txn)
		t.pages.done()
		t.txn = Txn{}
		if err != nil {
			t.cks = t.cks[:i]
			t.retry = true
			return fmt.Errorf("wal: transaction at offset %d: %w", t.base, err)
		}
	}
	t.haveLast, t.lastPgno, t.lastCommit = true, pgno, commit
	t.lastData = append(t.lastData[:0], data...)
	t.rebase(n)
	return nil
}

// rebase moves the window past its first k frames, all validated.
func (t *Tracker) rebase(k int) {
	n := int64(k) * t.fsz
	t.base += n
	t.ck0 = t.cks[k-1]
	t.cks = t.cks[k:]
	if len(t.cks) == 0 {
		t.cks = t.ckMem[:0]
	}
	t.lo += int(n)
	if t.lo >= t.hi {
		t.lo, t.hi = 0, 0
		if len(t.mem) > keepBuffer {
			t.mem = nil
		}
	}
	t.written.shift(n)
	t.setPos()
}

// Truncate records that the WAL file was cut to size bytes.
func (t *Tracker) Truncate(size int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if size < HeaderSize {
		hb := t.hdrBuf
		t.reset()
		copy(t.hdrBuf[:max(size, 0)], hb[:]) // what is left of the header
		return
	}
	if !t.valid {
		return
	}
	rel := max(size-t.base, 0)
	if rel < int64(t.hi-t.lo) {
		t.hi = t.lo + int(rel)
		t.written.clip(rel)
	}
	if k := int(rel / t.fsz); k < len(t.cks) {
		t.cks = t.cks[:k]
	}
}

// Unlink records that the WAL file was removed: the next one starts afresh.
func (t *Tracker) Unlink() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reset()
}

// Load seeds the tracker from an existing WAL file (at start-up) without
// emitting: header and position are set to the end of the last valid commit,
// and what lies beyond it is left to be overwritten.
func (t *Tracker) Load(r io.ReaderAt, size int64) error {
	var s scanner
	err := s.run(r, size, nil)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reset()
	if err != nil {
		return fmt.Errorf("wal: load: %w", err)
	}
	t.hdrBuf = s.raw // even if invalid: a later write may complete it
	if !s.valid {
		return nil
	}
	t.startGeneration(s.hdr)
	t.base, t.ck0 = s.end, s.ck
	if s.end > HeaderSize {
		t.haveLast, t.lastPgno, t.lastCommit = true, s.lastPgno, s.lastCommit
		t.lastData = append(t.lastData[:0], s.lastData...)
	}
	t.setPos()
	return nil
}

// Retry offers again a commit whose onCommit failed, without waiting for
// the next Write: the caller's barrier must not let the WAL move on while a
// committed transaction is neither emitted nor kept.
func (t *Tracker) Retry() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.retry {
		return nil
	}
	t.retry = false
	return t.advance()
}

// Pending reports whether a commit is waiting for Retry.
func (t *Tracker) Pending() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.retry
}
