package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/superfly/ltx"
)

// chunkSize is the largest ranged read. Memory held by a restore is at most
// Parallelism chunks, whatever the size of the files. A variable for tests.
var chunkSize int64 = 4 << 20

// fetchAttempts bounds retries of one ranged read on transient errors.
const fetchAttempts = 3

// chunk is one ranged read of one file of the plan. Its bytes are handed
// over as they arrive, so the applier starts on a chunk while the rest of
// it (and the chunks after it) download.
type chunk struct {
	file  int   // index in the plan
	off   int64 // offset in the file
	size  int64 // bytes expected; 0 when the listing gave no size
	last  bool  // the file's final chunk
	refs  int   // the stream and segments holding it (the applier's goroutine only)
	buf   []byte
	avail atomic.Int64  // bytes of buf downloaded (at most size)
	more  chan struct{} // poked when avail grows
	err   error         // set before done is closed
	done  chan struct{} // closed when the download ends
}

// fetcher downloads the plan's files in chunks, ahead of the applier and in
// parallel, and hands them over strictly in plan order. A slot is taken per
// chunk before its download starts and given back only after the applier is
// done with it, so downloads in flight plus chunks waiting never exceed the
// slot count; their buffers are reused, so a restore allocates at most
// Parallelism of them.
type fetcher struct {
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan struct{}
	queue  chan *chunk
	wg     sync.WaitGroup // the dispatcher and every download

	mu   sync.Mutex
	free [][]byte // buffers of chunkSize+1 bytes
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
		// Chunks are made one at a time: nothing here keeps a consumed
		// chunk's data reachable.
		for off := int64(0); off == 0 || off < info.Size; off += chunkSize {
			ch := &chunk{file: i, off: off, last: true, more: make(chan struct{}, 1), done: make(chan struct{})}
			if info.Size > 0 {
				ch.size = min(chunkSize, info.Size-off)
				ch.last = off+ch.size >= info.Size
			}
			t0 := time.Now()
			select {
			case f.slots <- struct{}{}:
			case <-f.ctx.Done():
				return
			}
			tSlotWait += since(t0)
			ch.buf = f.getBuf(ch.size)
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer close(ch.done)
				ch.err = fetchChunk(f.ctx, c, info, ch)
			}()
			select {
			case f.queue <- ch:
			case <-f.ctx.Done():
				return
			}
			if info.Size <= 0 {
				break
			}
		}
	}
}

// getBuf returns a buffer for a chunk of size bytes (0: unknown, read into
// its own allocation). Small chunks get their own small buffer.
func (f *fetcher) getBuf(size int64) []byte {
	switch {
	case size <= 0:
		return nil
	case size < chunkSize/4:
		return make([]byte, size+1)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.free); n > 0 {
		b := f.free[n-1]
		f.free = f.free[:n-1]
		return b
	}
	return make([]byte, chunkSize+1)
}

// release gives a consumed chunk's slot, and its buffer, back.
func (f *fetcher) release(ch *chunk) {
	if int64(cap(ch.buf)) == chunkSize+1 {
		f.mu.Lock()
		f.free = append(f.free, ch.buf[:cap(ch.buf)])
		f.mu.Unlock()
	}
	ch.buf = nil
	<-f.slots
}

// close stops the downloads and waits for them, so no goroutine outlives the
// restore and nothing reads the replica after Restore returns.
func (f *fetcher) close() {
	f.cancel()
	f.wg.Wait()
}

// fetchChunk downloads ch, retrying transient errors from the first byte
// it does not have yet.
func fetchChunk(ctx context.Context, c ReplicaClient, info *ltx.FileInfo, ch *chunk) error {
	if ch.size == 0 {
		return fetchWhole(ctx, c, info, ch)
	}
	backoff := 100 * time.Millisecond
	var got int64
	for attempt := 1; ; attempt++ {
		err := fetchOnce(ctx, c, info, ch, &got)
		if err == nil || attempt == fetchAttempts || ctx.Err() != nil ||
			errors.Is(err, ErrNotFound) || errors.Is(err, errSize) {
			return err
		}
		select {
		case <-time.After(backoff):
			backoff *= 2
		case <-ctx.Done():
			return err
		}
	}
}

// fetchWhole reads an object of unknown size in one piece.
func fetchWhole(ctx context.Context, c ReplicaClient, info *ltx.FileInfo, ch *chunk) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rc, err := c.OpenLTXFile(ctx, info.Level, info.MinTXID, info.MaxTXID, 0, 0)
		if err == nil {
			ch.buf, err = io.ReadAll(rc)
			rc.Close()
		}
		if err == nil {
			ch.avail.Store(int64(len(ch.buf)))
			return nil
		}
		if attempt == fetchAttempts || ctx.Err() != nil || errors.Is(err, ErrNotFound) {
			return err
		}
		select {
		case <-time.After(backoff):
			backoff *= 2
		case <-ctx.Done():
			return err
		}
	}
}

// errSize marks an object whose length is not what the listing said: it is
// damaged (or replaced), and retrying will not help.
var errSize = errors.New("object size differs from the listing")

