package litefs

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/litefs-dev/litefs/wal"
)

// The fs.DB hooks. A WAL write is answered as soon as it reached the file:
// the tracker's bookkeeping (validating frames, encoding and staging a
// segment) runs on the DB's own goroutine, off the app's commit path. That
// keeps the invariant because a queued write is in the WAL on the volume,
// and every operation that could make WAL frames disappear (a restart's
// header write, a truncate, an unlink) is a barrier: it waits until the
// queue is applied and staging is durable before it goes through. A crash
// with writes still queued loses nothing: start-up stages the WAL's commits
// past the last position.

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

// errShuttingDown answers WAL changes once shutdown began.
var errShuttingDown = fmt.Errorf("litefs is shutting down: %w", syscall.EIO)

// RefuseWrites makes every later WAL change fail; the ones already made are
// applied and staged. The daemon calls it first on shutdown: a commit
// acknowledged after it could not be uploaded before the process exits.
func (d *DB) RefuseWrites() {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.closing = true
}

// WriteWAL implements fs.DB.
func (d *DB) WriteWAL(off int64, p []byte, write func() (int, error)) (int, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.closing {
		return 0, errShuttingDown
	}
	if wal.TouchesHeader(off, len(p)) {
		if err := d.barrier(); err != nil {
			return 0, err
		}
		d.checkAtRest()
	}
	n, err := write()
	if err != nil || n == 0 {
		return n, err
	}
	d.enqueue(off, p[:n])
	return n, nil
}

// TruncateWAL implements fs.DB.
func (d *DB) TruncateWAL(size int64, truncate func() error) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if err := d.beforeWALShrinks(); err != nil {
		return err
	}
	if err := truncate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tracker.Truncate(size)
	if size < wal.HeaderSize {
		clear(d.walIndex)
		d.noteAtRest()
	}
	return nil
}

// SyncWAL implements fs.DB. Staging is deliberately not synced here: under
// synchronous=FULL SQLite made the commit durable in the WAL already. But
// its records are written to the log file: SQLite syncs the WAL before every
// checkpoint, and once a checkpoint has copied frames into the database
// file, start-up can resume only from a record the log holds (it checks the
// database file plus the WAL up to that record against its checksum).
func (d *DB) SyncWAL(sync func() error) error {
	d.writeStaged()
	return sync()
}

// writeStaged writes the staged records still in memory to the log file
// (not synced). A failure is logged: the records stay pending, and a
// barrier reports it.
func (d *DB) writeStaged() {
	if err := d.stage.WritePending(); err != nil {
		d.logger.Warn("cannot write staged records to the staging log; will retry", "err", err)
	}
}

// RemoveWAL implements fs.DB.
func (d *DB) RemoveWAL(remove func() error) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if err := d.beforeWALShrinks(); err != nil {
		return err
	}
	if err := remove(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tracker.Unlink()
	clear(d.walIndex)
	if d.state == StateReplicating {
		d.checkWALMode("WAL removed")
	}
	d.noteAtRest()
	return nil
}

// JournalCreated implements fs.DB: a database in WAL mode never makes a
// rollback journal, so one appearing means it is leaving WAL mode.
func (d *DB) JournalCreated() {
	d.drain()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == StateReplicating {
		d.stop(fmt.Errorf("database %s left WAL mode (a -journal file was created): litefs replicates only WAL-mode databases; set PRAGMA journal_mode=WAL and restart litefs", d.name))
	}
}

// beforeWALShrinks runs, with wmu held, before a truncate or an unlink:
// refused once shutdown began, else a barrier.
func (d *DB) beforeWALShrinks() error {
	if d.closing {
		return errShuttingDown
	}
	return d.barrier()
}

// barrier applies every queued write, offers again a commit that could not
// be staged, and makes staging and the position durable: only then may WAL
// frames disappear. Called with wmu held, so nothing is queued meanwhile.
func (d *DB) barrier() error {
	d.drain()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != StateStopped && d.tracker.Pending() {
		if err := d.tracker.Retry(); err != nil {
			return fmt.Errorf("a committed transaction of %s is not staged yet, so the WAL must keep it: %w", d.name, err)
		}
	}
	if err := d.stage.Sync(); err != nil {
		return err
	}
	if d.posDirty {
		if err := d.stage.WritePos(d.pos, true); err != nil {
			return err
		}
		d.posDirty = false
	}
	return nil
}

