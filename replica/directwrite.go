package replica

import (
	"errors"
	"os"
	"sync"
	"syscall"
)

// syncEvery is how many bytes the writer writes between asking for an
// fsync in the background: the disk writes while the
// restore downloads, instead of all at once in the final fsync. A variable
// for tests.
var syncEvery int64 = 32 << 20

// directMin is the shortest run of pages written with O_DIRECT, when the
// system and file system allow it: a restore writes each page once and
// never reads it back, and through the page cache every byte costs a copy,
// a new page of memory (which a VM may first have to get from its host) and
// writeback later; that was most of a large restore's CPU. Shorter runs
// (the scattered pages of incremental files) go through the page cache,
// where they cost no wait on the device. Linux keeps the two coherent.
const directMin = 256 << 10

// writer performs the temp file's writes and truncations in order on its own
// goroutine, so the kernel's work overlaps decoding, and recycles segments.
type writer struct {
	f        *os.File // through the page cache
	df       *os.File // O_DIRECT, nil when unavailable
	segments int      // in circulation
	ops      chan writeOp
	free     chan *segment
	done     chan struct{}
	kick     chan struct{} // to the syncer
	synced   chan struct{} // the syncer has stopped
	unsynced int64

	mu  sync.Mutex
	err error // the first failure; every later op is skipped
}

type writeOp struct {
	seg  *segment // nil: truncate
	size int64
}

// newWriter creates (or truncates) the file at path.
func newWriter(path string, segments int) (*writer, error) {
	// O_TRUNC: a temp file left by a killed restore is ours to reuse.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	w := &writer{
		f: f, segments: segments,
		ops:    make(chan writeOp, segments+1),
		free:   make(chan *segment, segments),
		done:   make(chan struct{}),
		kick:   make(chan struct{}, 1),
		synced: make(chan struct{}),
	}
	if oDirect != 0 {
		w.df, _ = os.OpenFile(path, os.O_WRONLY|oDirect, 0) // tmpfs refuses: no matter
	}
	for range segments {
		w.free <- &segment{done: make(chan struct{}, 1)} // buffers allocated on first use
	}
	go w.run()
	go w.syncer()
	return w, nil
}

func (w *writer) run() {
	defer close(w.done)
	for op := range w.ops {
		err := w.failed()
		if err == nil {
			if op.seg != nil {
				err = w.writeSegment(op.seg)
			} else {
				err = w.f.Truncate(op.size)
			}
			w.fail(err)
		}
		if op.seg != nil {
			w.free <- op.seg
		}
	}
}

// writeSegment writes each run of consecutive pages with one call.
func (w *writer) writeSegment(seg *segment) error {
	pageSize := int64(seg.h.PageSize())
	pages := seg.pages
	for i := 0; i < len(pages); {
		j := i + 1
		for j < len(pages) && pages[j].pgno == pages[j-1].pgno+1 {
			j++
		}
		b, off := seg.buf[int64(i)*pageSize:int64(j)*pageSize], int64(pages[i].pgno-1)*pageSize
		i = j
		if err := w.writeRun(b, off); err != nil {
			return err
		}
		// O_DIRECT writes count too: they reach the device's cache, and
		// the final fsync's flush would otherwise wait for all of them.
		if w.unsynced += int64(len(b)); w.unsynced >= syncEvery {
			w.unsynced = 0
			select {
			case w.kick <- struct{}{}:
			default: // one is under way
			}
		}
	}
	return nil
}

// writeRun writes consecutive pages, with O_DIRECT when it can.
func (w *writer) writeRun(b []byte, off int64) error {
	if w.df != nil && len(b) >= directMin {
		// Segment buffers are large allocations, so page aligned, and
		// runs start at multiples of the page size; a device whose
		// blocks are larger (or a file system that takes O_DIRECT at
		// open but not at write) says EINVAL: stop trying.
		_, err := w.df.WriteAt(b, off)
		if err == nil || !errors.Is(err, syscall.EINVAL) {
			return err
		}
		w.df.Close()
		w.df = nil
	}
	_, err := w.f.WriteAt(b, off)
	return err
}

// syncer fsyncs when kicked. The error is kept: a later fsync may not
// report it again.
func (w *writer) syncer() {
	defer close(w.synced)
	for range w.kick {
		if w.failed() == nil {
			w.fail(w.f.Sync())
		}
	}
}

func (w *writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *writer) fail(err error) {
	if err != nil {
		w.mu.Lock()
		if w.err == nil {
			w.err = err
		}
		w.mu.Unlock()
	}
}

// write queues the segment's pages; the segment comes back to free.
func (w *writer) write(seg *segment) error {
	w.ops <- writeOp{seg: seg}
	return w.failed()
}

// truncate queues setting the file size after the writes before it.
func (w *writer) truncate(size int64) error {
	w.ops <- writeOp{size: size}
	return w.failed()
}

// close waits for the queued writes and background fsyncs and returns the
// first error.
func (w *writer) close() error {
	if w.ops != nil {
		close(w.ops)
		<-w.done
		close(w.kick)
		<-w.synced
		w.ops = nil
	}
	return w.failed()
}

// sync makes everything written durable (after close).
func (w *writer) sync() error { return w.f.Sync() }

// closeFiles closes the file (after close).
func (w *writer) closeFiles() error {
	if w.df != nil {
		w.df.Close()
		w.df = nil
	}
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
