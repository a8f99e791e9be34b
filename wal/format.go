package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// HeaderSize is the size of the WAL header at offset 0.
	HeaderSize = 32
	// FrameHeaderSize is the size of the header in front of every page.
	FrameHeaderSize = 24

	// MagicLE and MagicBE are the two header magics; the low bit says in
	// which byte order the checksums read the file's 32-bit words.
	MagicLE = 0x377f0682
	MagicBE = 0x377f0683

	// Version is the only WAL format version SQLite has ever written.
	Version = 3007000

	minPageSize = 512
	maxPageSize = 65536
)

// ErrInvalidHeader is wrapped by every ParseHeader error.
var ErrInvalidHeader = errors.New("wal: invalid header")

// Header is the 32-byte WAL header. Its fields are stored big-endian whatever
// the checksum byte order is.
type Header struct {
	Magic     uint32 // MagicLE or MagicBE
	Version   uint32 // Version
	PageSize  uint32 // the full value: 65536 is stored as 0x00010000
	Seq       uint32 // checkpoint sequence, bumped at every WAL restart
	Salt1     uint32 // incremented at every restart
	Salt2     uint32 // random at every restart
	Checksum1 uint32 // checksum of bytes 0..23, seeding the frame chain
	Checksum2 uint32
}

// ParseHeader decodes and validates a WAL header the way SQLite's recovery
// does: a header it would ignore is an error here.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, need %d", ErrInvalidHeader, len(b), HeaderSize)
	}
	be := binary.BigEndian
	h := Header{
		Magic:     be.Uint32(b[0:]),
		Version:   be.Uint32(b[4:]),
		PageSize:  be.Uint32(b[8:]),
		Seq:       be.Uint32(b[12:]),
		Salt1:     be.Uint32(b[16:]),
		Salt2:     be.Uint32(b[20:]),
		Checksum1: be.Uint32(b[24:]),
		Checksum2: be.Uint32(b[28:]),
	}
	if h.Magic != MagicLE && h.Magic != MagicBE {
		return Header{}, fmt.Errorf("%w: magic %#08x", ErrInvalidHeader, h.Magic)
	}
	if h.Version != Version {
		return Header{}, fmt.Errorf("%w: version %d", ErrInvalidHeader, h.Version)
	}
	if !validPageSize(h.PageSize) {
		return Header{}, fmt.Errorf("%w: page size %d", ErrInvalidHeader, h.PageSize)
	}
	s1, s2 := Checksum(h.BigEndian(), 0, 0, b[:24])
	if s1 != h.Checksum1 || s2 != h.Checksum2 {
		return Header{}, fmt.Errorf("%w: checksum %08x%08x, computed %08x%08x",
			ErrInvalidHeader, h.Checksum1, h.Checksum2, s1, s2)
	}
	return h, nil
}

// BigEndian reports whether checksums read the file's words big-endian.
func (h Header) BigEndian() bool { return h.Magic&1 == 1 }

// AppendBinary appends the header's 32 bytes as stored, checksum fields as
// they are (see Seal to compute them).
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	be := binary.BigEndian
	for _, v := range [...]uint32{h.Magic, h.Version, h.PageSize, h.Seq, h.Salt1, h.Salt2, h.Checksum1, h.Checksum2} {
		b = be.AppendUint32(b, v)
	}
	return b, nil
}

// Seal returns h with its checksum fields computed, as SQLite writes it.
func (h Header) Seal() Header {
	b, _ := h.AppendBinary(make([]byte, 0, HeaderSize))
	h.Checksum1, h.Checksum2 = Checksum(h.BigEndian(), 0, 0, b[:24])
	return h
}

func validPageSize(n uint32) bool {
	return n >= minPageSize && n <= maxPageSize && n&(n-1) == 0
}

// FrameHeader is the 24-byte header in front of every page in the WAL.
type FrameHeader struct {
	Pgno      uint32 // never 0 in a valid frame
	Commit    uint32 // db size in pages after commit for a commit frame, else 0
	Salt1     uint32 // must equal the WAL header's
	Salt2     uint32
	Checksum1 uint32 // cumulative checksum through this frame's page
	Checksum2 uint32
}