// fetchOnce reads ch from byte *got on, publishing what arrives.
func fetchOnce(ctx context.Context, c ReplicaClient, info *ltx.FileInfo, ch *chunk, got *int64) error {
	// The final chunk reads to the end, so bytes past the listed size show
	// up as an error here instead of as a confusing decode failure.
	var size int64
	if !ch.last {
		size = ch.size - *got
	}
	rc, err := c.OpenLTXFile(ctx, info.Level, info.MinTXID, info.MaxTXID, ch.off+*got, size)
	if err != nil {
		return err
	}
	defer rc.Close()
	// One byte of room beyond the expected size detects a longer object
	// while keeping memory bounded.
	buf := ch.buf[:ch.size+1]
	for {
		n, err := rc.Read(buf[*got:])
		if *got += int64(n); n > 0 {
			ch.avail.Store(min(*got, ch.size))
			select {
			case ch.more <- struct{}{}:
			default:
			}
		}
		switch {
		case *got > ch.size && ch.last:
			return fmt.Errorf("%w: longer than the listed %d bytes", errSize, info.Size)
		case *got > ch.size:
			return fmt.Errorf("%w: more than the %d bytes asked for at offset %d", errSize, ch.size, ch.off)
		case err == io.EOF && *got == ch.size:
			return nil
		case err == io.EOF:
			return fmt.Errorf("%w: %d bytes at offset %d, want %d of %d (truncated?)", errSize, *got, ch.off, ch.size, info.Size)
		case err != nil:
			return fmt.Errorf("read at offset %d: %w", ch.off+*got, err)
		}
	}
}

// stream reads one file of the plan out of the fetcher's chunks, as they
// arrive. Slices it returns are valid until its next call.
type stream struct {
	f       *fetcher
	file    int
	cur     *chunk // held, nil once given back
	rd, lim int64  // read offset in cur, and how much of it is known to be there
	last    bool   // cur is the file's final chunk
	scratch []byte // a record straddling chunks
	copied  bool   // take's last result is in scratch, not in cur
}

func (s *stream) reset(f *fetcher, file int) {
	s.drop()
	s.f, s.file, s.last = f, file, false
}

// drop lets go of the current chunk.
func (s *stream) drop() {
	if s.cur != nil {
		s.unref(s.cur)
		s.cur, s.rd, s.lim = nil, 0, 0
	}
}

// unref gives a chunk back once nothing holds it.
func (s *stream) unref(ch *chunk) {
	if ch.refs--; ch.refs == 0 {
		s.f.release(ch)
	}
}

// wait returns once cur holds want bytes, or all it will, and how many.
func (s *stream) wait(want int64) (int64, error) {
	ch := s.cur
	for {
		if n := ch.avail.Load(); n >= want {
			return n, nil
		}
		t0 := time.Now()
		nStreamWait++
		defer func() { tStreamWait += since(t0) }()
		select {
		case <-ch.more:
		case <-ch.done:
			if ch.err != nil {
				return 0, ch.err
			}
			return ch.avail.Load(), nil
		case <-s.f.ctx.Done():
			return 0, s.f.ctx.Err()
		}
	}
}

// more makes unread bytes available: more of cur, or the next chunk; io.EOF
// past the file's end.
func (s *stream) more() error {
	for {
		if s.cur != nil {
			n, err := s.wait(s.rd + 1)
			if err != nil {
				return err
			}
			if s.lim = n; s.rd < s.lim {
				return nil
			}
			if s.last {
				return io.EOF
			}
		} else if s.last {
			return io.EOF
		}
		s.drop()
		var ch *chunk
		t0 := time.Now()
		defer func() { tStreamWait += since(t0) }()
		select {
		case ch = <-s.f.queue:
		case <-s.f.ctx.Done():
			return s.f.ctx.Err()
		}
		if ch == nil {
			// The dispatcher only stops early when cancelled.
			if err := context.Cause(s.f.ctx); err != nil {
				return fmt.Errorf("download stopped: %w", err)
			}
			return errors.New("internal error: downloads ended before the file did")
		}
		s.cur, ch.refs, s.last = ch, 1, ch.last
		if ch.off == 0 && ch.file == 0 {
			trace("first chunk handed over")
		}
		if ch.file != s.file {
			return fmt.Errorf("internal error: chunk of plan file %d while reading file %d", ch.file, s.file)
		}
	}
}

// take returns the next n bytes: io.EOF if the file ended before them,
// io.ErrUnexpectedEOF if it ended inside them.
func (s *stream) take(n int) ([]byte, error) {
	s.copied = false
	end := s.rd + int64(n)
	if s.cur != nil && end > s.lim && end <= s.cur.size {
		// Inside this chunk: wait for it rather than copy.
		lim, err := s.wait(end)
		if err != nil {
			return nil, err
		}
		s.lim = lim
	}
	if s.cur != nil && end <= s.lim {
		b := s.cur.buf[s.rd:end:end]
		s.rd = end
		return b, nil
	}
	s.copied = true
	b := s.scratch[:0]
	for len(b) < n {
		if s.cur == nil || s.rd == s.lim {
			if err := s.more(); err == io.EOF && len(b) > 0 {
				return nil, io.ErrUnexpectedEOF
			} else if err != nil {
				return nil, err
			}
		}
		k := min(int64(n-len(b)), s.lim-s.rd)
		b = append(b, s.cur.buf[s.rd:s.rd+k]...)
		s.rd += k
	}
	s.scratch = b
	return b, nil
}

// next returns the bytes available now (at least one); io.EOF at the end
// of the file.
func (s *stream) next() ([]byte, error) {
	if s.cur == nil || s.rd == s.lim {
		if err := s.more(); err != nil {
			return nil, err
		}
	}
	b := s.cur.buf[s.rd:s.lim]
	s.rd = s.lim
	return b, nil
}

// Read makes the stream an io.Reader (for LZ4 frames).
func (s *stream) Read(p []byte) (int, error) {
	b, err := s.next()
	if err != nil {
		return 0, err
	}
	n := copy(p, b)
	s.rd -= int64(len(b) - n)
	return n, nil
}
