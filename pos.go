package litefs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/durable"
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

// newer returns whichever of a and b is further along; on a tie the one that
// knows its WAL position wins.
func newer(a, b Pos) Pos {
	if b.TXID > a.TXID || (b.TXID == a.TXID && !a.HasWAL() && b.HasWAL()) {
		return b
	}
	return a
}

func posFromHeader(hdr ltx.Header, post ltx.Checksum) Pos {
	return Pos{
		TXID: hdr.MaxTXID, Checksum: post,
		WALSalt1: hdr.WALSalt1, WALSalt2: hdr.WALSalt2,
		WALOffset: hdr.WALOffset, WALSize: hdr.WALSize,
	}
}

// readPosFile returns the zero Pos when the file does not exist.
func readPosFile(path string) (Pos, error) {
	var p Pos
	b, err := os.ReadFile(path)
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

// writePosFile replaces the file atomically; sync makes it survive power
// loss (barriers need that, routine updates do not).
func writePosFile(path string, p Pos, sync bool) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
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
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write position: %w", err)
	}
	if sync {
		return durable.SyncDir(filepath.Dir(path))
	}
	return nil
}
