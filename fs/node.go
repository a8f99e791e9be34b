package fs

import (
	"context"
	"path"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/litefs-dev/litefs/staging"
)

// role is what a file is to SQLite, decided by its name.
type role int

const (
	roleOther role = iota
	roleDB
	roleWAL
	roleSHM
	roleJournal
)

// classify names the role of the file at rel (relative to the data dir,
// slash-separated) and the DB it belongs to, nil for roleOther.
func (c *config) classify(rel string) (role, DB) {
	if db, ok := c.dbs[rel]; ok {
		return roleDB, db
	}
	for _, s := range [...]struct {
		suffix string
		role   role
	}{{"-wal", roleWAL}, {"-shm", roleSHM}, {"-journal", roleJournal}} {
		if base, ok := strings.CutSuffix(rel, s.suffix); ok {
			if db, ok := c.dbs[base]; ok {
				return s.role, db
			}
		}
	}
	return roleOther, nil
}

// node is every inode of the mount. It embeds go-fuse's loopback and overrides
// only the operations that the WAL, the journal or the hidden staging
// directory make special.
type node struct {
	*gofs.LoopbackNode
	cfg *config
}

var (
	_ gofs.NodeWrapChilder    = (*node)(nil)
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeCreater        = (*node)(nil)
	_ gofs.NodeMkdirer        = (*node)(nil)
	_ gofs.NodeMknoder        = (*node)(nil)
	_ gofs.NodeSymlinker      = (*node)(nil)
	_ gofs.NodeLinker         = (*node)(nil)
	_ gofs.NodeTmpfiler       = (*node)(nil)
	_ gofs.NodeUnlinker       = (*node)(nil)
	_ gofs.NodeRmdirer        = (*node)(nil)
	_ gofs.NodeRenamer        = (*node)(nil)
	_ gofs.NodeSetattrer      = (*node)(nil)
	_ gofs.NodeGetxattrer     = (*node)(nil)
)

// WrapChild makes every node go-fuse's loopback creates one of ours (the
// non-deprecated way to get a custom node type).
func (n *node) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	ln, ok := ops.(*gofs.LoopbackNode)
	if !ok {
		return ops // not the loopback's: nothing to classify
	}
	return &node{LoopbackNode: ln, cfg: n.cfg}
}

// rel is the node's path relative to the data dir.
func (n *node) rel() string {
	return n.Path(n.Root())
}

// childRel is the data-dir-relative path of name in directory n.
func (n *node) childRel(name string) string {
	if n.IsRoot() {
		return name
	}
	return path.Join(n.rel(), name)
}

// hidden reports whether name in n is the staging directory.
func (n *node) hidden(name string) bool {
	return name == staging.DirName && n.IsRoot()
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.hidden(name) {
		return nil, syscall.ENOENT
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 || !n.IsRoot() {
		return fh, fl, errno
	}
	return &hidingDir{inner: fh}, fl, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	r, db := n.cfg.classify(n.rel())
	// Kernels pass O_TRUNC only with atomic_o_trunc (not negotiated, so they
	// send a SETATTR instead); should one pass it, the WAL's truncate must
	// still go through the DB.
	trunc := r == roleWAL && flags&syscall.O_TRUNC != 0
	if trunc {
		flags &^= syscall.O_TRUNC
	}
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	// The kernel strips O_CREAT from OPEN; kept in case one does not.
	if r == roleJournal && flags&syscall.O_CREAT != 0 {
		db.JournalCreated()
	}
	fh, fl2, errno := n.cfg.wrapFile(ctx, r, db, fh)
	if errno != 0 {
		return nil, 0, errno
	}
	if wf, ok := fh.(*walFile); ok && trunc {
		if errno := wf.truncate(0); errno != 0 {
			wf.Release(ctx)
			return nil, 0, errno
		}
	}
	return fh, fl | fl2, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if n.hidden(name) {
		return nil, nil, 0, syscall.EPERM
	}
	r, db := n.cfg.classify(n.childRel(name))
	ch, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if r == roleJournal {
		db.JournalCreated()
	}
	fh, fl2, errno := n.cfg.wrapFile(ctx, r, db, fh)
	if errno != 0 {
		// The file exists now but the app gets an error: leave it, as a
		// failed open(O_CREAT) on a full disk may.
		return nil, nil, 0, errno
	}
	return ch, fh, fl | fl2, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.hidden(name) {
		return nil, syscall.EPERM
	}
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.hidden(name) {
		return nil, syscall.EPERM
	}
	return n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.hidden(name) {
		return nil, syscall.EPERM
	}
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

// Link onto a WAL name gives the WAL other bytes than the DB saw: like a
// rename onto it.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.hidden(name) {
		return nil, syscall.EPERM
	}
	r, db := n.cfg.classify(n.childRel(name))
	if r != roleWAL {
		return n.LoopbackNode.Link(ctx, target, name, out)
	}
	var ch *gofs.Inode
	errno := n.cfg.hook("RemoveWAL", db.RemoveWAL, func() error {
		var errno syscall.Errno
		ch, errno = n.LoopbackNode.Link(ctx, target, name, out)
		return errnoErr(errno)
	})
	if errno != 0 {
		return nil, errno
	}
	return ch, 0
}

