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

// chunkSize is the largest ranged read. A variable for tests.
var chunkSize int64 = 4 << 20

// blockSize is the unit downloads land in and memory is counted in.
const blockSize = 256 << 10

// bufferBytes bounds the bytes downloaded ahead of the applier: each
// download holds at most bufferBytes/Parallelism (but at least blockMin
// blocks) that the applier has not let go of, and stops reading while it
// holds that much. A stopped download's bytes wait in the kernel's socket
// buffers, not in the restore's heap, and the ranged reads stay as large.
const bufferBytes = 12 << 20

// blockMin is the fewest blocks a download may hold: the applier holds up
// to a segment's worth (segmentSize, spread over 3 blocks) plus the one it
// reads while it waits for more.
const blockMin = 6

// fetchAttempts bounds retries of one ranged read on transient errors.
const fetchAttempts = 3

// block is up to blockSize bytes of a chunk.
type block struct {
	data []byte // blockSize long (or the whole object, for unknown sizes)
	ch   *chunk
	// refs counts what holds the block: the stream until it reads past
	// it, and every segment with pages in it. The applier's goroutine only
	// (the download sets it to 1 before handing the block over).
	refs int
}

// chunk is one ranged read of one file of the plan. Its bytes are handed
// over block by block as they arrive, so the applier starts on a chunk
// while the rest of it (and the chunks after it) download.
type chunk struct {
	file int   // index in the plan
	off  int64 // offset in the file
	size int64 // bytes expected; 0 when the listing gave no size
	last bool  // the file's final chunk
	f    *fetcher

	mu     sync.Mutex
	blocks []*block // downloaded into so far; all full but the last
	avail  int64    // bytes downloaded (at most size)
	held   int      // blocks not yet let go of by the applier

	more  chan struct{} // poked when avail grows
	space chan struct{} // poked when a block is let go of
	err   error         // set before done is closed
	done  chan struct{} // closed when the download ends
}

// fetcher downloads the plan's files in chunks, ahead of the applier and in
// parallel, and hands them over strictly in plan order. A slot is taken per
// chunk before its download starts and given back once the applier has
// read past it, so at most Parallelism chunks download or wait; each holds
// a bounded number of blocks, and blocks are reused.
type fetcher struct {
	ctx       context.Context
	cancel    context.CancelFunc
	slots     chan struct{}
	queue     chan *chunk
	maxBlocks int            // per chunk
	wg        sync.WaitGroup // the dispatcher and every download

	mu   sync.Mutex
	free [][]byte // blocks let go of
}

