package litefs

import (
	"fmt"
	"syscall"

	"github.com/litefs-dev/litefs/wal"
)

// The fs.DB hooks. A WAL write is answered as soon as it reached the file:
// the tracker's bookkeeping (validating frames, encoding and staging a
// segment) runs on the capture's own goroutine, off the app's commit path. That
// keeps the invariant because a queued write is in the WAL on the volume,
// and every operation that could make WAL frames disappear (a restart's
// header write, a truncate, an unlink) is a barrier: it waits until the
// queue is applied and staging is durable before it goes through. A crash
// with writes still queued loses nothing: start-up stages the WAL's commits
// past the last position.

// errShuttingDown answers WAL changes once shutdown began.
var errShuttingDown = fmt.Errorf("litefs is shutting down: %w", syscall.EIO)

// refuseWrites: see DB.RefuseWrites.
func (c *Capture) refuseWrites() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.closing = true
}

// WriteWAL implements fs.DB. Under durability "replica" the write that
// completes a commit frame is answered only once the replica holds the
// commit (durable.go); the wait runs after wmu is released.
func (c *Capture) WriteWAL(off int64, p []byte, write func() (int, error)) (int, error) {
	n, durable, err := c.writeWAL(off, p, write)
	if err == nil && durable {
		if err := c.waitDurable(); err != nil {
			return 0, err
		}
	}
	return n, err
}

func (c *Capture) writeWAL(off int64, p []byte, write func() (int, error)) (int, bool, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closing {
		return 0, false, errShuttingDown
	}
	if wal.TouchesHeader(off, len(p)) {
		if err := c.barrier(); err != nil {
			return 0, false, err
		}
		c.checkAtRest()
	}
	n, err := write()
	if err != nil || n == 0 {
		return n, false, err
	}
	c.enqueue(off, p[:n])
	durable := c.durability == DurabilityReplica && c.frames.completes(c.path+"-wal", off, p[:n])
	return n, durable, nil
}

// TruncateWAL implements fs.DB.
func (c *Capture) TruncateWAL(size int64, truncate func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.beforeWALShrinks(); err != nil {
		return err
	}
	if err := truncate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tracker.Truncate(size)
	if size < wal.HeaderSize {
		clear(c.walIndex)
		c.noteAtRest()
	}
	return nil
}

// SyncWAL implements fs.DB. Staging is deliberately not synced here: under
// synchronous=FULL SQLite made the commit durable in the WAL already. But
// its records are written to the log file: SQLite syncs the WAL before every
// checkpoint, and once a checkpoint has copied frames into the database
// file, start-up can resume only from a record the log holds (it checks the
// database file plus the WAL up to that record against its checksum).
//
// Under durability "replica" or "replica-on-fsync" the fsync is answered
// only once the replica holds everything before it (durable.go). SQLite
// also syncs the WAL before a checkpoint and after a new WAL header, at any
// synchronous setting: those wait too.
func (c *Capture) SyncWAL(sync func() error) error {
	c.writeStaged()
	if err := sync(); err != nil {
		return err
	}
	if c.durability != DurabilityVolume {
		c.syncWaits.Add(1)
		defer c.syncWaits.Add(-1)
		return c.waitDurable()
	}
	return nil
}

// writeStaged writes the staged records still in memory to the log file
// (not synced). A failure is logged: the records stay pending, and a
// barrier reports it.
func (c *Capture) writeStaged() {
	if err := c.stage.WritePending(); err != nil {
		c.logger.Warn("cannot write staged records to the staging log; will retry", "err", err)
	}
}

// RemoveWAL implements fs.DB.
func (c *Capture) RemoveWAL(remove func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.beforeWALShrinks(); err != nil {
		return err
	}
	if err := remove(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tracker.Unlink()
	clear(c.walIndex)
	if c.state == StateReplicating {
		c.checkWALMode("WAL removed")
	}
	c.noteAtRest()
	return nil
}

// JournalCreated implements fs.DB: a database in WAL mode never makes a
// rollback journal, so one appearing means it is leaving WAL mode.
func (c *Capture) JournalCreated() {
	c.drain()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == StateReplicating {
		c.stop(fmt.Errorf("database %s left WAL mode (a -journal file was created): litefs replicates only WAL-mode databases; set PRAGMA journal_mode=WAL and restart litefs", c.name))
	}
}

// beforeWALShrinks runs, with wmu held, before a truncate or an unlink:
// refused once shutdown began, else a barrier.
func (c *Capture) beforeWALShrinks() error {
	if c.closing {
		return errShuttingDown
	}
	return c.barrier()
}

// barrier applies every queued write, offers again a commit that could not
// be staged, and makes staging and the position durable: only then may WAL
// frames disappear. Called with wmu held, so nothing is queued meanwhile.
func (c *Capture) barrier() error {
	c.drain()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != StateStopped && c.tracker.Pending() {
		if err := c.tracker.Retry(); err != nil {
			return fmt.Errorf("a committed transaction of %s is not staged yet, so the WAL must keep it: %w", c.name, err)
		}
	}
	if err := c.stage.Sync(); err != nil {
		return err
	}
	if c.posDirty {
		if err := c.stage.WritePos(c.pos, true); err != nil {
			return err
		}
		c.posDirty = false
	}
	return nil
}
