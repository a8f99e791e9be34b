package wal

import "encoding/binary"

// Only tests write frame headers: SQLite writes the real ones.

// AppendBinary appends the frame header's 24 bytes as stored.
func (f FrameHeader) AppendBinary(b []byte) ([]byte, error) {
	be := binary.BigEndian
	for _, v := range [...]uint32{f.Pgno, f.Commit, f.Salt1, f.Salt2, f.Checksum1, f.Checksum2} {
		b = be.AppendUint32(b, v)
	}
	return b, nil
}