func newFetcher(ctx context.Context, c ReplicaClient, plan []*ltx.FileInfo, parallelism int) *fetcher {
	ctx, cancel := context.WithCancel(ctx)
	f := &fetcher{
		ctx:       ctx,
		cancel:    cancel,
		slots:     make(chan struct{}, parallelism),
		queue:     make(chan *chunk, parallelism),
		maxBlocks: max(blockMin, bufferBytes/blockSize/parallelism),
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
		// chunk reachable.
		for off := int64(0); off == 0 || off < info.Size; off += chunkSize {
			ch := &chunk{file: i, off: off, last: true, f: f,
				more: make(chan struct{}, 1), space: make(chan struct{}, 1), done: make(chan struct{})}
			if info.Size > 0 {
				ch.size = min(chunkSize, info.Size-off)
				ch.last = off+ch.size >= info.Size
			}
			select {
			case f.slots <- struct{}{}:
			case <-f.ctx.Done():
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer close(ch.done)
				ch.err = ch.fetch(c, info)
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

// close stops the downloads and waits for them, so no goroutine outlives the
// restore and nothing reads the replica after Restore returns.
func (f *fetcher) close() {
	f.cancel()
	f.wg.Wait()
}

// fetch downloads the chunk, retrying transient errors from the first byte
// it does not have yet.
func (ch *chunk) fetch(c ReplicaClient, info *ltx.FileInfo) error {
	ctx := ch.f.ctx
	backoff := 100 * time.Millisecond
	var got int64
	for attempt := 1; ; attempt++ {
		var err error
		if ch.size == 0 {
			err = ch.fetchWhole(c, info)
		} else {
			err = ch.fetchOnce(c, info, &got)
		}
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

// fetchWhole reads an object of unknown size as one block.
func (ch *chunk) fetchWhole(c ReplicaClient, info *ltx.FileInfo) error {
	rc, err := c.OpenLTXFile(ch.f.ctx, info.Level, info.MinTXID, info.MaxTXID, 0, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if len(b) > 0 {
		ch.mu.Lock()
		ch.held++
		ch.mu.Unlock()
		ch.publish(&block{data: b, ch: ch, refs: 1}, int64(len(b)))
	}
	return nil
}

// errSize marks an object whose length is not what the listing said: it is
// damaged (or replaced), and retrying will not help.
var errSize = errors.New("object size differs from the listing")

// fetchOnce reads the chunk from byte *got on, handing over what arrives.
func (ch *chunk) fetchOnce(c ReplicaClient, info *ltx.FileInfo, got *int64) error {
	// The final chunk reads to the end, so bytes past the listed size show
	// up as an error here instead of as a confusing decode failure.
	var size int64
	if !ch.last {
		size = ch.size - *got
	}
	rc, err := c.OpenLTXFile(ch.f.ctx, info.Level, info.MinTXID, info.MaxTXID, ch.off+*got, size)
	if err != nil {
		return err
	}
	defer rc.Close()
	var one [1]byte
	for {
		if *got == ch.size {
			// One byte more than expected means a longer object.
			n, err := rc.Read(one[:])
			switch {
			case n > 0 && ch.last:
				return fmt.Errorf("%w: longer than the listed %d bytes", errSize, info.Size)
			case n > 0:
				return fmt.Errorf("%w: more than the %d bytes asked for at offset %d", errSize, ch.size, ch.off)
			case err == io.EOF:
				return nil
			case err != nil:
				return fmt.Errorf("read at offset %d: %w", ch.off+*got, err)
			}
			continue
		}
		// This goroutine alone appends blocks: it reads them unlocked.
		i := int(*got / blockSize)
		if i == len(ch.blocks) {
			blk, err := ch.newBlock()
			if err != nil {
				return err
			}
			ch.mu.Lock()
			ch.blocks = append(ch.blocks, blk)
			ch.mu.Unlock()
		}
		o := *got % blockSize
		n, err := rc.Read(ch.blocks[i].data[o:min(blockSize, o+ch.size-*got)])
		if n > 0 {
			*got += int64(n)
			ch.publish(nil, *got)
		}
		switch {
		case err == io.EOF && *got == ch.size:
			continue // check for a longer object
		case err == io.EOF:
			return fmt.Errorf("%w: %d bytes at offset %d, want %d of %d (truncated?)", errSize, *got, ch.off, ch.size, info.Size)
		case err != nil:
			return fmt.Errorf("read at offset %d: %w", ch.off+*got, err)
		}
	}
}

// newBlock waits until the chunk may hold another block and returns one,
// reused if the fetcher has one.
func (ch *chunk) newBlock() (*block, error) {
	f := ch.f
	for {
		ch.mu.Lock()
		ok := ch.held < f.maxBlocks
		if ok {
			ch.held++
		}
		ch.mu.Unlock()
		if ok {
			break
		}
		select {
		case <-ch.space:
		case <-f.ctx.Done():
			return nil, f.ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.free); n > 0 {
		b := f.free[n-1]
		f.free = f.free[:n-1]
		return &block{data: b, ch: ch, refs: 1}, nil
	}
	return &block{data: make([]byte, blockSize), ch: ch, refs: 1}, nil
}

// publish hands over blk (if not nil, as the chunk's next block) and the
// bytes up to avail.
func (ch *chunk) publish(blk *block, avail int64) {
	ch.mu.Lock()
	if blk != nil {
		ch.blocks = append(ch.blocks, blk)
	}
	ch.avail = avail
	ch.mu.Unlock()
	select {
	case ch.more <- struct{}{}:
	default:
	}
}

// unref lets go of a block; the last holder gives its memory back and lets
// its download read on. The applier's goroutine only.
func (b *block) unref() {
	if b.refs--; b.refs > 0 {
		return
	}
	ch := b.ch
	ch.mu.Lock()
	ch.held--
	newest := len(ch.blocks) > 0 && ch.blocks[len(ch.blocks)-1] == b
	ch.mu.Unlock()
	select {
	case ch.space <- struct{}{}:
	default:
	}
	if newest {
		select {
		case <-ch.done:
		default:
			// Its download still runs (the applier gave up on the file early,
			// on an error) and may still be reading into this block: it must
			// not be reused or touched; the garbage collector takes it after.
			return
		}
	}
	if len(b.data) == blockSize {
		ch.f.mu.Lock()
		ch.f.free = append(ch.f.free, b.data)
		ch.f.mu.Unlock()
	}
	b.data, b.ch = nil, nil
}

// stream reads one file of the plan out of the fetcher's chunks, as their
// bytes arrive. Slices it returns are valid until its next call; block
// says which block the last one is in, for a holder to keep.
type stream struct {
	f       *fetcher
	file    int
	cur     *chunk   // the chunk being read, nil before the first
	blocks  []*block // cur's blocks known so far
	rd, lim int64    // read offset in cur, and bytes known to be there
	dropped int      // blocks of cur the stream has let go of
	last    bool     // cur is the file's final chunk
	scratch []byte   // a record straddling blocks
	copied  bool     // take's last result is in scratch
	blk     *block   // take's last result is in blk

	// idle is called before waiting for bytes: the applier folds what the
	// workers have decoded, letting go of blocks a download may need.
	idle func() error
}

func (s *stream) reset(f *fetcher, file int) {
	s.drop()
	s.f, s.file, s.last = f, file, false
}

// drop lets go of the current chunk: its slot, and the blocks not yet read
// past.
func (s *stream) drop() {
	if s.cur == nil {
		return
	}
	s.cur.mu.Lock()
	s.blocks = s.cur.blocks
	s.cur.mu.Unlock()
	for ; s.dropped < len(s.blocks); s.dropped++ {
		s.blocks[s.dropped].unref()
	}
	s.cur, s.blocks, s.rd, s.lim, s.dropped, s.blk = nil, nil, 0, 0, 0, nil
	<-s.f.slots
}

// release lets go of the blocks read past.
func (s *stream) release() {
	for ; s.dropped < len(s.blocks) && int64(s.dropped+1)*blockSize <= s.rd && len(s.blocks[s.dropped].data) == blockSize; s.dropped++ {
		s.blocks[s.dropped].unref()
	}
}

// wait returns once cur holds want bytes, or all it will, and how many.
func (s *stream) wait(want int64) (int64, error) {
	ch := s.cur
	idle := false
	for {
		// Blocks never change once appended: a copy of the slice header
		// is a snapshot.
		ch.mu.Lock()
		n := ch.avail
		s.blocks = ch.blocks
		ch.mu.Unlock()
		if n >= want {
			return n, nil
		}
		if !idle && s.idle != nil {
			idle = true
			if err := s.idle(); err != nil {
				return 0, err
			}
			continue
		}
		select {
		case <-ch.more:
		case <-ch.done:
			if ch.err != nil {
				return 0, ch.err
			}
			ch.mu.Lock()
			n := ch.avail
			s.blocks = ch.blocks
			ch.mu.Unlock()
			return n, nil
		case <-s.f.ctx.Done():
			return 0, s.f.ctx.Err()
		}
	}
}

// more makes unread bytes known: more of cur, or the next chunk; io.EOF
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
		s.cur, s.last = ch, ch.last
		if ch.off == 0 && ch.file == 0 {
		}
		if ch.file != s.file {
			return fmt.Errorf("internal error: chunk of plan file %d while reading file %d", ch.file, s.file)
		}
	}
}

// blockEnd is the end of the block holding offset off of the current chunk.
func (s *stream) blockEnd(off int64) int64 {
	if s.cur.size == 0 {
		return max(s.lim, off+1) // one block, of unknown length
	}
	return min(off-off%blockSize+blockSize, s.cur.size)
}

// at returns bytes off..end of the current chunk, in one block.
func (s *stream) at(off, end int64) ([]byte, *block) {
	if s.cur.size == 0 {
		b := s.blocks[0]
		return b.data[off:end:end], b
	}
	b := s.blocks[off/blockSize]
	o := off % blockSize
	return b.data[o : o+end-off : o+end-off], b
}

// take returns the next n bytes: io.EOF if the file ended before them,
// io.ErrUnexpectedEOF if it ended inside them.
func (s *stream) take(n int) ([]byte, error) {
	s.release()
	s.copied, s.blk = false, nil
	end := s.rd + int64(n)
	if s.cur != nil && s.rd < s.cur.size && end <= s.blockEnd(s.rd) {
		// Inside one block: wait for it rather than copy.
		if end > s.lim {
			lim, err := s.wait(end)
			if err != nil {
				return nil, err
			}
			s.lim = lim
		}
		if end <= s.lim {
			b, blk := s.at(s.rd, end)
			s.rd, s.blk = end, blk
			return b, nil
		}
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
		k := min(int64(n-len(b)), s.lim-s.rd, s.blockEnd(s.rd)-s.rd)
		p, _ := s.at(s.rd, s.rd+k)
		b = append(b, p...)
		s.rd += k
	}
	s.scratch = b
	return b, nil
}

// next returns bytes available now (at least one, in one block); io.EOF at
// the end of the file.
func (s *stream) next() ([]byte, error) {
	s.release()
	if s.cur == nil || s.rd == s.lim {
		if err := s.more(); err != nil {
			return nil, err
		}
	}
	end := min(s.lim, s.blockEnd(s.rd))
	b, _ := s.at(s.rd, end)
	s.rd = end
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
