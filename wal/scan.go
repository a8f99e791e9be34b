package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Scan reads a WAL file from the start and calls fn for every committed
// transaction in order, stopping silently at the first invalid frame (torn
// tail, stale salts, bad checksum): exactly the commits SQLite's own recovery
// would keep. Padding copies of a commit frame are folded into its Txn. The
// Txn and its page data are reused after fn returns.
//
// It returns the header (zero if none is valid) and the end offset of the
// last valid commit: HeaderSize when the header is valid but no frame is
// committed, 0 without a valid header. An error from fn stops the scan; the
// offset returned is then the end of the last transaction fn accepted.
func Scan(r io.ReaderAt, size int64, fn func(*Txn) error) (Header, int64, error) {
	var s scanner
	err := s.run(r, size, fn)
	if !s.valid {
		return Header{}, 0, err
	}
	return s.hdr, s.end, err
}

// scanner walks a WAL file frame by frame; Load keeps its final state to seed
// a tracker.
type scanner struct {
	raw   [HeaderSize]byte // the header bytes as read
	hdr   Header
	valid bool
	end   int64     // end of the last valid commit (padding included)
	ck    [2]uint32 // checksum chain at end

	// The last commit frame, so a tracker seeded from the scan can tell a
	// padding copy from a new transaction.
	lastPgno, lastCommit uint32
	lastData             []byte

	fr    frameReader
	pages pageSet
	txn   Txn
}

func (s *scanner) run(r io.ReaderAt, size int64, fn func(*Txn) error) error {
	if size < HeaderSize {
		return nil
	}
	if n, err := r.ReadAt(s.raw[:], 0); n < HeaderSize {
		s.raw = [HeaderSize]byte{}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("wal: read header: %w", err)
		}
		return nil
	}
	hdr, err := ParseHeader(s.raw[:])
	if err != nil {
		return nil // not an error: SQLite ignores such a WAL too
	}
	s.hdr, s.valid, s.end = hdr, true, HeaderSize
	s.ck = [2]uint32{hdr.Checksum1, hdr.Checksum2}

	psz := int(hdr.PageSize)
	fsz := FrameHeaderSize + psz
	be := hdr.BigEndian()
	s.fr = frameReader{r: r, size: size}

	var (
		pgnos   []uint32 // frames of the open transaction, in order
		data    []byte   // their pages, back to back
		ck      = s.ck   // chain through the last valid frame
		off     = int64(HeaderSize)
		start   = off // first frame of the open transaction
		pending bool  // a commit frame was seen; padding may follow
		pendEnd int64 // end of the pending commit and its padding
	)
	flush := func() error {
		last := data[len(data)-psz:]
		if fn != nil {
			s.pages.reset()
			for i, pg := range pgnos {
				s.pages.add(pg, start+int64(i)*(FrameHeaderSize+int64(psz)), data[i*psz:(i+1)*psz])
			}
			s.txn = Txn{
				Salt1: hdr.Salt1, Salt2: hdr.Salt2, PageSize: hdr.PageSize,
				Offset: start, Size: pendEnd - start, Commit: s.lastCommit,
				Pages: s.pages.build(s.lastCommit),
			}
			err := fn(&s.txn)
			s.pages.done()
			if err != nil {
				return fmt.Errorf("wal: scan: transaction at offset %d: %w", start, err)
			}
		}
		s.end, s.ck = pendEnd, ck
		s.lastData = append(s.lastData[:0], last...)
		pgnos, data = pgnos[:0], data[:0]
		start, pending = pendEnd, false
		return nil
	}
	for {
		f, err := s.fr.frame(off, fsz)
		if err != nil {
			return err
		}
		if f == nil {
			break
		}
		c1, c2, ok := checkFrame(be, hdr.Salt1, hdr.Salt2, ck[0], ck[1], f)
		if !ok {
			break
		}
		pgno := binary.BigEndian.Uint32(f[0:])
		commit := binary.BigEndian.Uint32(f[4:])
		if pending {
			if commit != 0 && isPadding(f, s.lastPgno, s.lastCommit, data[len(data)-psz:]) {
				ck = [2]uint32{c1, c2}
				off += int64(fsz)
				pendEnd = off
				continue
			}
			if err := flush(); err != nil {
				return err
			}
		}
		ck = [2]uint32{c1, c2}
		pgnos = append(pgnos, pgno)
		data = append(data, f[FrameHeaderSize:]...)
		off += int64(fsz)
		if commit != 0 {
			pending, pendEnd = true, off
			s.lastPgno, s.lastCommit = pgno, commit
		}
	}
	if pending {
		return flush()
	}
	return nil
}

// frameReader reads whole frames through a buffer of many frames, so that
// scanning a large WAL costs few reads.
type frameReader struct {
	r    io.ReaderAt
	size int64
	buf  []byte
	off  int64 // file offset of buf[0]
	n    int   // valid bytes in buf
}

const readChunk = 1 << 20

// frame returns the n bytes at off, or nil once the file (as far as size
// says, or as far as it really goes) ends before them.
func (fr *frameReader) frame(off int64, n int) ([]byte, error) {
	if off < 0 || off+int64(n) > fr.size {
		return nil, nil
	}
	if off >= fr.off && off+int64(n) <= fr.off+int64(fr.n) {
		i := int(off - fr.off)
		return fr.buf[i : i+n], nil
	}
	want := max(n, readChunk/n*n)
	if rest := fr.size - off; int64(want) > rest {
		want = int(rest)
	}
	if cap(fr.buf) < want {
		fr.buf = make([]byte, want)
	}
	got, err := fr.r.ReadAt(fr.buf[:want], off)
	fr.off, fr.n = off, got
	if got < n {
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("wal: read frame at offset %d: %w", off, err)
		}
		return nil, nil
	}
	return fr.buf[:n], nil
}
