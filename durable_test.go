package litefs

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/litefs-dev/litefs/wal"
)

// The write that completes a commit frame is found whether SQLite writes a
// frame's header and page apart (its usual way) or together, and only that
// write: non-commit frames, the WAL header and a header rewrite are not.
func TestCommitFramesCompletes(t *testing.T) {
	const ps = 4096
	frame := int64(wal.FrameHeaderSize + ps)
	walHeader := make([]byte, wal.HeaderSize)
	binary.BigEndian.PutUint32(walHeader[8:], ps)
	hdr := func(commit uint32) []byte {
		b := make([]byte, wal.FrameHeaderSize)
		binary.BigEndian.PutUint32(b[0:], 1)
		binary.BigEndian.PutUint32(b[4:], commit)
		return b
	}
	page := make([]byte, ps)
	path := filepath.Join(t.TempDir(), "db-wal") // never read: the header write gives the page size
	var f commitFrames
	steps := []struct {
		off  int64
		p    []byte
		want bool
	}{
		{0, walHeader, false},
		{wal.HeaderSize, hdr(0), false},                            // frame 1: not a commit
		{wal.HeaderSize + wal.FrameHeaderSize, page, false},        // its page
		{wal.HeaderSize + frame, hdr(2), false},                    // frame 2: commit header
		{wal.HeaderSize + frame + wal.FrameHeaderSize, page, true}, // its page completes the commit
		{wal.HeaderSize + frame, hdr(2), false},                    // a checksum rewrite of that header
		{wal.HeaderSize + 2*frame, append(hdr(3), page...), true},  // header and page in one write
		{wal.HeaderSize + 3*frame, hdr(0), false},
		{wal.HeaderSize + 3*frame + wal.FrameHeaderSize, page, false},
	}
	for i, s := range steps {
		if got := f.completes(path, s.off, s.p); got != s.want {
			t.Fatalf("step %d (write of %d at %d): completes = %v, want %v", i, len(s.p), s.off, got, s.want)
		}
	}
}
