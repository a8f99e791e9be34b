package litefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

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
		if err := sleep(ctx, time.Millisecond, nil); err != nil {
			return err
		}
	}
}
