package fs

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/litefs-dev/litefs/staging"
)

// fuseFsyncFdatasync is FUSE_FSYNC_FDATASYNC: the app called fdatasync.
const fuseFsyncFdatasync = 1

// errCalledTwice answers a DB that calls an operation's func a second time: the
// operation already happened, and doing it again could reorder it after the
// DB's bookkeeping.
var errCalledTwice = errors.New("fs: operation func called more than once")

// wrapFile turns the loopback's handle into the one a file of role r gets.
//
// go-fuse registers a passthrough fd for every handle that has a
// PassthroughFd method, and once a node has one it hands it to every later
// handle of that node that has the method, whatever it returns. So a handle
// that must never be passthrough must not have the method at all: plainFile
// and walFile embed interfaces that leave it out.
func (c *config) wrapFile(ctx context.Context, r role, db DB, fh gofs.FileHandle) (gofs.FileHandle, uint32, syscall.Errno) {
	lf, ok := fh.(*gofs.LoopbackFile)
	if !ok {
		// Only a go-fuse upgrade gets here. Serving a WAL we cannot hook
		// would lose commits, so refuse the open instead.
		if rel, ok := fh.(gofs.FileReleaser); ok {
			rel.Release(ctx)
		}
		c.logger.Error("go-fuse loopback returned an unexpected file handle type", "type", fmt.Sprintf("%T", fh))
		return nil, 0, syscall.EIO
	}
	// The -shm needs no FLUSH on close (SQLite only maps it and locks it,
	// and POSIX locks are dropped by the kernel either way). Skipping it
	// matters for the daemon itself: it locks a -shm through its own mount
	// to pin the WAL, and a killed daemon closing that file would otherwise
	// wait forever for its own answer.
	var noflush uint32
	if r == roleSHM {
		noflush = fuse.FOPEN_NOFLUSH
	}
	switch {
	case r == roleWAL:
		// PassthroughFd only reports the descriptor; it registers nothing.
		fd, ok := lf.PassthroughFd()
		if !ok {
			lf.Release(ctx)
			return nil, 0, syscall.EBADF
		}
		// direct_io: one WRITE per SQLite pwrite, unsplit by the page cache,
		// and no cached WAL pages that the DB has not seen written.
		return &walFile{walReadOps: lf, lf: lf, fd: fd, db: db, cfg: c}, fuse.FOPEN_DIRECT_IO, 0
	case c.passthrough:
		return lf, noflush, 0
	default:
		return &plainFile{loopbackOps: lf}, noflush, 0
	}
}

// loopbackOps is every operation of go-fuse's LoopbackFile but PassthroughFd.
type loopbackOps interface {
	gofs.FileReleaser
	gofs.FileGetattrer
	gofs.FileStatxer
	gofs.FileReader
	gofs.FileWriter
	gofs.FileWritever
	gofs.FileGetlker
	gofs.FileSetlker
	gofs.FileSetlkwer
	gofs.FileLseeker
	gofs.FileFlusher
	gofs.FileFsyncer
	gofs.FileSetattrer
	gofs.FileAllocater
	gofs.FileIoctler
}

// plainFile is a loopback handle the kernel cannot turn into passthrough.
type plainFile struct {
	loopbackOps
}

// walReadOps is the part of LoopbackFile a WAL handle may use as is: nothing
// that changes the file's bytes or size. Writev, Allocate, Ioctl and the
// loopback's Setattr stay out, so the bridge cannot reach them.
type walReadOps interface {
	gofs.FileReleaser
	gofs.FileGetattrer
	gofs.FileStatxer
	gofs.FileReader
	gofs.FileLseeker
	gofs.FileFlusher
}

// walFile is an open handle of a configured database's WAL. Every change to
// the file goes through the DB.
type walFile struct {
	walReadOps
	lf  *gofs.LoopbackFile
	fd  int // lf's descriptor, valid until Release
	db  DB
	cfg *config
}

var (
	_ gofs.FileWriter    = (*walFile)(nil)
	_ gofs.FileFsyncer   = (*walFile)(nil)
	_ gofs.FileSetattrer = (*walFile)(nil)
)

