package replica

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/litefs-dev/litefs/internal/checksum"
	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"
)

// ErrChecksumChain is returned (wrapped) when a file's pre-apply checksum is
// not the post-apply checksum of the state it applies to, or the restored
// database does not have the last file's post-apply checksum.
var ErrChecksumChain = errors.New("checksum chain broken")

// applier writes the pages of a plan's files, in order, into the temp file.
//
// It decodes LTX itself rather than with ltx.Decoder, with the same checks:
// the decoder allocates per page, hashes every page twice (the file checksum
// and, for snapshots, the post-apply checksum) and decodes on one goroutine.
// Here the applier's goroutine parses (page headers and sizes, the checks on
// page numbers) and gathers pages into segments of 512 KiB; workers
// decompress each segment and compute data() of its pages (see
// checksum.Hasher), the one pass over the bytes; the applier then folds the
// segments in file order into the file checksum and the page checksums, a
// few table lookups a page, and hands them to the writer.
type applier struct {
	w        *writer
	pageSize uint32
	commit   uint32 // database size in pages after the last file
	pos      ltx.Pos
	// posts maps each applied file's MaxTXID to its post-apply checksum (0
	// when it carries none), so a file overlapping the chain can still be
	// checked when it starts right after one of them.
	posts map[ltx.TXID]ltx.Checksum
	sums  checksum.Sums // the checksum of every page written
	size  int64         // the temp file's size as written

	h       *checksum.Hasher
	fileReg uint64     // the file checksum's register (see checksum.Hasher)
	seg     *segment   // being gathered
	pending []*segment // handed to the workers, in file order
	work    chan *segment
	workers sync.WaitGroup

	// LZ4 frames (pages of older LTX files).
	lr  io.LimitedReader
	zr  *lz4.Reader
	one [1]byte
}

// segment is up to segmentSize bytes of one file's pages, in file order.
type segment struct {
	h      *checksum.Hasher
	pages  []segPage
	buf    []byte   // the pages, decoded
	d      []uint64 // data() of each page, set by the worker
	blocks []*block // holding the compressed pages, until the segment is folded
	err    error
	done   chan struct{} // the worker is done with it
}

type segPage struct {
	pgno  uint32
	flags uint16
	size  uint32 // compressed
	src   []byte // compressed (LZ4 frames are decoded by the parser)
}

// segmentSize is the most bytes of pages a segment gathers (or one page).
const segmentSize = 512 << 10

func newApplier(w *writer, workers int) *applier {
	a := &applier{w: w, posts: make(map[ltx.TXID]ltx.Checksum), work: make(chan *segment, w.segments)}
	for range workers {
		a.workers.Go(func() {
			for seg := range a.work {
				seg.err = seg.decode()
				seg.done <- struct{}{}
			}
		})
	}
	return a
}

// close stops the workers. Segments still queued are decoded first.
func (a *applier) close() {
	if a.work != nil {
		close(a.work)
		a.workers.Wait()
		a.work = nil
	}
}

// decode decompresses the segment's pages and computes their data().
func (seg *segment) decode() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed LTX file: %v", p)
		}
	}()
	pageSize := int(seg.h.PageSize())
	seg.d = seg.d[:0]
	for i, p := range seg.pages {
		data := seg.buf[i*pageSize : (i+1)*pageSize]
		if p.flags&ltx.PageHeaderFlagSize != 0 {
			if n, err := lz4.UncompressBlock(p.src, data); err != nil {
				return fmt.Errorf("decode page %d: decompress block: %w", p.pgno, err)
			} else if n != pageSize {
				return fmt.Errorf("decode page %d: decompressed to %d bytes, not %d", p.pgno, n, pageSize)
			}
		}
		seg.d = append(seg.d, seg.h.Data(data))
	}
	return nil
}

