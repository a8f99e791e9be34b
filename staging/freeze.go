package staging

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/durable"
	"github.com/litefs-dev/litefs/internal/vfs"
)

// Frozen is an object in frozen/, final and ready to upload.
type Frozen struct {
	Level    int
	Min, Max ltx.TXID
	Path     string
	Size     int64
}

func (l *Log) sealedPath() string { return filepath.Join(l.dir, "sealed") }
func (l *Log) frozenDir() string  { return filepath.Join(l.dir, "frozen") }

func frozenName(level int, min, max ltx.TXID) string {
	return fmt.Sprintf("L%d-%s", level, ltx.FormatFilename(min, max))
}

// Freeze turns the log's records into one frozen object and returns the
// position of its last record (the zero Pos when there was nothing to
// freeze). It writes that position to the pos file before the sealed log
// goes (see doc.go).
func (l *Log) Freeze() (Pos, error) {
	// A sealed log left by a freeze that failed (a full disk) is older than
	// the log: finish it first, or sealing again would replace it.
	var last Pos
	if _, err := l.fs.Stat(l.sealedPath()); err == nil {
		if last, err = l.freezeSealed(true); err != nil {
			return Pos{}, err
		}
	}
	l.mu.Lock()
	if l.logRecords == 0 {
		l.mu.Unlock()
		return last, nil
	}
	if err := l.writePend(); err != nil {
		l.mu.Unlock()
		return Pos{}, err
	}
	if err := l.log.Sync(); err != nil {
		l.mu.Unlock()
		return Pos{}, fmt.Errorf("sync staging log: %w", err)
	}
	if err := l.fs.Rename(l.logPath(), l.sealedPath()); err != nil {
		l.mu.Unlock()
		return Pos{}, fmt.Errorf("seal staging log: %w", err)
	}
	old := l.log
	f, err := l.fs.OpenFile(l.logPath(), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		// Keep appending to the sealed file: nothing is lost, the next freeze
		// retries.
		_ = l.fs.Rename(l.sealedPath(), l.logPath())
		l.mu.Unlock()
		return Pos{}, fmt.Errorf("open staging log: %w", err)
	}
	l.log, l.logSize, l.logRecords, l.dirty = f, 0, 0, false
	l.mu.Unlock()
	old.Close()
	return l.freezeSealed(true)
}

// freezeSealed turns the sealed log into one frozen LTX object and removes
// it; writePos writes its last record's position first.
func (l *Log) freezeSealed(writePos bool) (Pos, error) {
	f, err := vfs.Open(l.fs, l.sealedPath())
	if err != nil {
		return Pos{}, fmt.Errorf("open sealed staging log: %w", err)
	}
	defer f.Close()
	var recs []record
	var offs []int64
	if _, _, err := scanRecords(f, func(r record, off int64) {
		recs, offs = append(recs, r), append(offs, off)
	}); err != nil {
		return Pos{}, err
	}
	var last Pos
	if len(recs) > 0 {
		min, max := recs[0].hdr.MinTXID, recs[len(recs)-1].hdr.MaxTXID
		if err := l.WriteFrozen(0, min, max, func(w io.Writer) error {
			return encodeBatch(w, f, recs, offs)
		}); err != nil {
			return Pos{}, err
		}
		// A frozen batch of several records says nothing of the WAL, and
		// start-up resumes in the WAL from a record's offset: keep the last
		// one's before the sealed log goes.
		last = PosOf(recs[len(recs)-1].hdr, recs[len(recs)-1].post)
		if writePos {
			// Not fatal: without it a restart may take a snapshot, no commit
			// is lost.
			if err := l.WritePos(last, false); err != nil {
				l.logger.Warn("cannot write the position file", "err", err)
			}
		}
	}
	if err := l.fs.Remove(l.sealedPath()); err != nil {
		return Pos{}, fmt.Errorf("remove sealed staging log: %w", err)
	}
	return last, nil
}

// WriteFrozen writes an object durably under its final name: write fills
// a .tmp file, which is fsynced and renamed, and the directory fsynced.
func (l *Log) WriteFrozen(level int, min, max ltx.TXID, write func(io.Writer) error) error {
	path := filepath.Join(l.frozenDir(), frozenName(level, min, max))
	tmp := path + ".tmp"
	f, err := l.fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("freeze %s: %w", filepath.Base(path), err)
	}
	w := durable.NewPacedWriter(f)
	err = write(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	var size int64
	if err == nil {
		size, err = f.Seek(0, io.SeekCurrent)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.fs.Rename(tmp, path)
	}
	if err == nil {
		err = l.fs.SyncDir(l.frozenDir())
	}
	if err != nil {
		_ = l.fs.Remove(tmp)
		return fmt.Errorf("freeze %s: %w", filepath.Base(path), err)
	}
	l.mu.Lock()
	l.frozenSize += size
	l.mu.Unlock()
	return nil
}

// Frozen lists frozen objects in upload order: by MaxTXID, snapshots first.
func (l *Log) Frozen() ([]Frozen, error) {
	dir := l.frozenDir()
	ents, err := l.fs.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list staging: %w", err)
	}
	var out []Frozen
	for _, e := range ents {
		var level int
		var name string
		if _, err := fmt.Sscanf(e.Name(), "L%d-%s", &level, &name); err != nil {
			continue
		}
		min, max, err := ltx.ParseFilename(name)
		if err != nil {
			continue // a .tmp left by a crash
		}
		fi, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("list staging: %w", err)
		}
		out = append(out, Frozen{Level: level, Min: min, Max: max, Path: filepath.Join(dir, e.Name()), Size: fi.Size()})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Max != out[j].Max {
			return out[i].Max < out[j].Max
		}
		return out[i].Level > out[j].Level
	})
	return out, nil
}

// Open opens a frozen object for upload.
func (l *Log) Open(f Frozen) (io.ReadCloser, error) { return vfs.Open(l.fs, f.Path) }

// PostApply reads a frozen object's post-apply checksum from its trailer.
func (l *Log) PostApply(f Frozen) (ltx.Checksum, error) {
	r, err := vfs.Open(l.fs, f.Path)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var t [ltx.TrailerSize]byte
	fi, err := r.Stat()
	if err != nil {
		return 0, err
	}
	if _, err := r.ReadAt(t[:], fi.Size()-ltx.TrailerSize); err != nil {
		return 0, fmt.Errorf("read trailer of %s: %w", f.Path, err)
	}
	var tr ltx.Trailer
	if err := tr.UnmarshalBinary(t[:]); err != nil {
		return 0, fmt.Errorf("read trailer of %s: %w", f.Path, err)
	}
	return tr.PostApplyChecksum, nil
}

// Remove deletes a frozen object the replica confirmed.
func (l *Log) Remove(f Frozen) error {
	if err := l.fs.Remove(f.Path); errors.Is(err, os.ErrNotExist) {
		// Discard (an overflow) dropped it while it was being uploaded and
		// already stopped counting it.
		return nil
	} else if err != nil {
		return fmt.Errorf("remove staged %s: %w", filepath.Base(f.Path), err)
	}
	l.mu.Lock()
	l.frozenSize -= f.Size
	l.mu.Unlock()
	return nil
}

// RemoveFrozen removes the object of that level and range, if staged.
func (l *Log) RemoveFrozen(level int, min, max ltx.TXID) error {
	path := filepath.Join(l.frozenDir(), frozenName(level, min, max))
	fi, err := l.fs.Stat(path)
	if err != nil {
		return nil
	}
	return l.Remove(Frozen{Level: level, Min: min, Max: max, Path: path, Size: fi.Size()})
}
