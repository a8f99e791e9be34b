package fs

import (
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Op names a FUSE operation that Options.ObserveOp is told the duration of.
type Op int

// The timed operations: what SQLite and an app do to a database's files.
// Others (xattrs, links, ...) are not timed.
const (
	OpLookup Op = iota
	OpGetAttr
	OpSetAttr
	OpOpen
	OpCreate
	OpRead
	OpWrite
	OpFlush
	OpFsync
	OpRelease
	OpUnlink
	OpRename
	OpFallocate
	OpLseek
	OpReadDir
	numOps
)

var opNames = [numOps]string{"lookup", "getattr", "setattr", "open", "create", "read", "write", "flush",
	"fsync", "release", "unlink", "rename", "fallocate", "lseek", "readdir"}

func (o Op) String() string {
	if o < 0 || o >= numOps {
		return "unknown"
	}
	return opNames[o]
}

// Ops lists every timed operation, for a caller that prepares one series
// per operation.
func Ops() []Op {
	ops := make([]Op, numOps)
	for i := range ops {
		ops[i] = Op(i)
	}
	return ops
}

// timedFS times the operations it overrides around the file system it
// embeds: two clock reads and one call per request, nothing allocated.
type timedFS struct {
	fuse.RawFileSystem
	observe func(Op, time.Duration)
}

func (t *timedFS) done(op Op, start time.Time) { t.observe(op, time.Since(start)) }

func (t *timedFS) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	defer t.done(OpLookup, time.Now())
	return t.RawFileSystem.Lookup(c, h, name, out)
}

func (t *timedFS) GetAttr(c <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer t.done(OpGetAttr, time.Now())
	return t.RawFileSystem.GetAttr(c, in, out)
}

func (t *timedFS) SetAttr(c <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer t.done(OpSetAttr, time.Now())
	return t.RawFileSystem.SetAttr(c, in, out)
}

func (t *timedFS) Open(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer t.done(OpOpen, time.Now())
	return t.RawFileSystem.Open(c, in, out)
}

func (t *timedFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer t.done(OpCreate, time.Now())
	return t.RawFileSystem.Create(c, in, name, out)
}

func (t *timedFS) Read(c <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	defer t.done(OpRead, time.Now())
	return t.RawFileSystem.Read(c, in, buf)
}

func (t *timedFS) Write(c <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	defer t.done(OpWrite, time.Now())
	return t.RawFileSystem.Write(c, in, data)
}

func (t *timedFS) Writev(c <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	defer t.done(OpWrite, time.Now())
	return t.RawFileSystem.Writev(c, in, data)
}

func (t *timedFS) Flush(c <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	defer t.done(OpFlush, time.Now())
	return t.RawFileSystem.Flush(c, in)
}

func (t *timedFS) Fsync(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer t.done(OpFsync, time.Now())
	return t.RawFileSystem.Fsync(c, in)
}

func (t *timedFS) Release(c <-chan struct{}, in *fuse.ReleaseIn) {
	defer t.done(OpRelease, time.Now())
	t.RawFileSystem.Release(c, in)
}

func (t *timedFS) Unlink(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer t.done(OpUnlink, time.Now())
	return t.RawFileSystem.Unlink(c, h, name)
}

func (t *timedFS) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	defer t.done(OpRename, time.Now())
	return t.RawFileSystem.Rename(c, in, oldName, newName)
}

func (t *timedFS) Fallocate(c <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	defer t.done(OpFallocate, time.Now())
	return t.RawFileSystem.Fallocate(c, in)
}

func (t *timedFS) Lseek(c <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	defer t.done(OpLseek, time.Now())
	return t.RawFileSystem.Lseek(c, in, out)
}

func (t *timedFS) ReadDirPlus(c <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer t.done(OpReadDir, time.Now())
	return t.RawFileSystem.ReadDirPlus(c, in, out)
}

func (t *timedFS) ReadDir(c <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer t.done(OpReadDir, time.Now())
	return t.RawFileSystem.ReadDir(c, in, out)
}
