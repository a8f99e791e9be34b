package durable

import (
	"bufio"
	"io"

	"golang.org/x/sys/unix"
)

// PacedChunk is how much of a large file may be written and not yet flushed
// to the device at once.
const PacedChunk = 4 << 20

// PacedWriter writes a large file (a snapshot, a replica object) on the
// app's volume so that the app's own fsyncs stay fast. Every fsync ends in
// a device cache flush, and a flush waits for everything written to the
// device before it, by anyone: left to the kernel, a 1 GiB copy sits in
// the page cache and the device's cache, and the app's next commit pays for
// all of it (measured: commits of 0.2–0.4 s while a 1 GiB staged snapshot
// was copied into a file replica on the same disk, with or without
// sync_file_range pacing; none above 30 ms with this). So it makes the file durable every PacedChunk bytes: the app's
// flush never waits for more than one chunk of ours. Writes are buffered
// too: the LTX encoder writes a page header and a page at a time.
type PacedWriter struct {
	f       SyncWriter
	buf     *bufio.Writer
	written int64 // bytes handed to f
	synced  int64 // durable up to here
	err     error // a failed fdatasync: reported by every later Write
}

// SyncWriter is a file a PacedWriter writes: an *os.File, or a wrapper of
// one (a test's fault injector).
type SyncWriter interface {
	io.Writer
	Sync() error
}

// NewPacedWriter writes f from its current offset; Flush, then f.Sync, to
// finish.
func NewPacedWriter(f SyncWriter) *PacedWriter {
	p := &PacedWriter{f: f}
	p.buf = bufio.NewWriterSize(fileWriter{p}, 64<<10) // small: a freeze at sync-interval 0 writes a few KiB
	return p
}

func (p *PacedWriter) Write(b []byte) (int, error) { return p.buf.Write(b) }

// Flush hands the buffered bytes to the file.
func (p *PacedWriter) Flush() error { return p.buf.Flush() }

// fileWriter is the PacedWriter's unbuffered side.
type fileWriter struct{ p *PacedWriter }

func (w fileWriter) Write(b []byte) (int, error) {
	p := w.p
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.f.Write(b)
	p.written += int64(n)
	if err == nil && p.written-p.synced >= PacedChunk {
		// A failed fdatasync fails the file: after one, the kernel may have
		// dropped the dirty pages, and the final fsync could then succeed.
		if err = datasync(p.f); err != nil {
			p.err = err
		}
		p.synced = p.written
	}
	return n, err
}

// datasync is fdatasync where f has a descriptor (the size need not be
// durable mid-file: the final fsync makes it so), fsync otherwise.
func datasync(f SyncWriter) error {
	if fd, ok := f.(interface{ Fd() uintptr }); ok {
		return unix.Fdatasync(int(fd.Fd()))
	}
	return f.Sync()
}