// apply decodes one file from s into the database. The file checksum is
// known only at the end, so a damaged file may already have written pages:
// the caller throws the temp file away on any error.
func (a *applier) apply(info *ltx.FileInfo, s *stream) (pages int, err error) {
	defer func() {
		// LTX lengths come from the file; damaged input must fail the
		// restore, not crash it.
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed LTX file: %v", p)
		}
	}()
	defer func() {
		if err != nil {
			err = a.abort(err)
		}
	}()

	// Before waiting for bytes, fold what the workers have: the blocks the
	// pending segments hold may be what the download needs to read on.
	s.idle = func() error {
		for len(a.pending) > 0 {
			if err := a.fold(); err != nil {
				return err
			}
		}
		return nil
	}
	defer func() { s.idle = nil }()

	b, err := s.take(ltx.HeaderSize)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return 0, fmt.Errorf("decode header: %w", err)
	}
	var hdr ltx.Header
	if err := hdr.UnmarshalBinary(b); err != nil {
		return 0, fmt.Errorf("decode header: unmarshal header: %w", err)
	}
	if err := hdr.Validate(); err != nil {
		return 0, fmt.Errorf("decode header: %w", err)
	}
	// Everything but the file checksum itself, with pages uncompressed.
	a.fileReg = checksum.Update(^uint64(0), b)
	if err := a.checkHeader(info, hdr); err != nil {
		return 0, err
	}
	a.h = checksum.HasherFor(hdr.PageSize)
	if hdr.IsSnapshot() {
		// A full-database file replaces everything, even a different page size.
		if err := a.w.truncate(0); err != nil {
			return 0, fmt.Errorf("truncate: %w", err)
		}
		a.size = 0
		a.pageSize = hdr.PageSize
		a.sums.Reset(hdr.PageSize)
	}
	a.sums.Truncate(hdr.Commit)

	pageSize := int(hdr.PageSize)
	maxBlock := uint32(lz4.CompressBlockBound(pageSize))
	lock := hdr.LockPgno()
	var prev uint32
	for {
		b, err := s.take(ltx.PageHeaderSize)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return pages, fmt.Errorf("decode page after %d: %w", prev, err)
		}
		p := segPage{pgno: binary.BigEndian.Uint32(b), flags: binary.BigEndian.Uint16(b[4:])}
		if p.pgno == 0 && p.flags == 0 {
			break
		}
		if err := (&ltx.PageHeader{Pgno: p.pgno, Flags: p.flags}).Validate(); err != nil {
			return pages, fmt.Errorf("decode page after %d: %w", prev, err)
		}
		switch {
		case p.pgno <= prev:
			return pages, fmt.Errorf("page %d after page %d: out of order", p.pgno, prev)
		case p.pgno > hdr.Commit:
			return pages, fmt.Errorf("page %d past the commit size of %d pages", p.pgno, hdr.Commit)
		case p.pgno == lock:
			return pages, fmt.Errorf("file holds the lock page %d", lock)
		case hdr.IsSnapshot() && p.pgno != nextPage(prev, lock):
			return pages, fmt.Errorf("full-database file lacks page %d", nextPage(prev, lock))
		}
		if p.flags&ltx.PageHeaderFlagSize != 0 {
			b, err := s.take(4)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return pages, fmt.Errorf("decode page %d: read data size: %w", p.pgno, err)
			}
			if p.size = binary.BigEndian.Uint32(b); p.size > maxBlock {
				return pages, fmt.Errorf("decode page %d: compressed size %d exceeds the bound %d for %d-byte pages", p.pgno, p.size, maxBlock, pageSize)
			}
			if p.src, err = s.take(int(p.size)); err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				return pages, fmt.Errorf("decode page %d: read compressed data: %w", p.pgno, err)
			}
			if s.copied {
				p.src = bytes.Clone(p.src) // straddles blocks
			}
		}
		seg, err := a.segment()
		if err != nil {
			return pages, err
		}
		data := seg.buf[len(seg.buf) : len(seg.buf)+pageSize]
		if p.flags&ltx.PageHeaderFlagSize == 0 {
			if err := a.readFrame(s, data); err != nil {
				return pages, fmt.Errorf("decode page %d: %w", p.pgno, err)
			}
		} else if !s.copied && (len(seg.blocks) == 0 || seg.blocks[len(seg.blocks)-1] != s.blk) {
			s.blk.refs++
			seg.blocks = append(seg.blocks, s.blk)
		}
		seg.pages = append(seg.pages, p)
		seg.buf = seg.buf[:len(seg.buf)+pageSize]
		if len(seg.buf)+pageSize > cap(seg.buf) {
			a.submit()
		}
		prev = p.pgno
		pages++
	}
	if next := nextPage(prev, lock); hdr.IsSnapshot() && next <= hdr.Commit {
		return pages, fmt.Errorf("full-database file of %d pages ends at page %d", hdr.Commit, prev)
	}
	a.submit()
	for len(a.pending) > 0 {
		if err := a.fold(); err != nil {
			return pages, err
		}
	}
	a.fileReg = checksum.Update(a.fileReg, make([]byte, ltx.PageHeaderSize)) // the end of the pages

	trailer, fileReg, err := readTrailer(s, a.fileReg)
	if err != nil {
		return pages, fmt.Errorf("verify: %w", err)
	}
	if chk := ltx.ChecksumFlag | ltx.Checksum(^fileReg); chk != trailer.FileChecksum {
		return pages, fmt.Errorf("verify: %w", ltx.ErrChecksumMismatch)
	}
	if hdr.IsSnapshot() && !hdr.NoChecksum() && trailer.PostApplyChecksum != a.sums.Checksum() {
		return pages, fmt.Errorf("verify: post-apply checksum in trailer (%s) does not match calculated checksum (%s)",
			trailer.PostApplyChecksum, a.sums.Checksum())
	}

	// Truncating after every file whose size changed, not only at the end,
	// keeps a database that shrank and later grew from resurrecting stale
	// pages: the pages it grows past without writing must read as zeros.
	if size := int64(hdr.Commit) * int64(hdr.PageSize); size != a.size {
		if err := a.w.truncate(size); err != nil {
			return pages, fmt.Errorf("truncate to %d pages: %w", hdr.Commit, err)
		}
		a.size = size
	}
	a.commit = hdr.Commit
	a.pos = ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}
	a.posts[hdr.MaxTXID] = trailer.PostApplyChecksum
	return pages, nil
}

