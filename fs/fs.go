package fs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/litefs-dev/litefs/staging"
)

// DB receives the operations on one configured database's files. Each method is
// handed the operation itself as a func; it must call it exactly once (it orders
// barriers before and bookkeeping after). Errors returned become the FUSE errno
// (a syscall.Errno found with errors.As, else EIO).
//
// WriteWAL's p is only valid during the call: the buffer belongs to go-fuse
// and is reused for the next request. A method may return an error without
// calling the func (a failed barrier): the operation then does not happen.
type DB interface {
	WriteWAL(off int64, p []byte, write func() (int, error)) (int, error)
	TruncateWAL(size int64, truncate func() error) error
	SyncWAL(sync func() error) error
	RemoveWAL(remove func() error) error
	// JournalCreated: a -journal file of this db was created (it may be leaving WAL mode).
	JournalCreated()
}

// Options configures Mount.
type Options struct {
	DataDir     string        // the real directory (the volume)
	MountDir    string        // where the app looks
	DBs         map[string]DB // key: db path relative to DataDir, slash-separated, e.g. "db" or "sub/app.db"
	AllowOther  bool
	Passthrough bool         // try FUSE passthrough for db and -shm files (falls back silently if the kernel refuses); WAL is never passthrough
	Debug       bool         // go-fuse's trace of every request, logged at slog.LevelDebug
	Logger      *slog.Logger // nil: slog.Default()
	// ObserveOp, when set, is told how long each timed FUSE operation
	// took (opstats.go). It runs on the request's goroutine: keep it cheap.
	ObserveOp func(Op, time.Duration)
}

// Server is a mounted litefs FUSE file system.
type Server struct {
	srv      *fuse.Server
	mountDir string
	logger   *slog.Logger

	mu        sync.Mutex
	unmounted bool
	lazy      bool // detached while busy: the connection outlives Unmount
}

// config is what every node needs to classify its files; shared, read-only.
type config struct {
	dbs         map[string]DB
	passthrough bool
	logger      *slog.Logger
}

