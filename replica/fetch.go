package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/superfly/ltx"
)

// chunkSize is the largest ranged read. Memory held by a restore is at most
// Parallelism chunks, whatever the size of the files. A variable for tests.
var chunkSize int64 = 4 << 20

// fetchAttempts bounds retries of one ranged read on transient errors.
const fetchAttempts = 3

// chunk is one ranged read of one file of the plan.
type chunk struct {
	file  int   // index in the plan
	off   int64 // offset in the file
	size  int64 // bytes expected; 0 when the listing gave no size
	last  bool  // the file's final chunk
	data  []byte
	err   error
	ready chan struct{} // closed once data or err is set
}

// fetcher downloads the plan's files in chunks, ahead of the applier and in
// parallel, and hands them over strictly in plan order. A slot is taken per
// chunk before its download starts and given back only after the applier is
// done with it, so downloads in flight plus chunks waiting never exceed the
// slot count.
type fetcher struct {
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan struct{}
	queue  chan *chunk
	wg     sync.WaitGroup // the dispatcher and every download
}

func newFetcher(ctx context.Context, c ReplicaClient, plan []*ltx.FileInfo, parallelism int) *fetcher {
	ctx, cancel := context.WithCancel(ctx)
	f := &fetcher{
		ctx:    ctx,
		cancel: cancel,
		slots:  make(chan struct{}, parallelism),
		queue:  make(chan *chunk, parallelism),
	}
	f.wg.Add(1)
	go f.dispatch(c, plan)
	return f
}

func (f *fetcher) dispatch(c ReplicaClient, plan []*ltx.FileInfo) {
	defer f.wg.Done()
	defer close(f.queue)
	for i, info := range plan {
		for _, ch := range splitFile(i, info.Size) {
			select {
			case f.slots <- struct{}{}:
			case <-f.ctx.Done():
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				ch.data, ch.err = fetchChunk(f.ctx, c, info, ch)
				close(ch.ready)
			}()
			select {
			case f.queue <- ch:
			case <-f.ctx.Done():
				return
			}
		}
	}
}

func splitFile(file int, size int64) []*chunk {
	if size <= 0 {
		return []*chunk{{file: file, last: true, ready: make(chan struct{})}}
	}
	var a []*chunk
	for off := int64(0); off < size; off += chunkSize {
		a = append(a, &chunk{file: file, off: off, size: min(chunkSize, size-off), ready: make(chan struct{})})
	}
	a[len(a)-1].last = true
	return a
}

// close stops the downloads and waits for them, so no goroutine outlives the
// restore and nothing reads the replica after Restore returns.
func (f *fetcher) close() {
	f.cancel()
	f.wg.Wait()
}

// release gives a consumed chunk's slot back.
func (f *fetcher) release() { <-f.slots }

func fetchChunk(ctx context.Context, c ReplicaClient, info *ltx.FileInfo, ch *chunk) ([]byte, error) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		b, err := fetchOnce(ctx, c, info, ch)
		if err == nil || attempt == fetchAttempts || ctx.Err() != nil ||
			errors.Is(err, ErrNotFound) || errors.Is(err, errSize) {
			return b, err
		}
		select {
		case <-time.After(backoff):
			backoff *= 2
		case <-ctx.Done():
			return nil, err
		}
	}
}

// errSize marks an object whose length is not what the listing said: it is
// damaged (or replaced), and retrying will not help.
var errSize = errors.New("object size differs from the listing")

func fetchOnce(ctx context.Context, c ReplicaClient, info *ltx.FileInfo, ch *chunk) ([]byte, error) {
	// The final chunk reads to the end, so bytes past the listed size show
	// up as an error here instead of as a confusing decode failure.
	var size int64
	if !ch.last {
		size = ch.size
	}
	rc, err := c.OpenLTXFile(ctx, info.Level, info.MinTXID, info.MaxTXID, ch.off, size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if ch.size == 0 {
		return io.ReadAll(rc)
	}
	// One byte of room beyond the expected size detects a longer object
	// while keeping memory bounded.
	buf := make([]byte, ch.size+1)
	n, err := io.ReadFull(rc, buf)
	switch {
	case err == nil && ch.last:
		return nil, fmt.Errorf("%w: longer than the listed %d bytes", errSize, info.Size)
	case err == nil:
		return buf[:n], nil
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if int64(n) == ch.size {
			return buf[:n], nil
		}
		return nil, fmt.Errorf("%w: %d bytes at offset %d, want %d of %d (truncated?)", errSize, n, ch.off, ch.size, info.Size)
	default:
		return nil, fmt.Errorf("read at offset %d: %w", ch.off, err)
	}
}

// fileReader streams one file of the plan out of the fetcher's chunks.
type fileReader struct {
	f    *fetcher
	file int
	buf  []byte
	held bool  // holding a chunk's slot
	done bool  // handed out the file's final chunk
	n    int64 // bytes read
}

func (r *fileReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.done {
			return 0, io.EOF
		}
		r.drop()
		var ch *chunk
		select {
		case ch = <-r.f.queue:
		case <-r.f.ctx.Done():
			return 0, r.f.ctx.Err()
		}
		if ch == nil {
			// The dispatcher only stops early when cancelled.
			if err := context.Cause(r.f.ctx); err != nil {
				return 0, fmt.Errorf("download stopped: %w", err)
			}
			return 0, errors.New("internal error: downloads ended before the file did")
		}
		r.held = true
		<-ch.ready // every download ends: it watches the context
		if ch.err != nil {
			return 0, ch.err
		}
		if ch.file != r.file {
			return 0, fmt.Errorf("internal error: chunk of plan file %d while reading file %d", ch.file, r.file)
		}
		r.buf, r.done = ch.data, ch.last
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.n += int64(n)
	return n, nil
}

// drop gives back the slot of the chunk just consumed.
func (r *fileReader) drop() {
	if r.held {
		r.held = false
		r.f.release()
	}
}
