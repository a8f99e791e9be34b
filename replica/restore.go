package replica

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/durable"
)

// DefaultParallelism is the number of download workers when
// RestoreOptions.Parallelism is 0.
const DefaultParallelism = 8

// RestoreOptions configures Restore.
type RestoreOptions struct {
	// OutputPath is the database file to create. Its directory must exist
	// and the file must not.
	OutputPath string
	// TXID is the state to restore; 0 means the latest. It must be the last
	// TXID of some file.
	TXID ltx.TXID
	// Timestamp selects the newest state committed at or before it; zero
	// means the latest. At most one of TXID and Timestamp may be set.
	Timestamp time.Time
	// Parallelism is the number of download workers (default 8), each a
	// ranged read of up to 4 MiB. Memory grows with neither it nor the
	// database: the downloads run at most 12 MiB ahead of the applier (1.5
	// MiB each past 8 workers), decoding and writing take about 1 MiB a
	// CPU, and the page checksums 8 bytes a page written (2 MiB a GiB).
	Parallelism int
	// Logger receives the progress: the snapshot, each file downloaded and
	// applied with its elapsed time, the final rename. nil discards it.
	Logger *slog.Logger
	// Verify, when set, checks the finished temp file before it is renamed
	// into place (e.g. PRAGMA integrity_check); an error fails the restore
	// and leaves nothing behind.
	Verify func(tmpPath string) error
}

// TempPath is where Restore builds the database before renaming it to
// OutputPath: beside it (same filesystem, so the rename is atomic), hidden,
// and named like neither a database nor an LTX file.
func TempPath(outputPath string) string {
	return filepath.Join(filepath.Dir(outputPath), "."+filepath.Base(outputPath)+".restore-tmp")
}

// Restore rebuilds the database at opt.OutputPath from the replica and
// returns the restored position.
//
// It downloads ahead with opt.Parallelism workers while applying strictly in
// plan order, verifies every file checksum and the pre/post-apply checksum
// chain (files flagged NoChecksum, as Litestream writes them, get contiguity
// and file checksums only), and checks the final database against the last
// post-apply checksum, computed from the pages as they are written (the file
// is not read back). The database appears at OutputPath complete and
// durable, or not at all: on any error the temp file is removed, OutputPath
// is untouched, and the error names the object involved.
//
// Decoding runs on up to GOMAXPROCS workers, and on Linux large runs of
// pages bypass the page cache (O_DIRECT): the temp file is never read, and
// copying a large database through the page cache cost more CPU than
// downloading it.
func Restore(ctx context.Context, c ReplicaClient, opt RestoreOptions) (ltx.Pos, error) {
	start := time.Now()
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opt.OutputPath == "" {
		return ltx.Pos{}, errors.New("restore: output path required")
	}
	if err := checkOutput(opt.OutputPath); err != nil {
		return ltx.Pos{}, err
	}
	parallelism := opt.Parallelism
	if parallelism <= 0 {
		parallelism = DefaultParallelism
	}

	plan, err := Plan(ctx, c, opt.TXID, opt.Timestamp)
	if err != nil {
		return ltx.Pos{}, err
	}
	var total int64
	for _, info := range plan {
		total += info.Size
	}
	log.Info("restore plan", "replica", c.Type(), "files", len(plan), "bytes", total,
		"txid", plan[len(plan)-1].MaxTXID, "output", opt.OutputPath)

	tmpPath := TempPath(opt.OutputPath)
	pos, err := build(ctx, c, plan, tmpPath, parallelism, log)
	if err == nil && opt.Verify != nil {
		if err = opt.Verify(tmpPath); err != nil {
			err = fmt.Errorf("verify %s: %w", tmpPath, err)
		}
	}
	if err == nil {
		err = install(tmpPath, opt.OutputPath)
	}
	if err != nil {
		if rmErr := os.Remove(tmpPath); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("remove temp file: %w", rmErr))
		}
		return ltx.Pos{}, fmt.Errorf("restore: %w", err)
	}
	log.Info("renamed", "from", tmpPath, "to", opt.OutputPath, "txid", pos.TXID,
		"checksum", pos.PostApplyChecksum, "elapsed", time.Since(start).Round(time.Millisecond))
	return pos, nil
}