func (d *DB) enqueue(off int64, p []byte) {
	buf := opBufs.Get().(*[]byte)
	*buf = append((*buf)[:0], p...)
	q := &d.queue
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
func (d *DB) drain() {
	q := &d.queue
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
func (d *DB) applyLoop() {
	q := &d.queue
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
			d.writeStaged()
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

		d.mu.Lock()
		for _, op := range batch {
			d.apply(op.off, *op.buf)
			opBufs.Put(op.buf)
		}
		d.mu.Unlock()

		q.mu.Lock()
		q.applied += uint64(len(batch))
		q.mu.Unlock()
		q.cond.Broadcast()
		clear(batch)
		lastWork = time.Now()
	}
}

// closeQueue applies what is queued and stops applyLoop.
func (d *DB) closeQueue() {
	d.drain()
	q := &d.queue
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
	<-d.applyDone
}

// apply feeds one write to the tracker. Called with d.mu held.
func (d *DB) apply(off int64, p []byte) {
	if d.state == StateStopped {
		return
	}
	gen := d.tracker.Position()
	err := d.tracker.Write(off, p)
	if errors.Is(err, wal.ErrPendingTooLarge) {
		d.stop(fmt.Errorf("database %s: a transaction larger than the tracker's limit (%d MiB) cannot be replicated; restart litefs to take a new snapshot: %w", d.name, wal.DefaultMaxPending>>20, err))
		return
	} else if err != nil {
		// The commit is in the WAL and the tracker keeps it pending; the
		// next write or barrier offers it again, and barriers hold the WAL
		// until it is staged.
		if d.stageErr == nil {
			d.logger.Error("cannot stage a committed transaction; the WAL keeps it until staging works again", "err", err)
		}
		d.stageErr = err
		return
	}
	d.stageErr = nil
	if now := d.tracker.Position(); now.Salt1 != gen.Salt1 || now.Salt2 != gen.Salt2 {
		clear(d.walIndex) // a new generation: the old frames were all checkpointed
	}
	if wal.TouchesHeader(off, len(p)) && d.state == StateReplicating {
		d.checkWALMode("WAL restart")
	}
}

// checkWALMode stops replication when the database header says rollback mode.
func (d *DB) checkWALMode(when string) {
	f, err := os.Open(d.path)
	if err != nil {
		return
	}
	defer f.Close()
	var b [2]byte
	if _, err := f.ReadAt(b[:], 18); err != nil {
		return
	}
	if b[0] == 1 || b[1] == 1 {
		d.stop(fmt.Errorf("database %s left WAL mode (header says rollback journal at %s): set PRAGMA journal_mode=WAL and restart litefs", d.name, when))
	}
}

// fileStamp is what a database file looked like when the WAL was emptied.
type fileStamp struct {
	size  int64
	mtime time.Time
}

// noteAtRest records the database file once the WAL is gone or empty: it
// then holds exactly the tracked state, and nothing through the mount
// writes it until a new WAL begins. Called with d.mu held.
func (d *DB) noteAtRest() {
	if fi, err := os.Stat(d.path); err == nil && d.state == StateReplicating {
		d.atRest = &fileStamp{fi.Size(), fi.ModTime()}
	}
}

// checkAtRest runs before a new WAL's header reaches the file: if the
// database file changed since the WAL was emptied, someone wrote it behind
// the mount, and replicating the new WAL on top would blend two histories.
// A stat is all it costs unless the file changed.
func (d *DB) checkAtRest() {
	d.mu.Lock()
	defer d.mu.Unlock()
	rest := d.atRest
	d.atRest = nil
	if rest == nil || d.state != StateReplicating {
		return
	}
	fi, err := os.Stat(d.path)
	if err != nil || (fi.Size() == rest.size && fi.ModTime().Equal(rest.mtime)) {
		return
	}
	sums, err := sumFile(d.path, d.sums.pageSize)
	if err == nil && sums.Checksum() == d.sums.Checksum() {
		return
	}
	d.stop(fmt.Errorf("database %s in the data dir changed while its WAL was empty (checksum %v, expected %s at TXID %d): it was written behind litefs's back; restart litefs to take a new snapshot of it",
		d.name, checksumOf(sums), d.sums.Checksum(), d.pos.TXID))
}

func checksumOf(s *pageSums) any {
	if s == nil {
		return "unreadable"
	}
	return s.Checksum()
}
