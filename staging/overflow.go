package staging

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/superfly/ltx"
)

// Overflow is the marker that staging was dropped or never held a snapshot it
// needs, so the next upload must be a new snapshot (a rebase). It is durable
// before what it replaces goes, so a crash in between still ends in the
// snapshot: without it, start-up would resume on a position whose history
// the replica lacks.
type Overflow struct {
	// GapFrom is the first TXID that stopped being a restore point when
	// staging was dropped (the replica's newest + 1); 0 when nothing was
	// lost (a snapshot too large to stage waits to be streamed).
	GapFrom ltx.TXID `json:"gapFrom,omitempty"`
}

func (l *Log) overflowPath() string { return filepath.Join(l.dir, "overflow") }

// RecordSize is how many bytes Append adds to the log for a transaction of
// at most n pages of pageSize: what the capture weighs against
// staging-max-bytes.
func RecordSize(pageSize uint32, n int) int64 {
	return lenPrefixSize + recordHeaderLen + int64(n)*(4+int64(pageSize)) + recordTrailerLen
}

// MarkOverflow writes the marker durably. An existing marker keeps its
// GapFrom (the earliest loss).
func (l *Log) MarkOverflow(o Overflow) error {
	if old, ok, err := l.ReadOverflow(); err == nil && ok && old.GapFrom != 0 && (o.GapFrom == 0 || old.GapFrom < o.GapFrom) {
		o.GapFrom = old.GapFrom
	}
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	tmp := l.overflowPath() + ".tmp"
	if err := l.writeSynced(tmp, b); err != nil {
		return fmt.Errorf("mark staging overflow: %w", err)
	}
	if err := l.fs.Rename(tmp, l.overflowPath()); err != nil {
		return fmt.Errorf("mark staging overflow: %w", err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("mark staging overflow: %w", err)
	}
	return nil
}

// ReadOverflow returns the marker, if there is one.
func (l *Log) ReadOverflow() (Overflow, bool, error) {
	b, err := l.readFile(l.overflowPath())
	if errors.Is(err, os.ErrNotExist) {
		return Overflow{}, false, nil
	} else if err != nil {
		return Overflow{}, false, fmt.Errorf("read staging overflow marker: %w", err)
	}
	var o Overflow
	if err := json.Unmarshal(b, &o); err != nil {
		// A torn marker still says a snapshot is needed; the gap's start is
		// lost, which only makes the log line vaguer.
		return Overflow{}, true, nil
	}
	return o, true, nil
}

// ClearOverflow removes the marker once the new snapshot is staged durably
// or in the replica.
func (l *Log) ClearOverflow() error {
	if err := l.fs.Remove(l.overflowPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("clear staging overflow marker: %w", err)
	}
	return nil
}

func (l *Log) writeSynced(path string, b []byte) error {
	f, err := l.fs.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