// ParseFrameHeader decodes a frame header without validating it; b shorter
// than FrameHeaderSize yields the zero header (never valid: Pgno 0).
func ParseFrameHeader(b []byte) FrameHeader {
	if len(b) < FrameHeaderSize {
		return FrameHeader{}
	}
	be := binary.BigEndian
	return FrameHeader{
		Pgno:      be.Uint32(b[0:]),
		Commit:    be.Uint32(b[4:]),
		Salt1:     be.Uint32(b[8:]),
		Salt2:     be.Uint32(b[12:]),
		Checksum1: be.Uint32(b[16:]),
		Checksum2: be.Uint32(b[20:]),
	}
}

// Checksum continues SQLite's WAL checksum (s1, s2) over b, whose length must
// be a multiple of 8 (a trailing partial word pair is ignored). The words are
// read big- or little-endian as the header's magic says; the result is stored
// big-endian in the file either way.
func Checksum(bigEndian bool, s1, s2 uint32, b []byte) (uint32, uint32) {
	b = b[:len(b)&^7]
	if bigEndian {
		for len(b) >= 32 {
			s1 += binary.BigEndian.Uint32(b[0:]) + s2
			s2 += binary.BigEndian.Uint32(b[4:]) + s1
			s1 += binary.BigEndian.Uint32(b[8:]) + s2
			s2 += binary.BigEndian.Uint32(b[12:]) + s1
			s1 += binary.BigEndian.Uint32(b[16:]) + s2
			s2 += binary.BigEndian.Uint32(b[20:]) + s1
			s1 += binary.BigEndian.Uint32(b[24:]) + s2
			s2 += binary.BigEndian.Uint32(b[28:]) + s1
			b = b[32:]
		}
		for len(b) >= 8 {
			s1 += binary.BigEndian.Uint32(b[0:]) + s2
			s2 += binary.BigEndian.Uint32(b[4:]) + s1
			b = b[8:]
		}
		return s1, s2
	}
	for len(b) >= 32 {
		s1 += binary.LittleEndian.Uint32(b[0:]) + s2
		s2 += binary.LittleEndian.Uint32(b[4:]) + s1
		s1 += binary.LittleEndian.Uint32(b[8:]) + s2
		s2 += binary.LittleEndian.Uint32(b[12:]) + s1
		s1 += binary.LittleEndian.Uint32(b[16:]) + s2
		s2 += binary.LittleEndian.Uint32(b[20:]) + s1
		s1 += binary.LittleEndian.Uint32(b[24:]) + s2
		s2 += binary.LittleEndian.Uint32(b[28:]) + s1
		b = b[32:]
	}
	for len(b) >= 8 {
		s1 += binary.LittleEndian.Uint32(b[0:]) + s2
		s2 += binary.LittleEndian.Uint32(b[4:]) + s1
		b = b[8:]
	}
	return s1, s2
}

// frameChecksum continues the chain (s1, s2) over one frame: the first 8
// bytes of its header (salts and checksum are not covered) and its page.
func frameChecksum(bigEndian bool, s1, s2 uint32, frame []byte) (uint32, uint32) {
	s1, s2 = Checksum(bigEndian, s1, s2, frame[:8])
	return Checksum(bigEndian, s1, s2, frame[FrameHeaderSize:])
}

// checkFrame reports whether frame (header and page) is valid after a chain
// at (s1, s2) under salts, returning the chain through it.
func checkFrame(bigEndian bool, salt1, salt2, s1, s2 uint32, frame []byte) (uint32, uint32, bool) {
	fh := ParseFrameHeader(frame)
	if fh.Pgno == 0 || fh.Salt1 != salt1 || fh.Salt2 != salt2 {
		return 0, 0, false
	}
	c1, c2 := frameChecksum(bigEndian, s1, s2, frame)
	if c1 != fh.Checksum1 || c2 != fh.Checksum2 {
		return 0, 0, false
	}
	return c1, c2, true
}

// TouchesHeader reports whether a write at off of n bytes overlaps the
// 32-byte header: SQLite only writes there to start a new WAL generation, so
// the caller makes its staging durable before the old frames can go.
func TouchesHeader(off int64, n int) bool {
	return n > 0 && off < HeaderSize && off+int64(n) > 0
}