// abort reports, instead of the parser's err, an error a worker found
// earlier in the file (fold leaves nothing pending when it fails). The
// segments are not reused: the restore is over.
func (a *applier) abort(err error) error {
	for _, seg := range a.pending {
		<-seg.done
		if seg.err != nil {
			err = seg.err
			break
		}
	}
	a.pending, a.seg = nil, nil
	return err
}

// segment returns the segment being gathered, or a new one: first folding
// the segments the workers are done with, so the writer gets them early, and
// as many more as it takes to free one.
func (a *applier) segment() (*segment, error) {
	if a.seg != nil {
		return a.seg, nil
	}
	for len(a.pending) > 0 && len(a.pending[0].done) > 0 {
		if err := a.fold(); err != nil {
			return nil, err
		}
	}
	var seg *segment
	for seg == nil {
		select {
		case seg = <-a.w.free:
		default:
			if len(a.pending) > 0 {
				if err := a.fold(); err != nil {
					return nil, err
				}
				continue
			}
			seg = <-a.w.free // the writer has them all: it gives them back
		}
	}
	if err := a.w.failed(); err != nil {
		a.w.free <- seg
		return nil, err
	}
	if n := max(segmentSize, int(a.h.PageSize())); cap(seg.buf) < n {
		seg.buf = make([]byte, 0, n)
	}
	seg.h, seg.pages, seg.buf, seg.err = a.h, seg.pages[:0], seg.buf[:0], nil
	a.seg = seg
	return seg, nil
}

// submit hands the segment being gathered to the workers.
func (a *applier) submit() {
	if a.seg == nil {
		return
	}
	if len(a.seg.pages) == 0 {
		a.w.free <- a.seg
	} else {
		a.pending = append(a.pending, a.seg)
		a.work <- a.seg
	}
	a.seg = nil
}

