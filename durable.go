package litefs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/wal"
)

// Durability says when a commit is answered ([dbs.replica] durability).
type Durability int

const (
	// DurabilityVolume: a commit returns once it is on the volume (the WAL
	// write went through). The replica follows within sync-interval.
	DurabilityVolume Durability = iota
	// DurabilityReplica: the commit frame's last WAL write (and a WAL
	// fsync) is answered only once the replica holds the transaction.
	DurabilityReplica
	// DurabilityReplicaOnFsync: a WAL fsync is answered only once the
	// replica holds everything before it; plain writes return at once. So
	// PRAGMA synchronous decides: FULL/EXTRA commits wait, NORMAL ones not.
	DurabilityReplicaOnFsync
)

// ParseDurability reads the config's value.
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "", "volume":
		return DurabilityVolume, nil
	case "replica":
		return DurabilityReplica, nil
	case "replica-on-fsync":
		return DurabilityReplicaOnFsync, nil
	}
	return 0, fmt.Errorf("durability %q: use \"volume\", \"replica\" or \"replica-on-fsync\"", s)
}

func (d Durability) String() string {
	switch d {
	case DurabilityReplica:
		return "replica"
	case DurabilityReplicaOnFsync:
		return "replica-on-fsync"
	}
	return "volume"
}

// errNotReplicated answers a durable commit that cannot be confirmed: the
// app must not take it for safe (its frames are in the WAL on this volume,
// so it may still be there: an in-doubt commit, as with any database whose
// client lost the reply).
var errNotReplicated = syscall.EIO

// commitFrames finds, among WAL writes (in order, with wmu held), the one
// that completes a commit frame: SQLite writes a frame's 24-byte header and
// its page separately, and a commit frame's header carries the database
// size (nonzero). Guarded by Capture.wmu.
type commitFrames struct {
	pageSize  uint32
	commitEnd int64 // end of the commit frame whose header was written; 0: none
}

// completes reports whether the write p at off ends a commit frame.
func (f *commitFrames) completes(walPath string, off int64, p []byte) bool {
	if off == 0 && len(p) >= wal.HeaderSize {
		f.pageSize = binary.BigEndian.Uint32(p[8:12])
		f.commitEnd = 0
	}
	if off < wal.HeaderSize {
		return false
	}
	if f.pageSize == 0 && !f.readPageSize(walPath) {
		return false
	}
	frame := int64(wal.FrameHeaderSize) + int64(f.pageSize)
	if (off-wal.HeaderSize)%frame == 0 && len(p) >= wal.FrameHeaderSize {
		f.commitEnd = 0
		if binary.BigEndian.Uint32(p[4:8]) != 0 {
			if int64(len(p)) >= frame {
				return true
			}
			f.commitEnd = off + frame
		}
		return false
	}
	if f.commitEnd != 0 && off+int64(len(p)) == f.commitEnd {
		f.commitEnd = 0
		return true
	}
	return false
}

// readPageSize reads it from the WAL's header (a WAL this process did not
// see start).
func (f *commitFrames) readPageSize(walPath string) bool {
	fh, err := os.Open(walPath)
	if err != nil {
		return false
	}
	defer fh.Close()
	var b [wal.HeaderSize]byte
	if _, err := fh.ReadAt(b[:], 0); err != nil {
		return false
	}
	f.pageSize = binary.BigEndian.Uint32(b[8:12])
	return f.pageSize != 0
}

// waiting counts the commits waiting for the replica and when the oldest
// began, for /readyz, the metric and one log line per episode.
type waiting struct {
	mu     sync.Mutex
	starts map[uint64]time.Time
	next   uint64
	logged bool
}

func (w *waiting) begin(now time.Time) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.starts == nil {
		w.starts = map[uint64]time.Time{}
	}
	w.next++
	w.starts[w.next] = now
	return w.next
}

func (w *waiting) end(id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.starts, id)
	if len(w.starts) == 0 {
		w.logged = false
	}
}

// Waiting is how many commits wait for the replica and how long the oldest
// has waited.
func (w *waiting) Waiting(now time.Time) (int, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var oldest time.Duration
	for _, t := range w.starts {
		oldest = max(oldest, now.Sub(t))
	}
	return len(w.starts), oldest
}

