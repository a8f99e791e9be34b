package staging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/vfs"
	"github.com/litefs-dev/litefs/wal"
)

// Log is one database's staging directory. Append, WritePending, Sync and
// Discard are called by the capture, one at a time; Freeze, Frozen and
// Remove by the uploader, one at a time; Bytes by anyone.
type Log struct {
	fs     vfs.FS
	dir    string
	logger *slog.Logger

	rec []byte // Append's encoding buffer, reused across commits

	mu         sync.Mutex
	log        vfs.File
	logSize    int64  // bytes in the log file
	pend       []byte // records appended after them, not yet written
	logRecords int    // in the file and in pend
	dirty      bool
	frozenSize int64

	posMu      sync.Mutex
	posWritten ltx.TXID // the newest position this process wrote
	posDurable bool     // and whether it was synced
}

// pendMax bounds the records appended but not yet written to the log. They
// are written together, one syscall per pendMax instead of one per commit,
// at the latest before a freeze or a sync. Losing them to a crash loses no
// commit, exactly as losing the capture's queue does not: the WAL still
// holds them (only a barrier, which syncs, lets WAL frames go), and
// start-up stages the WAL's commits past the last record the log holds (the
// first one is always written at once, see Append). The capture also
// writes them when its applier goes idle, when the app syncs the WAL
// (before every checkpoint) and before a snapshot is staged.
const pendMax = 256 << 10

// Open opens (creating) the staging directory dir, finishes a freeze a
// crash interrupted, cuts a torn log tail, and returns the newest position
// staging holds: the log's last record, else the newest frozen object's.
// logger hears of what staging survives (a pos file it could not write).
func Open(fsys vfs.FS, dir string, logger *slog.Logger) (*Log, Pos, error) {
	l := &Log{fs: fsys, dir: dir, logger: logger}
	if err := fsys.MkdirAll(l.frozenDir(), 0o700); err != nil {
		return nil, Pos{}, fmt.Errorf("create staging: %w", err)
	}
	// A sealed log means a freeze was interrupted: finish it first, it is older
	// than the log.
	var sealedPos Pos
	if _, err := fsys.Stat(l.sealedPath()); err == nil {
		if sealedPos, err = l.freezeSealed(false); err != nil {
			return nil, Pos{}, err
		}
	}
	pos, err := l.recoverLog()
	if err != nil {
		return nil, Pos{}, err
	}
	pos = Newer(sealedPos, pos)
	ff, err := l.Frozen()
	if err != nil {
		l.log.Close()
		return nil, Pos{}, err
	}
	for _, f := range ff {
		l.frozenSize += f.Size
		if f.Max > pos.TXID {
			post, err := l.PostApply(f)
			if err != nil {
				l.log.Close()
				return nil, Pos{}, err
			}
			pos = Newer(pos, Pos{TXID: f.Max, Checksum: post})
		}
	}
	return l, pos, nil
}

// Append stages one committed transaction, hdr (MinTXID = MaxTXID) with
// its pages, and returns the position after it. No fsync: see Sync; no
// write either until pendMax is reached: see pendMax.
func (l *Log) Append(hdr ltx.Header, post ltx.Checksum, pages []wal.Page) (Pos, error) {
	l.rec = appendLogRecord(l.rec[:0], hdr, post, pages)
	buf := l.rec
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pend)+len(buf) > pendMax {
		if err := l.writePend(); err != nil {
			return Pos{}, err
		}
	}
	// The first record of a log goes to the file at once: start-up resumes
	// from the last record the log holds, and only a record (not a snapshot
	// nor a batch of several) says where in the WAL to resume.
	if len(buf) > pendMax || l.logSize == 0 {
		if err := l.writeLog(buf); err != nil {
			return Pos{}, err
		}
	} else {
		l.pend = append(l.pend, buf...)
	}
	l.logRecords++
	l.dirty = true
	return PosOf(hdr, post), nil
}

// WritePending writes the appended records to the log file, without
// syncing it.
func (l *Log) WritePending() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.log == nil {
		return nil
	}
	return l.writePend()
}

// writePend writes the pending records to the log. On failure they stay
// pending, for the next try. Called with mu held.
func (l *Log) writePend() error {
	if len(l.pend) == 0 {
		return nil
	}
	if err := l.writeLog(l.pend); err != nil {
		return err
	}
	l.pend = l.pend[:0]
	return nil
}

// writeLog appends whole records to the log file. Called with mu held.
func (l *Log) writeLog(b []byte) error {
	if _, err := l.log.Write(b); err != nil {
		// A partial record would poison the log: cut it off.
		_ = l.log.Truncate(l.logSize)
		_, _ = l.log.Seek(l.logSize, io.SeekStart)
		return fmt.Errorf("append to staging: %w", err)
	}
	l.logSize += int64(len(b))
	return nil
}

// Sync makes every appended record durable.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.dirty {
		return nil
	}
	if err := l.writePend(); err != nil {
		return err
	}
	if err := l.log.Sync(); err != nil {
		return fmt.Errorf("sync staging log: %w", err)
	}
	l.dirty = false
	return nil
}

// Bytes is what staging holds on disk, for the metric and the bound.
func (l *Log) Bytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.logSize + int64(len(l.pend)) + l.frozenSize
}

// Close writes the pending records and closes the log (no fsync: the
// caller syncs first when it needs to).
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.log == nil {
		return nil
	}
	err := l.writePend()
	if cerr := l.log.Close(); err == nil {
		err = cerr
	}
	l.log = nil
	return err
}

// Discard drops everything staged: a new snapshot replaces it. The caller
// holds off Append meanwhile.
func (l *Log) Discard() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.log.Truncate(0); err != nil {
		return fmt.Errorf("discard staging: %w", err)
	}
	if _, err := l.log.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("discard staging: %w", err)
	}
	l.logSize, l.pend, l.logRecords, l.dirty = 0, l.pend[:0], 0, false
	if err := l.fs.Remove(l.sealedPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("discard staging: %w", err)
	}
	ents, err := l.fs.ReadDir(l.frozenDir())
	if err != nil {
		return fmt.Errorf("discard staging: %w", err)
	}
	for _, e := range ents {
		if err := l.fs.Remove(filepath.Join(l.frozenDir(), e.Name())); err != nil {
			return fmt.Errorf("discard staging: %w", err)
		}
	}
	l.frozenSize = 0
	return nil
}

// readFile reads a small file whole.
func (l *Log) readFile(path string) ([]byte, error) {
	f, err := vfs.Open(l.fs, path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