// Mount checks MountDir (detaching a dead FUSE mount left by a killed daemon,
// refusing a live one) and mounts a loopback of DataDir on it.
func Mount(opt Options) (*Server, error) {
	logger := opt.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if opt.DataDir == "" || opt.MountDir == "" {
		return nil, errors.New("fs: DataDir and MountDir are required")
	}
	dataDir, err := filepath.Abs(opt.DataDir)
	if err != nil {
		return nil, fmt.Errorf("fs: data dir %q: %w", opt.DataDir, err)
	}
	mountDir, err := filepath.Abs(opt.MountDir)
	if err != nil {
		return nil, fmt.Errorf("fs: mount dir %q: %w", opt.MountDir, err)
	}
	// Nested dirs would route the loopback's own I/O back through the mount.
	if dataDir == mountDir || isUnder(mountDir, dataDir) || isUnder(dataDir, mountDir) {
		return nil, fmt.Errorf("fs: data dir %s and mount dir %s must not contain each other", dataDir, mountDir)
	}
	dbs, err := cleanDBs(opt.DBs)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(dataDir); err != nil {
		return nil, fmt.Errorf("fs: data dir: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("fs: data dir %s is not a directory", dataDir)
	}
	if err := prepareMountDir(mountDir, logger); err != nil {
		return nil, err
	}
	if err := checkMountDirEmpty(mountDir, dataDir); err != nil {
		return nil, err
	}

	lroot, err := gofs.NewLoopbackRoot(dataDir)
	if err != nil {
		return nil, fmt.Errorf("fs: loopback root %s: %w", dataDir, err)
	}
	lnode, ok := lroot.(*gofs.LoopbackNode)
	if !ok {
		return nil, fmt.Errorf("fs: go-fuse returned a %T as loopback root", lroot)
	}
	cfg := &config{dbs: dbs, passthrough: opt.Passthrough, logger: logger}
	root := &node{LoopbackNode: lnode, cfg: cfg}

	// Non-nil durations, explicitly zero (a nil Options would mean 1 s): the
	// kernel must not cache sizes or names of files that can change behind
	// the mount. No NegativeTimeout: a failed lookup stays a plain ENOENT.
	var zero time.Duration
	mo := fuse.MountOptions{
		DirectMount: true,
		AllowOther:  opt.AllowOther,
		FsName:      "litefs",
		Name:        "litefs",
		Debug:       opt.Debug,
		Logger:      slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		// EnableLocks stays off: see doc.go.
	}
	if !opt.Passthrough {
		// Not negotiating it at all keeps the mount stackable and makes the
		// "no passthrough" mode independent of which handles expose an fd.
		mo.DisabledCapabilities = fuse.CAP_PASSTHROUGH
	}
	fopts := &gofs.Options{
		MountOptions: mo,
		EntryTimeout: &zero,
		AttrTimeout:  &zero,
		// Without it go-fuse reports a file whose permission bits are all
		// zero (chmod 0000) as 0644: the mount must show the data dir's mode.
		NullPermissions: true,
		Logger:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv, err := mount(mountDir, root, fopts, opt.ObserveOp)
	if err != nil {
		return nil, fmt.Errorf("fs: mount %s on %s: %w", dataDir, mountDir, err)
	}
	if err := closeFUSEOnExec(); err != nil {
		logger.Warn("could not mark the FUSE descriptor close-on-exec: a child process may inherit it", "err", err)
	}
	ks := srv.KernelSettings()
	logger.Info("mounted",
		"data_dir", dataDir, "mount_dir", mountDir, "dbs", len(dbs),
		"passthrough", opt.Passthrough,
		"kernel_passthrough", ks.Flags64()&fuse.CAP_PASSTHROUGH != 0,
		"fuse_minor", ks.Minor)
	return &Server{srv: srv, mountDir: mountDir, logger: logger}, nil
}

// isUnder reports whether p is strictly inside dir (both absolute, clean).
func isUnder(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

// cleanDBs validates the configured database paths and keys them in the form
// classify computes from the tree: slash-separated, relative, cleaned.
func cleanDBs(in map[string]DB) (map[string]DB, error) {
	out := make(map[string]DB, len(in))
	for p, db := range in {
		if db == nil {
			return nil, fmt.Errorf("fs: db %q: nil DB", p)
		}
		c := path.Clean(filepath.ToSlash(p))
		switch {
		case p == "" || c == "." || path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../"):
			return nil, fmt.Errorf("fs: db path %q must be relative to the data dir and inside it", p)
		case c == staging.DirName || strings.HasPrefix(c, staging.DirName+"/"):
			return nil, fmt.Errorf("fs: db path %q is inside the hidden %s directory", p, staging.DirName)
		}
		if _, dup := out[c]; dup {
			return nil, fmt.Errorf("fs: db path %q configured twice", p)
		}
		out[c] = db
	}
	return out, nil
}

// fuseSuperMagic is FUSE_SUPER_MAGIC from linux/magic.h.
const fuseSuperMagic = 0x65735546

// prepareMountDir makes dir ready to be mounted on: it exists, and is not a
// FUSE mount. A dead one (its daemon was killed: stat fails with ENOTCONN) is
// lazily detached; a live one is someone else's and an error.
func prepareMountDir(dir string, logger *slog.Logger) error {
	// Mounts can stack (a daemon killed twice): peel every dead one.
	for i := 0; ; i++ {
		var st syscall.Stat_t
		err := syscall.Stat(dir, &st)
		if errors.Is(err, syscall.ENOTCONN) && i < 16 {
			if uerr := syscall.Unmount(dir, syscall.MNT_DETACH); uerr != nil {
				return fmt.Errorf("fs: %s is a dead FUSE mount and detaching it failed: %w", dir, uerr)
			}
			logger.Warn("detached a dead FUSE mount (a previous daemon died without unmounting)", "dir", dir)
			continue
		}
		if errors.Is(err, syscall.ENOENT) {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("fs: create mount dir: %w", err)
			}
			logger.Info("created mount dir", "dir", dir)
			return nil
		}
		if err != nil {
			return fmt.Errorf("fs: mount dir %s: %w", dir, err)
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return fmt.Errorf("fs: mount dir %s is not a directory", dir)
		}
		break
	}
	live, err := isFUSEMountPoint(dir)
	if err != nil {
		return err
	}
	if live {
		return fmt.Errorf("%s is already a live mount: is another litefs running? unmount it first", dir)
	}
	return nil
}

// mount is gofs.Mount with the raw file system wrapped in timedFS when
// observe is set.
func mount(dir string, root gofs.InodeEmbedder, opts *gofs.Options, observe func(Op, time.Duration)) (*fuse.Server, error) {
	raw := gofs.NewNodeFS(root, opts)
	if observe != nil {
		raw = &timedFS{RawFileSystem: raw, observe: observe}
	}
	srv, err := fuse.NewServer(raw, dir, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		return nil, err // as gofs.Mount: the serve loop ends with the failed mount
	}
	return srv, nil
}

// CheckMountDir is what Mount checks of the mount dir before mounting (a
// dead FUSE mount is detached, a live one refused, one holding files
// refused), for a caller that wants the answer before its own start-up
// work: a database hidden under the mount dir must be named before
// anything says "run restore first".
func CheckMountDir(mountDir, dataDir string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	if err := prepareMountDir(mountDir, logger); err != nil {
		return err
	}
	return checkMountDirEmpty(mountDir, dataDir)
}

// checkMountDirEmpty refuses a mount dir that holds files: the mount would
// hide them, and an app whose database is among them would see an empty
// directory and start a new history (a user coming from Litestream has the
// database right there). lost+found, the one entry a fresh filesystem's root
// holds, is not the app's.
func checkMountDirEmpty(mountDir, dataDir string) error {
	entries, err := os.ReadDir(mountDir)
	if err != nil {
		return fmt.Errorf("fs: read mount dir %s: %w", mountDir, err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != "lost+found" {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil
	}
	const show = 5
	list := strings.Join(names[:min(len(names), show)], ", ")
	if len(names) > show {
		list += fmt.Sprintf(" and %d more", len(names)-show)
	}
	return fmt.Errorf("fuse.dir %s holds files (%s): the mount would hide them, and the app would see an empty "+
		"directory. If they are the app's database and its files, stop the app and move them onto the volume first: "+
		"mv %s/* %s/ (then start litefs again); otherwise empty fuse.dir or pick another", mountDir, list, mountDir, dataDir)
}

// isFUSEMountPoint reports whether dir is the root of a FUSE mount. Any mount
// point is not enough: in Kubernetes the mount dir is itself a bind mount of an
// emptyDir, which is fine to mount over.
func isFUSEMountPoint(dir string) (bool, error) {
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err != nil {
		return false, fmt.Errorf("fs: statfs mount dir %s: %w", dir, err)
	}
	if uint32(sfs.Type) != fuseSuperMagic {
		return false, nil
	}
	var st, pst syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return false, fmt.Errorf("fs: stat mount dir %s: %w", dir, err)
	}
	if err := syscall.Stat(filepath.Dir(dir), &pst); err != nil {
		return false, fmt.Errorf("fs: stat parent of mount dir %s: %w", dir, err)
	}
	// A directory inside a FUSE file system shares its parent's device.
	return st.Dev != pst.Dev || dir == "/", nil
}

// Unmount unmounts the file system. While the app still holds files open the
// kernel answers EBUSY; after a few retries the mount is detached lazily (the
// app keeps working on its open files, served until it closes them).
func (s *Server) Unmount() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unmounted {
		return nil
	}
	delay := 5 * time.Millisecond
	var err error
	for try := 0; try < 6; try++ {
		if err = syscall.Unmount(s.mountDir, 0); err == nil || !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(delay)
		delay *= 2
	}
	if err == nil {
		s.unmounted = true
		// The kernel ends the connection on unmount; wait for go-fuse's
		// readers to see it so no request is served after we return.
		s.srv.Wait()
		return nil
	}
	if !errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("fs: unmount %s: %w", s.mountDir, err)
	}
	if derr := syscall.Unmount(s.mountDir, syscall.MNT_DETACH); derr != nil {
		return fmt.Errorf("fs: unmount %s: %w; lazy detach: %w", s.mountDir, err, derr)
	}
	s.unmounted, s.lazy = true, true
	s.logger.Warn("mount was busy: detached lazily; open files stay served until closed", "dir", s.mountDir)
	return nil
}

// Wait blocks until the FUSE connection ends: after Unmount, or once the last
// file open on a lazily detached mount is closed.
func (s *Server) Wait() {
	s.srv.Wait()
}

// toErrno maps a DB's error to the errno FUSE answers with.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		return errno
	}
	return syscall.EIO
}

// errnoErr turns a go-fuse errno back into an error for the DB's funcs.
func errnoErr(errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}