// logOnce reports whether this is the first long wait of the episode.
func (w *waiting) logOnce() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.logged {
		return false
	}
	w.logged = true
	return true
}

// longWait is when a waiting commit is logged (once per episode).
const longWait = 2 * time.Second

// syncWaiting reports whether a WAL fsync waits for the replica now.
func (c *Capture) syncWaiting() bool { return c.syncWaits.Load() > 0 }

// durableWaiting reports whether any commit or fsync waits for the replica.
func (c *Capture) durableWaiting() bool {
	n, _ := c.waits.Waiting(c.now())
	return n > 0
}

// waitDurable holds a durable commit (or fsync) until the replica holds
// everything applied so far. It triggers the upload at once, whatever the
// sync interval. Called without wmu or mu held.
func (c *Capture) waitDurable() error {
	c.drain()
	c.mu.Lock()
	txid, pending, state, serr := c.pos.TXID, c.tracker.Pending(), c.state, c.err
	c.mu.Unlock()
	if state == StateStopped {
		return fmt.Errorf("%w: replication of %s stopped (%v): this commit is not in the replica", errNotReplicated, c.name, serr)
	}
	if pending {
		return fmt.Errorf("%w: a commit of %s could not be staged, so it cannot reach the replica", errNotReplicated, c.name)
	}
	start := c.now()
	id := c.waits.begin(start)
	defer c.waits.end(id)
	c.up.urgent()
	t := time.NewTicker(stopCheck)
	defer t.Stop()
	for {
		err := c.up.waitConfirmed(c.closed, txid, t.C)
		if err == nil {
			c.durableSeconds(c.now().Sub(start))
			return nil
		}
		if !errors.Is(err, errStillWaiting) {
			c.logger.Error("a durable commit was not confirmed by the replica: the app gets an I/O error", "txid", txid, "err", err)
			return fmt.Errorf("%w: %v", errNotReplicated, err)
		}
		if st, serr := c.State(); st == StateStopped {
			c.logger.Error("a durable commit was not confirmed by the replica: the app gets an I/O error", "txid", txid, "reason", serr)
			return fmt.Errorf("%w: replication stopped: %v", errNotReplicated, serr)
		}
		if c.now().Sub(start) > longWait && c.waits.logOnce() {
			c.logger.Warn("durable commits are waiting for the replica (unreachable, or another owner's lease not yet expired); they return once it confirms them",
				"txid", txid)
		}
	}
}

// errStillWaiting: the tick came before the replica confirmed.
var errStillWaiting = errors.New("still waiting")

// waitConfirmed waits until this daemon's uploads confirmed txid, closed
// ends (shutdown), or tick fires (errStillWaiting).
func (u *uploader) waitConfirmed(closed <-chan struct{}, txid ltx.TXID, tick <-chan time.Time) error {
	have, ch := u.confirmed.get()
	if have >= txid {
		return nil
	}
	select {
	case <-closed:
		return errors.New("litefs shut down before the replica confirmed it")
	case <-ch:
		if have, _ := u.confirmed.get(); have >= txid {
			return nil
		}
		return errStillWaiting
	case <-tick:
		return errStillWaiting
	}
}

// latencyBuckets are the upper bounds of the durable commit latency
// histogram (a PUT on real S3 is tens of ms).
var latencyBuckets = []time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	200 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second}

// latencyHist is a lock-free fixed-bucket histogram.
type latencyHist struct {
	counts [14]atomic.Uint64 // per bucket, the last is +Inf
	sum    atomic.Int64      // nanoseconds
}

func (h *latencyHist) observe(d time.Duration) {
	i := 0
	for i < len(latencyBuckets) && d > latencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot returns the cumulative count per bucket bound (seconds), the
// total count and the sum in seconds, as Prometheus wants them.
func (h *latencyHist) Snapshot() (buckets map[float64]uint64, count uint64, sum float64) {
	buckets = make(map[float64]uint64, len(latencyBuckets))
	var cum uint64
	for i, b := range latencyBuckets {
		cum += h.counts[i].Load()
		buckets[b.Seconds()] = cum
	}
	cum += h.counts[len(latencyBuckets)].Load()
	return buckets, cum, time.Duration(h.sum.Load()).Seconds()
}

func (c *Capture) durableSeconds(d time.Duration) { c.durableHist.observe(d) }