// ErrOutputDir is returned (wrapped) when the output's directory is missing,
// is not a directory, or cannot be examined. Restore checks it before it
// reads the replica, so callers (the restore command) need not check it
// themselves to word the failure their way.
var ErrOutputDir = errors.New("restore output directory unusable")

// dirError is a failure of the output's directory: its own wording, and
// ErrOutputDir (plus the stat error, when there is one) to match.
type dirError struct {
	msg string
	err error
}

func (e *dirError) Error() string { return e.msg }

func (e *dirError) Unwrap() []error {
	if e.err == nil {
		return []error{ErrOutputDir}
	}
	return []error{ErrOutputDir, e.err}
}

// checkOutput is the one check of the output path before a restore starts:
// its directory must exist and the path must not (not even as a symlink).
// install checks the path again just before the rename.
func checkOutput(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return &dirError{fmt.Sprintf("restore: directory %s does not exist: mount the volume there (or create it) before restoring", dir), err}
	} else if err != nil {
		return &dirError{"restore: " + err.Error(), err}
	} else if !fi.IsDir() {
		return &dirError{fmt.Sprintf("restore: %s is not a directory", dir), nil}
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("restore: %s already exists: refusing to replace a database", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// build applies the plan into tmpPath and leaves it fsynced and verified.
func build(ctx context.Context, c ReplicaClient, plan []*ltx.FileInfo, tmpPath string, parallelism int, log *slog.Logger) (ltx.Pos, error) {
	fetch := newFetcher(ctx, c, plan, parallelism)
	defer fetch.close()
	workers := min(runtime.GOMAXPROCS(0), 8)
	w, err := newWriter(tmpPath, 2*workers+2)
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("create temp file: %w", err)
	}
	defer w.closeFiles()
	defer w.close()
	a := newApplier(w, workers)
	defer a.close()
	var s stream
	defer s.drop()
	for i, info := range plan {
		t0 := time.Now()
		s.reset(fetch, i)
		pages, err := a.apply(info, &s)
		s.drop()
		if err != nil {
			return ltx.Pos{}, fmt.Errorf("object %s: %w", Key(info), err)
		}
		msg := "applied"
		if info.Level == SnapshotLevel {
			msg = "snapshot applied"
		}
		log.Info(msg, "key", Key(info), "pages", pages, "bytes", info.Size,
			"elapsed", time.Since(t0).Round(time.Microsecond))
	}
	fetch.close()
	a.close()
	last := plan[len(plan)-1]
	if err := w.close(); err != nil {
		return ltx.Pos{}, fmt.Errorf("object %s: write temp file: %w", Key(last), err)
	}

	// The checksum of the pages as written, kept while applying: reading
	// the file back would cost as much as the restore's own hashing.
	chk := a.sums.Checksum()
	if a.pos.PostApplyChecksum != 0 && chk != a.pos.PostApplyChecksum {
		return ltx.Pos{}, fmt.Errorf("object %s: %w: restored database has checksum %s, the file's post-apply checksum is %s",
			Key(last), ErrChecksumChain, chk, a.pos.PostApplyChecksum)
	}
	if err := w.sync(); err != nil {
		return ltx.Pos{}, fmt.Errorf("sync temp file: %w", err)
	}
	if err := w.closeFiles(); err != nil {
		return ltx.Pos{}, fmt.Errorf("close temp file: %w", err)
	}
	// Files without checksums (Litestream's) still get the real one, for
	// callers comparing positions.
	return ltx.Pos{TXID: a.pos.TXID, PostApplyChecksum: chk}, nil
}

// install moves the verified temp file into place. A stale -wal or -journal
// would be replayed into the restored database by the first connection and
// corrupt it, and a stale -shm could describe the wrong WAL: they go first,
// durably, before the database appears.
func install(tmpPath, outputPath string) error {
	dir := filepath.Dir(outputPath)
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Remove(outputPath + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale %s: %w", outputPath+suffix, err)
		}
	}
	if err := durable.SyncDir(dir); err != nil {
		return err
	}
	// Checked again: the database may have been created while we downloaded,
	// and rename would silently replace it.
	if _, err := os.Lstat(outputPath); err == nil {
		return fmt.Errorf("%s appeared during the restore: refusing to replace it", outputPath)
	}
	if err := os.Rename(tmpPath, outputPath); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return err
	}
	return nil
}