// Tmpfile has no name, so no role; wrapped only to keep passthrough off.
func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	ch, fh, fl, errno := n.LoopbackNode.Tmpfile(ctx, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	fh, fl2, errno := n.cfg.wrapFile(ctx, roleOther, nil, fh)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, fh, fl | fl2, 0
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if n.hidden(name) {
		return syscall.ENOENT
	}
	return n.LoopbackNode.Rmdir(ctx, name)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if n.hidden(name) {
		return syscall.ENOENT
	}
	r, db := n.cfg.classify(n.childRel(name))
	if r != roleWAL {
		return n.LoopbackNode.Unlink(ctx, name)
	}
	return n.cfg.hook("RemoveWAL", db.RemoveWAL, func() error {
		return errnoErr(n.LoopbackNode.Unlink(ctx, name))
	})
}

// Rename onto or away from a WAL makes the WAL under that name another file,
// like an unlink: the DB sees it as RemoveWAL, whether or not the target
// existed. SQLite never does this; keep it simple but never let a WAL change
// behind the DB's back.
func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if n.hidden(name) {
		return syscall.ENOENT
	}
	if np.hidden(newName) {
		return syscall.EPERM
	}
	op := func() error {
		return errnoErr(n.LoopbackNode.Rename(ctx, name, np.LoopbackNode, newName, flags))
	}
	srcRel, dstRel := n.childRel(name), np.childRel(newName)
	srcRole, srcDB := n.cfg.classify(srcRel)
	dstRole, dstDB := n.cfg.classify(dstRel)
	// Nest so the rename happens inside every affected DB's RemoveWAL. DBs
	// are told apart by path: DB values need not be comparable.
	if srcRole == roleWAL {
		op = n.cfg.removeWALAround(srcDB, op)
	}
	if dstRole == roleWAL && dstRel != srcRel {
		op = n.cfg.removeWALAround(dstDB, op)
	}
	errno := toErrno(op())
	if errno == 0 && dstRole == roleJournal {
		dstDB.JournalCreated()
	}
	return errno
}

func (c *config) removeWALAround(db DB, op func() error) func() error {
	return func() error { return errnoErr(c.hook("RemoveWAL", db.RemoveWAL, op)) }
}

// Setattr handles truncate(2) by path, which comes without a file handle; a
// truncate through a WAL handle is the walFile's. Either way the size change
// of a WAL goes through TruncateWAL, and before the other attributes so an
// explicit mtime is not clobbered, as in the loopback.
func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	size, ok := in.GetSize()
	if !ok || f != nil {
		return n.LoopbackNode.Setattr(ctx, f, in, out)
	}
	r, db := n.cfg.classify(n.rel())
	if r != roleWAL {
		return n.LoopbackNode.Setattr(ctx, f, in, out)
	}
	p := path.Join(n.RootData.Path, n.rel())
	truncateWAL := func(op func() error) error { return db.TruncateWAL(int64(size), op) }
	if errno := n.cfg.hook("TruncateWAL", truncateWAL, func() error {
		return ignoreEINTR(func() error { return syscall.Truncate(p, int64(size)) })
	}); errno != 0 {
		return errno
	}
	rest := *in
	rest.Valid &^= fuse.FATTR_SIZE
	return n.LoopbackNode.Setattr(ctx, f, &rest, out)
}

// Getxattr answers ENOSYS: the kernel then stops asking for
// security.capability before every write (4 round trips per commit).
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}
