package litefs

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/litefs-dev/litefs/wal"
)

// walQueue holds WAL writes already in the file, not yet fed to the tracker.
type walQueue struct {
	mu       sync.Mutex
	cond     sync.Cond
	ops      []walOp
	applied  uint64 // ops fed to the tracker
	queued   uint64
	closed   bool
	sleeping bool // the applier waits on cond; else it polls (see applyLoop)
}

// While writes keep coming the applier polls the queue every applyPoll
// instead of being woken by each one: a wakeup is a futex call the app's
// write would wait for (its reply is sent after WriteWAL returns). After
// applyIdle without a write it sleeps until one comes.
const (
	applyPoll = 500 * time.Microsecond
	applyIdle = 5 * time.Millisecond
)

type walOp struct {
	off int64
	buf *[]byte
}

// maxQueued bounds memory: the app waits beyond it.
const maxQueued = 4096

var opBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096+wal.FrameHeaderSize); return &b }}

func (c *Capture) enqueue(off int64, p []byte) {
	buf := opBufs.Get().(*[]byte)
	*buf = append((*buf)[:0], p...)
	q := &c.queue
	q.mu.Lock()
	for len(q.ops) >= maxQueued && !q.closed {
		if q.sleeping {
			q.cond.Broadcast() // a queue full of lone frame headers
		}
		q.cond.Wait()
	}
	q.ops = append(q.ops, walOp{off: off, buf: buf})
	q.queued++
	// A frame header is useless to the tracker without its page, which
	// SQLite writes next: the page wakes the applier. drain wakes it for a
	// header left alone.
	wake := q.sleeping && len(p) != wal.FrameHeaderSize
	q.mu.Unlock()
	if wake {
		q.cond.Broadcast()
	}
}

// drain waits until every queued write was fed to the tracker.
func (c *Capture) drain() {
	q := &c.queue
	q.mu.Lock()
	for q.applied != q.queued && !q.closed {
		if q.sleeping {
			q.cond.Broadcast() // it may sleep on a lone frame header
		}
		q.cond.Wait()
	}
	q.mu.Unlock()
}

// applyLoop feeds queued writes to the tracker, in order, a batch at a
// time, until the queue is closed and empty.
func (c *Capture) applyLoop() {
	q := &c.queue
	var batch []walOp
	var lastWork time.Time
	for {
		q.mu.Lock()
		if len(q.ops) == 0 && !q.closed && time.Since(lastWork) < applyIdle {
			q.mu.Unlock()
			time.Sleep(applyPoll)
			continue
		}
		if len(q.ops) == 0 && !q.closed {
			// Idle: staged records go to the log file before the applier
			// sleeps, so none lives only in memory for long.
			q.mu.Unlock()
			c.writeStaged()
			q.mu.Lock()
		}
		for len(q.ops) == 0 && !q.closed {
			q.sleeping = true
			q.cond.Wait()
			q.sleeping = false
		}
		if len(q.ops) == 0 {
			q.mu.Unlock()
			return
		}
		batch, q.ops = q.ops, batch[:0]
		q.mu.Unlock()

		c.mu.Lock()
		for _, op := range batch {
			c.apply(op.off, *op.buf)
			opBufs.Put(op.buf)
		}
		c.mu.Unlock()

		q.mu.Lock()
		q.applied += uint64(len(batch))
		q.mu.Unlock()
		q.cond.Broadcast()
		clear(batch)
		lastWork = time.Now()
	}
}

// closeQueue applies what is queued and stops applyLoop.
func (c *Capture) closeQueue() {
	c.drain()
	q := &c.queue
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
	<-c.applyDone
}

// apply feeds one write to the tracker. Called with c.mu held.
func (c *Capture) apply(off int64, p []byte) {
	if c.state == StateStopped {
		return
	}
	gen := c.tracker.Position()
	err := c.tracker.Write(off, p)
	if errors.Is(err, wal.ErrPendingTooLarge) {
		c.stop(fmt.Errorf("database %s: a transaction larger than the tracker's limit (%d MiB) cannot be replicated; restart litefs to take a new snapshot: %w", c.name, wal.DefaultMaxPending>>20, err))
		return
	} else if err != nil {
		// The commit is in the WAL and the tracker keeps it pending; the
		// next write or barrier offers it again, and barriers hold the WAL
		// until it is staged.
		if c.stageErr == nil {
			c.logger.Error("cannot stage a committed transaction; the WAL keeps it until staging works again", "err", err)
		}
		c.stageErr = err
		return
	}
	c.stageErr = nil
	if now := c.tracker.Position(); now.Salt1 != gen.Salt1 || now.Salt2 != gen.Salt2 {
		clear(c.walIndex) // a new generation: the old frames were all checkpointed
	}
	if wal.TouchesHeader(off, len(p)) && c.state == StateReplicating {
		c.checkWALMode("WAL restart")
	}
}
