package staging

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/superfly/ltx"
)

// Pos is a replication position: the last transaction staged or uploaded,
// the database's rolling checksum after it, and (when known) where its frames
// started in the WAL so start-up can find the commits that came after it.
type Pos struct {
	TXID      ltx.TXID     `json:"txid"`
	Checksum  ltx.Checksum `json:"checksum"`
	WALSalt1  uint32       `json:"walSalt1,omitempty"`
	WALSalt2  uint32       `json:"walSalt2,omitempty"`
	WALOffset int64        `json:"walOffset,omitempty"`
	WALSize   int64        `json:"walSize,omitempty"`
}

// HasWAL reports whether the position knows its WAL frames.
func (p Pos) HasWAL() bool { return p.WALOffset != 0 }

// Newer returns whichever of a and b is further along; on a tie the one that
// knows its WAL position wins.
func Newer(a, b Pos) Pos {
	if b.TXID > a.TXID || (b.TXID == a.TXID && !a.HasWAL() && b.HasWAL()) {
		return b
	}
	return a
}

// PosOf is the position after the transaction hdr describes.
func PosOf(hdr ltx.Header, post ltx.Checksum) Pos {
	return Pos{
		TXID: hdr.MaxTXID, Checksum: post,
		WALSalt1: hdr.WALSalt1, WALSalt2: hdr.WALSalt2,
		WALOffset: hdr.WALOffset, WALSize: hdr.WALSize,
	}
}

func (l *Log) posPath() string { return filepath.Join(l.dir, "pos") }

// ReadPos reads the pos file (the zero Pos when it does not exist or is
// torn); WritePos writes nothing older from then on.
func (l *Log) ReadPos() (Pos, error) {
	p, err := l.readPos()
	if err == nil {
		l.posMu.Lock()
		l.posWritten = p.TXID
		l.posMu.Unlock()
	}
	return p, err
}

func (l *Log) readPos() (Pos, error) {
	var p Pos
	b, err := l.readFile(l.posPath())
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	} else if err != nil {
		return p, fmt.Errorf("read position: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		// A torn pos file costs at most a snapshot: staging and the replica
		// still say where we are.
		return Pos{}, nil
	}
	return p, nil
}

// WritePos writes the pos file unless this process already wrote a newer
// position (or the same one, as durably). durable makes it survive power
// loss: barriers need that, routine updates do not.
func (l *Log) WritePos(p Pos, durable bool) error {
	l.posMu.Lock()
	defer l.posMu.Unlock()
	if p.TXID < l.posWritten || (p.TXID == l.posWritten && (l.posDurable || !durable)) {
		return nil
	}
	if err := l.writePosFile(p, durable); err != nil {
		return err
	}
	l.posWritten, l.posDurable = p.TXID, durable
	return nil
}

// writePosFile replaces the file atomically.
func (l *Log) writePosFile(p Pos, sync bool) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	path := l.posPath()
	tmp := path + ".tmp"
	f, err := l.fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write position: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write position: %w", err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("sync position: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write position: %w", err)
	}
	if err := l.fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("write position: %w", err)
	}
	if sync {
		return l.fs.SyncDir(l.dir)
	}
	return nil
}
