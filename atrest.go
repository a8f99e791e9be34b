package litefs

import (
	"fmt"
	"os"
	"time"

	"github.com/litefs-dev/litefs/internal/checksum"
)

// checkWALMode stops replication when the database header says rollback mode.
func (c *Capture) checkWALMode(when string) {
	f, err := os.Open(c.path)
	if err != nil {
		return
	}
	defer f.Close()
	var b [2]byte
	if _, err := f.ReadAt(b[:], 18); err != nil {
		return
	}
	if b[0] == 1 || b[1] == 1 {
		c.stop(fmt.Errorf("database %s left WAL mode (header says rollback journal at %s): set PRAGMA journal_mode=WAL and restart litefs", c.name, when))
	}
}

// fileStamp is what a database file looked like when the WAL was emptied.
type fileStamp struct {
	size  int64
	mtime time.Time
}

// noteAtRest records the database file once the WAL is gone or empty: it
// then holds exactly the tracked state, and nothing through the mount
// writes it until a new WAL begins. Called with c.mu held.
func (c *Capture) noteAtRest() {
	if fi, err := os.Stat(c.path); err == nil && c.state == StateReplicating {
		c.atRest = &fileStamp{fi.Size(), fi.ModTime()}
	}
}

// checkAtRest runs before a new WAL's header reaches the file: if the
// database file changed since the WAL was emptied, someone wrote it behind
// the mount, and replicating the new WAL on top would blend two histories.
// A stat is all it costs unless the file changed.
func (c *Capture) checkAtRest() {
	c.mu.Lock()
	defer c.mu.Unlock()
	rest := c.atRest
	c.atRest = nil
	if rest == nil || c.state != StateReplicating {
		return
	}
	fi, err := os.Stat(c.path)
	if err != nil || (fi.Size() == rest.size && fi.ModTime().Equal(rest.mtime)) {
		return
	}
	sums, err := checksum.SumFile(c.path, c.sums.PageSize())
	if err == nil && sums.Checksum() == c.sums.Checksum() {
		return
	}
	c.stop(fmt.Errorf("database %s in the data dir changed while its WAL was empty (checksum %v, expected %s at TXID %d): it was written behind litefs's back; restart litefs to take a new snapshot of it",
		c.name, checksumOf(sums), c.sums.Checksum(), c.pos.TXID))
}

func checksumOf(s *checksum.Sums) any {
	if s == nil {
		return "unreadable"
	}
	return s.Checksum()
}
