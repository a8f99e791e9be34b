package errorfs

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/litefs-dev/litefs/internal/vfs"
)

// OpKind is the kind of a filesystem operation.
type OpKind int

const (
	OpOpen OpKind = iota
	OpRead
	OpWrite
	OpSync
	OpTruncate
	OpRename
	OpRemove
	OpStat
	OpReadDir
	OpMkdirAll
	OpSyncDir
)

var kindNames = [...]string{"open", "read", "write", "sync", "truncate", "rename", "remove", "stat", "readdir", "mkdirall", "syncdir"}

func (k OpKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("op(%d)", int(k))
}

// Op is one operation: its kind and the path it acts on (the old path of a
// rename).
type Op struct {
	Kind OpKind
	Path string
}

// Injector decides whether an operation fails, and with what.
type Injector interface {
	MaybeError(op Op) error
}

// InjectorFunc adapts a function to an Injector.
type InjectorFunc func(op Op) error

func (f InjectorFunc) MaybeError(op Op) error { return f(op) }

// Rule fails, with Err, the operations of one kind on paths ending in
// Suffix, after letting the first Skip of them through; Times > 0 limits
// how many fail (0: all of them). It is safe for concurrent use.
type Rule struct {
	Kind   OpKind
	Suffix string
	Err    error
	Skip   int
	Times  int

	mu           sync.Mutex
	seen, failed int
}

// MaybeError implements Injector.
func (r *Rule) MaybeError(op Op) error {
	if op.Kind != r.Kind || !strings.HasSuffix(op.Path, r.Suffix) {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen++
	if r.seen <= r.Skip || (r.Times > 0 && r.failed >= r.Times) {
		return nil
	}
	r.failed++
	return r.Err
}

// Failed is how many operations the rule failed.
func (r *Rule) Failed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// ENOSPC is the error a full disk gives.
var ENOSPC error = syscall.ENOSPC

// Wrap returns fs with inj consulted before every operation.
func Wrap(fs vfs.FS, inj Injector) vfs.FS { return &errFS{fs: fs, inj: inj} }

type errFS struct {
	fs  vfs.FS
	inj Injector
}

func (e *errFS) check(kind OpKind, path string) error {
	if err := e.inj.MaybeError(Op{kind, path}); err != nil {
		return &os.PathError{Op: "injected " + kind.String(), Path: path, Err: err}
	}
	return nil
}

func (e *errFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	if err := e.check(OpOpen, name); err != nil {
		return nil, err
	}
	f, err := e.fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &errFile{File: f, fs: e, path: name}, nil
}

func (e *errFS) Rename(oldpath, newpath string) error {
	if err := e.check(OpRename, oldpath); err != nil {
		return err
	}
	return e.fs.Rename(oldpath, newpath)
}

func (e *errFS) Remove(name string) error {
	if err := e.check(OpRemove, name); err != nil {
		return err
	}
	return e.fs.Remove(name)
}

func (e *errFS) Stat(name string) (os.FileInfo, error) {
	if err := e.check(OpStat, name); err != nil {
		return nil, err
	}
	return e.fs.Stat(name)
}

func (e *errFS) ReadDir(name string) ([]os.DirEntry, error) {
	if err := e.check(OpReadDir, name); err != nil {
		return nil, err
	}
	return e.fs.ReadDir(name)
}

func (e *errFS) MkdirAll(path string, perm os.FileMode) error {
	if err := e.check(OpMkdirAll, path); err != nil {
		return err
	}
	return e.fs.MkdirAll(path, perm)
}

func (e *errFS) SyncDir(dir string) error {
	if err := e.check(OpSyncDir, dir); err != nil {
		return err
	}
	return e.fs.SyncDir(dir)
}

type errFile struct {
	vfs.File
	fs   *errFS
	path string
}

func (f *errFile) Read(p []byte) (int, error) {
	if err := f.fs.check(OpRead, f.path); err != nil {
		return 0, err
	}
	return f.File.Read(p)
}

func (f *errFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.check(OpRead, f.path); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

// Write fails as a filling disk does: half the bytes land first.
func (f *errFile) Write(p []byte) (int, error) {
	if err := f.fs.check(OpWrite, f.path); err != nil {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, err
	}
	return f.File.Write(p)
}

func (f *errFile) Sync() error {
	if err := f.fs.check(OpSync, f.path); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *errFile) Truncate(size int64) error {
	if err := f.fs.check(OpTruncate, f.path); err != nil {
		return err
	}
	return f.File.Truncate(size)
}
