package litefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"time"

	"github.com/superfly/ltx"
	"golang.org/x/sys/unix"

	"github.com/litefs-dev/litefs/wal"
)

// pageSource yields page pgno, reading into buf or returning other bytes.
type pageSource func(pgno uint32, buf []byte) ([]byte, error)

// snapshot stages a level-9 snapshot 1-<txid> of pages 1..commit. It streams
// page by page: memory stays bounded however large the database. It returns
// the per-page checksums of the state it captured.
func (d *DB) snapshot(txid ltx.TXID, pageSize, commit uint32, page pageSource) (*pageSums, error) {
	sums := newPageSums(pageSize)
	ts := d.now()
	err := d.stage.WriteFrozen(9, 1, txid, func(w io.Writer) error {
		enc, err := ltx.NewEncoder(w)
		if err != nil {
			return err
		}
		if err := enc.EncodeHeader(ltx.Header{
			Version: ltx.Version, PageSize: pageSize, Commit: commit,
			MinTXID: 1, MaxTXID: txid, Timestamp: ts.UnixMilli(),
		}); err != nil {
			return err
		}
		buf := make([]byte, pageSize)
		lock := ltx.LockPgno(pageSize)
		for pgno := uint32(1); pgno <= commit; pgno++ {
			if pgno == lock {
				continue
			}
			data, err := page(pgno, buf)
			if err != nil {
				return err
			}
			sums.set(pgno, sums.pageSum(pgno, data))
			if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, data); err != nil {
				return fmt.Errorf("encode page %d: %w", pgno, err)
			}
		}
		sums.truncate(commit)
		enc.SetPostApplyChecksum(sums.Checksum())
		return enc.Close()
	})
	if err != nil {
		return nil, err
	}
	return sums, nil
}

func openIfExists(path string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return f, err
}

// readPage reads a page, zero past the end of the file (a database grown in
// the WAL but not yet checkpointed).
func readPage(f *os.File, pgno uint32, buf []byte) error {
	clear(buf)
	if f == nil {
		return nil
	}
	// A short read leaves the zeroed remainder: the page past the file's end.
	if _, err := f.ReadAt(buf, int64(pgno-1)*int64(len(buf))); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read page %d: %w", pgno, err)
	}
	return nil
}

// snapshotInfo is the newest snapshot the replica holds.
type snapshotInfo struct {
	TXID ltx.TXID
	Time time.Time
}

// takeSnapshot stages a snapshot of the current state while the app goes
// on. With rebase, staging restarts from it under a new TXID (the replica
// moved on without us, or staging overflowed): what was staged is dropped —
// lost history, never lost data, since the snapshot holds the state.
//
// Consistency while mounted: a read transaction through the mount pins the
// WAL (SQLite cannot restart it, nor checkpoint past the reader), so the
// frames of every page committed in this WAL generation stay where
// walIndex says; every other page is stable in the database file.
func (d *DB) takeSnapshot(ctx context.Context, rebase bool) (ltx.TXID, error) {
	if mp := d.mountPath.Load(); mp != nil {
		unpin, err := pinWAL(ctx, *mp)
		if err != nil {
			return 0, fmt.Errorf("snapshot %s: %w", d.name, err)
		}
		defer unpin()
	}
	d.mu.Lock()
	if d.state != StateReplicating {
		d.mu.Unlock()
		return 0, fmt.Errorf("snapshot %s: database is %s", d.name, d.state)
	}
	// The log must hold the records up to the snapshot's TXID: start-up
	// resumes from the newest record or snapshot, and only a record says
	// where in the WAL.
	if err := d.stage.WritePending(); err != nil {
		d.mu.Unlock()
		return 0, fmt.Errorf("snapshot %s: %w", d.name, err)
	}
	pos, index := d.pos, maps.Clone(d.walIndex)
	pageSize, commit := d.sums.pageSize, uint32(len(d.sums.sums))
	txid := pos.TXID
	if !rebase && txid <= d.snap.TXID {
		d.mu.Unlock()
		return txid, nil // the newest snapshot is this state already
	}
	if rebase {
		txid = d.nextSnapshotTXID()
		if err := d.stage.Discard(); err != nil {
			d.mu.Unlock()
			return 0, err
		}
		d.pos.TXID = txid
		d.posDirty = true
		d.needRebase.Store(true) // until the snapshot is staged
		d.Metrics.unsent.reset(txid, d.now())
	}
	d.mu.Unlock()

	sums, err := d.snapshotFromDisk(txid, pageSize, commit, index)
	if err != nil {
		return 0, fmt.Errorf("snapshot %s at TXID %d: %w", d.name, txid, err)
	}
	if sums.Checksum() != pos.Checksum {
		_ = d.stage.RemoveFrozen(9, 1, txid)
		if !rebase && d.snapMismatch.Add(1) == 1 {
			// Once may be a checkpoint that began before the pin: retry.
			return 0, fmt.Errorf("snapshot %s at TXID %d did not match its checksum; will retry", d.name, txid)
		}
		d.mu.Lock()
		d.stop(fmt.Errorf("database %s in the data dir is not the state litefs replicated (checksum %s, expected %s at TXID %d): it was written behind litefs's back; restart litefs to take a new snapshot of it",
			d.name, sums.Checksum(), pos.Checksum, pos.TXID))
		d.mu.Unlock()
		return 0, d.err
	}
	d.snapMismatch.Store(0)
	d.mu.Lock()
	d.noteSnapshot(txid)
	d.mu.Unlock()
	if rebase {
		d.needRebase.Store(false)
		d.logger.Info("new snapshot: staging restarts from it", "txid", txid)
	}
	return txid, nil
}