// fold waits for the oldest pending segment, feeds its pages to the file
// checksum and the page checksums in file order, and queues its write.
func (a *applier) fold() error {
	seg := a.pending[0]
	<-seg.done
	a.pending[0] = nil
	a.pending = a.pending[1:]
	if seg.err != nil {
		a.pending = nil // later in the file: no news
		return seg.err
	}
	h := seg.h
	var b [ltx.PageHeaderSize + 4]byte
	for i, p := range seg.pages {
		binary.BigEndian.PutUint32(b[0:], p.pgno)
		binary.BigEndian.PutUint16(b[4:], p.flags)
		hb := b[:ltx.PageHeaderSize]
		if p.flags&ltx.PageHeaderFlagSize != 0 {
			binary.BigEndian.PutUint32(b[6:], p.size)
			hb = b[:]
		}
		a.fileReg = h.Feed(checksum.Update(a.fileReg, hb), seg.d[i])
		a.sums.Set(p.pgno, h.PageChecksum(p.pgno, seg.d[i]))
		seg.pages[i].src = nil
	}
	for i, b := range seg.blocks {
		b.unref()
		seg.blocks[i] = nil
	}
	seg.blocks = seg.blocks[:0]
	last := seg.pages[len(seg.pages)-1].pgno
	a.size = max(a.size, int64(last)*int64(h.PageSize()))
	if err := a.w.write(seg); err != nil {
		a.pending = nil
		return fmt.Errorf("write pages %d-%d: %w", seg.pages[0].pgno, last, err)
	}
	return nil
}

// readFrame decodes a page stored as an LZ4 frame (LTX before block
// compression) exactly as ltx.Decoder does: the frame reader must not read
// into the next page header, and the frame must end right after the page.
func (a *applier) readFrame(s *stream, data []byte) error {
	if a.zr == nil {
		a.zr = lz4.NewReader(nil)
	}
	a.lr.R, a.lr.N = s, math.MaxInt64
	a.zr.Reset(&a.lr)
	if _, err := io.ReadFull(a.zr, data); err != nil {
		return err
	}
	a.lr.N = 8 // end mark and content checksum
	if _, err := io.ReadFull(a.zr, a.one[:]); err != io.EOF {
		return errors.New("read lz4 trailer: expected lz4 end frame")
	}
	return nil
}

// checkHeader verifies that the file is the one named and continues the chain.
func (a *applier) checkHeader(info *ltx.FileInfo, hdr ltx.Header) error {
	if hdr.MinTXID != info.MinTXID || hdr.MaxTXID != info.MaxTXID {
		return fmt.Errorf("header holds TXIDs %s-%s, not the ones in its name", hdr.MinTXID, hdr.MaxTXID)
	}
	if hdr.MinTXID > a.pos.TXID+1 || hdr.MaxTXID <= a.pos.TXID {
		return fmt.Errorf("TXIDs %s-%s do not continue the restored state at TXID %s", hdr.MinTXID, hdr.MaxTXID, a.pos.TXID)
	}
	if !hdr.IsSnapshot() && hdr.PageSize != a.pageSize {
		return fmt.Errorf("page size %d differs from the database's %d", hdr.PageSize, a.pageSize)
	}
	if hdr.IsSnapshot() || hdr.NoChecksum() {
		return nil
	}
	// A file starting inside one already applied (overlap across levels)
	// has a pre-apply state we never saw; the final database checksum still
	// covers it.
	want, ok := a.posts[hdr.MinTXID-1]
	if ok && want != 0 && hdr.PreApplyChecksum != want {
		return fmt.Errorf("%w: pre-apply checksum %s differs from the post-apply checksum %s of TXID %s",
			ErrChecksumChain, hdr.PreApplyChecksum, want, hdr.MinTXID-1)
	}
	return nil
}

// nextPage is the page a full-database file holds after prev.
func nextPage(prev, lock uint32) uint32 {
	if prev+1 == lock {
		return prev + 2
	}
	return prev + 1
}
