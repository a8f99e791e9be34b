package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/litefs-dev/litefs/internal/checksum"
	"github.com/superfly/ltx"
)

// readTrailer reads what follows the pages (the page index, its size and
// the trailer), feeding all of it but the file checksum to the register.
// The index is checked for well-formedness as ltx.Decoder does.
func readTrailer(s *stream, reg uint64) (ltx.Trailer, uint64, error) {
	var p tailParser
	for !p.done() {
		b, err := s.next()
		if err == io.EOF {
			return ltx.Trailer{}, 0, fmt.Errorf("file ends %d bytes after its pages: truncated: %w", p.n, io.ErrUnexpectedEOF)
		} else if err != nil {
			return ltx.Trailer{}, 0, err
		}
		var hashed []byte
		if hashed, err = p.write(b); err != nil {
			return ltx.Trailer{}, 0, err
		}
		reg = checksum.Update(reg, hashed)
	}
	if b, err := s.next(); err != io.EOF {
		if err != nil {
			return ltx.Trailer{}, 0, err
		}
		return ltx.Trailer{}, 0, fmt.Errorf("%d unexpected bytes after the trailer", len(b))
	}
	var t ltx.Trailer
	if err := t.UnmarshalBinary(p.fixed[8:]); err != nil {
		return ltx.Trailer{}, 0, err
	}
	return t, reg, nil
}

// tailParser takes the bytes after the page block in pieces: uvarint
// triples (pgno, offset, size) ending at a zero pgno, then 24 fixed bytes:
// the index size, the post-apply checksum and the file checksum.
type tailParser struct {
	n      int64  // bytes taken
	field  int    // of the triple being read
	nbyte  int    // bytes of the uvarint being read
	v      uint64 // its value so far
	idxEnd bool   // read the index's end marker
	fixed  [8 + ltx.TrailerSize]byte
	nfixed int
}

var errVarint = errors.New("read page index: varint overflows a 64-bit integer")

func (p *tailParser) done() bool { return p.nfixed == len(p.fixed) }

// write takes b, which must not run past the trailer, and returns the part
// of it the file checksum covers.
func (p *tailParser) write(b []byte) ([]byte, error) {
	i := 0
	for ; i < len(b) && !p.idxEnd; i++ { // as binary.ReadUvarint
		c := b[i]
		p.nbyte++
		if c >= 0x80 {
			if p.nbyte == binary.MaxVarintLen64 {
				return nil, errVarint
			}
			p.v |= uint64(c&0x7f) << (7 * (p.nbyte - 1))
			continue
		}
		if p.nbyte == binary.MaxVarintLen64 && c > 1 {
			return nil, errVarint
		}
		v := p.v | uint64(c)<<(7*(p.nbyte-1))
		p.nbyte, p.v = 0, 0
		if p.field == 0 && v == 0 {
			p.idxEnd = true
		}
		p.field = (p.field + 1) % 3
	}
	hashed := i
	for ; i < len(b) && p.nfixed < len(p.fixed); i++ {
		p.fixed[p.nfixed] = b[i]
		p.nfixed++
		if p.nfixed <= len(p.fixed)-ltx.ChecksumSize {
			hashed = i + 1
		}
	}
	p.n += int64(i)
	if i < len(b) {
		return nil, fmt.Errorf("%d unexpected bytes after the trailer", len(b)-i)
	}
	return b[:hashed], nil
}