func (f *walFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	called := false
	n, err := f.db.WriteWAL(off, data, func() (int, error) {
		if called {
			return 0, errCalledTwice
		}
		called = true
		return pwriteFull(f.fd, data, off)
	})
	if err != nil {
		return 0, toErrno(err)
	}
	if !called {
		f.cfg.logger.Error("DB.WriteWAL returned success without writing", "off", off, "len", len(data))
		return 0, syscall.EIO
	}
	if n < 0 || n > len(data) {
		f.cfg.logger.Error("DB.WriteWAL returned an impossible count", "off", off, "len", len(data), "n", n)
		return 0, syscall.EIO
	}
	return uint32(n), 0
}

// pwriteFull writes all of p at off: a short count from a regular file means
// the next call reports why (ENOSPC, EFBIG), which is what the app should see.
func pwriteFull(fd int, p []byte, off int64) (int, error) {
	total := 0
	for total < len(p) {
		n, err := syscall.Pwrite(fd, p[total:], off+int64(total))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, syscall.EIO
		}
		total += n
	}
	return total, nil
}

// Fsync is the app's fsync or fdatasync; Flush (close) needs no hook and stays
// the loopback's.
func (f *walFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return f.cfg.hook("SyncWAL", f.db.SyncWAL, func() error {
		if flags&fuseFsyncFdatasync != 0 {
			return ignoreEINTR(func() error { return syscall.Fdatasync(f.fd) })
		}
		return ignoreEINTR(func() error { return syscall.Fsync(f.fd) })
	})
}

func (f *walFile) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	size, ok := in.GetSize()
	if !ok {
		return f.lf.Setattr(ctx, in, out)
	}
	if errno := f.truncate(int64(size)); errno != 0 {
		return errno
	}
	rest := *in
	rest.Valid &^= fuse.FATTR_SIZE
	return f.lf.Setattr(ctx, &rest, out)
}

func (f *walFile) truncate(size int64) syscall.Errno {
	truncateWAL := func(op func() error) error { return f.db.TruncateWAL(size, op) }
	return f.cfg.hook("TruncateWAL", truncateWAL, func() error {
		return ignoreEINTR(func() error { return syscall.Ftruncate(f.fd, size) })
	})
}

// hook runs op through a DB method (call), holding the DB to its contract: op
// runs at most once, and a DB that reports success without running it gets
// EIO rather than the app believing in an operation that never happened.
func (c *config) hook(method string, call func(op func() error) error, op func() error) syscall.Errno {
	called := false
	err := call(func() error {
		if called {
			return errCalledTwice
		}
		called = true
		return op()
	})
	if err == nil && !called {
		c.logger.Error("DB returned success without doing the operation", "method", method)
		return syscall.EIO
	}
	return toErrno(err)
}

func ignoreEINTR(op func() error) error {
	for {
		if err := op(); err != syscall.EINTR {
			return err
		}
	}
}

// hidingDir is a listing of the data dir's root without the staging dir.
type hidingDir struct {
	inner gofs.FileHandle
}

var (
	_ gofs.FileReaddirenter = (*hidingDir)(nil)
	_ gofs.FileSeekdirer    = (*hidingDir)(nil)
	_ gofs.FileReleasedirer = (*hidingDir)(nil)
	_ gofs.FileFsyncdirer   = (*hidingDir)(nil)
)

func (d *hidingDir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	r, ok := d.inner.(gofs.FileReaddirenter)
	if !ok {
		return nil, 0
	}
	for {
		de, errno := r.Readdirent(ctx)
		if errno != 0 || de == nil || de.Name != staging.DirName {
			return de, errno
		}
	}
}

// Seekdir offsets are the underlying directory's, skipped entry included, so
// seeking needs no translation.
func (d *hidingDir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.inner.(gofs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

func (d *hidingDir) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.inner.(gofs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

func (d *hidingDir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if s, ok := d.inner.(gofs.FileFsyncdirer); ok {
		return s.Fsyncdir(ctx, flags)
	}
	return syscall.ENOTSUP
}