// Snapshot stages a snapshot of the current state now (as snapshot-interval
// would) and returns its TXID; the uploader sends it with the next batch.
func (d *DB) Snapshot(ctx context.Context) (ltx.TXID, error) {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	d.drain()
	return d.takeSnapshot(ctx, false)
}

// snapshotFromDisk reads each page from the WAL frame the index names, else
// from the database file.
func (d *DB) snapshotFromDisk(txid ltx.TXID, pageSize, commit uint32, index map[uint32]int64) (*pageSums, error) {
	db, err := openIfExists(d.path)
	if err != nil {
		return nil, err
	}
	if db != nil {
		defer db.Close()
	}
	var walf *os.File
	if len(index) > 0 {
		if walf, err = os.Open(d.path + "-wal"); err != nil {
			return nil, fmt.Errorf("open WAL: %w", err)
		}
		defer walf.Close()
	}
	return d.snapshot(txid, pageSize, commit, func(pgno uint32, buf []byte) ([]byte, error) {
		if off, ok := index[pgno]; ok {
			if _, err := walf.ReadAt(buf, off+wal.FrameHeaderSize); err != nil {
				return nil, fmt.Errorf("read page %d from the WAL: %w", pgno, err)
			}
			return buf, nil
		}
		return buf, readPage(db, pgno, buf)
	})
}

// SQLite's WAL locks are fcntl locks on bytes of the -shm file from offset
// 120: index 1 is the checkpointer lock, 3+i the lock of reader slot i.
const (
	shmCkptLock  = 120 + 1
	shmReadLock1 = 120 + 3 + 1
)

// pinWAL keeps SQLite from moving the WAL's frames or the database file's
// pages while a snapshot reads them, without opening SQLite here: a process
// must never map the -shm of the FUSE mount it serves (a page fault would
// wait on itself). A shared lock on the checkpointer lock makes every
// checkpoint busy (nothing is backfilled into the database file, the WAL is
// never truncated or deleted on close); one on reader slot 1 keeps a writer
// from restarting the WAL. They are open-file-description locks, taken
// through the mount so they meet the app's locks in the kernel, and they
// conflict with the app's even inside this process.
func pinWAL(ctx context.Context, dbPath string) (func(), error) {
	f, err := os.OpenFile(dbPath+"-shm", os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		// No connection: nothing can checkpoint until one appears, and the
		// snapshot's checksum check catches the rare one that does.
		return func() {}, nil
	} else if err != nil {
		return nil, fmt.Errorf("pin WAL: %w", err)
	}
	for _, off := range []int64{shmCkptLock, shmReadLock1} {
		if err := ofdLock(ctx, f, off, unix.F_RDLCK); err != nil {
			f.Close()
			return nil, fmt.Errorf("pin WAL: %w", err)
		}
	}
	return func() { f.Close() }, nil // closing the description drops its locks
}

// ofdLock takes a one-byte open-file-description lock, retrying while a
// checkpoint or restart holds it exclusively.
func ofdLock(ctx context.Context, f *os.File, off int64, typ int16) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: off, Len: 1}
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			return fmt.Errorf("lock byte %d of %s: %w", off, f.Name(), err)
		}
		if err := sleep(ctx, time.Millisecond); err != nil {
			return err
		}
	}
}
