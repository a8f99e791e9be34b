package litefs

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/checksum"
	"github.com/litefs-dev/litefs/staging"
	"github.com/litefs-dev/litefs/wal"
)

// Capture is the first half of a replicated database: the fs.DB hooks the
// FUSE loopback calls for every change to the database's WAL (hooks.go), the
// queue and applier that feed them to a wal.Tracker off the app's commit
// path (queue.go), and the staging of each committed transaction with the
// rolling page checksums and the position after it. It knows nothing of
// the replica: it tells the uploader through uploadSide.
type Capture struct {
	name   string // relative to the data dir
	path   string // the real file in the data dir
	logger *slog.Logger
	now    func() time.Time
	stage  *staging.Log
	unsent *unsentQueue // lag: a commit is pushed when staged
	up     uploadSide

	// wmu orders WAL operations: a write reaches the file and the queue in
	// the same order; barriers hold it so nothing is queued behind them.
	wmu       sync.Mutex
	closing   bool // guarded by wmu
	queue     walQueue
	applyDone chan struct{}

	mu       sync.Mutex
	stageErr error      // the last staging failure, until a commit stages again
	atRest   *fileStamp // the database file when the WAL was last emptied
	tracker  *wal.Tracker
	sums     *checksum.Sums
	pos      staging.Pos // the last staged transaction
	state    DBState
	err      error
	undo     checksum.Undo
	posDirty bool // pos changed since the last durable pos write

	// maxStaged is staging-max-bytes (0: no cap). overflowed: staging was
	// dropped at the cap, and commits are not staged until the uploader's
	// new snapshot (overflow.go). Guarded by mu.
	maxStaged int64
	// durability: when a commit is answered (durable.go). frames finds
	// commit frames among WAL writes (guarded by wmu); waits and
	// durableHist count durable commits; closed ends their waits.
	durability  Durability
	frames      commitFrames
	waits       waiting
	durableHist *latencyHist
	closed      chan struct{}
	syncWaits   atomic.Int32 // WAL fsyncs waiting for the replica (snapshot.go: pin)
	overflowed  bool
	overflowSeq uint64 // overflows so far: a rebase is done only if none came after its snapshot point

	// walIndex maps each page committed in the current WAL generation to the
	// frame holding its latest version: a snapshot overlays them on the
	// database file. Guarded by mu.
	walIndex map[uint32]int64
}

// uploadSide is what the capture tells the uploader, and the one thing it
// asks of it. Calls are made with the capture's mu held: the uploader never
// calls into the capture while holding a lock of its own.
type uploadSide interface {
	// staged: a record or snapshot is in staging.
	staged()
	// snapshotStaged: a snapshot 1-txid is in staging (the snapshot policy
	// counts from it).
	snapshotStaged(txid ltx.TXID)
	// replicaTXID is the newest TXID the replica holds: a new snapshot
	// comes after it, so TXIDs never go back on one replica path.
	replicaTXID() ltx.TXID
	// urgent: a durable commit waits; upload now, whatever sync-interval
	// says.
	urgent()
	// waitConfirmed: see uploader.waitConfirmed.
	waitConfirmed(closed <-chan struct{}, txid ltx.TXID, tick <-chan time.Time) error
	// rebase: staging cannot go on from where it is (an overflow dropped
	// it, or a snapshot was too large to stage); the next upload must be a
	// new snapshot.
	rebase()
}

// State returns the replication state and, when stopped, why.
func (c *Capture) State() (DBState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state, c.err
}

// Pos is the last staged position, once every write already in the WAL was
// applied.
func (c *Capture) Pos() staging.Pos {
	c.drain()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos
}

// stop ends replication of this database, loudly. Staged history stays and
// is still uploaded: it is valid up to here. Called with mu held.
func (c *Capture) stop(err error) {
	if c.state == StateStopped {
		return
	}
	c.state, c.err = StateStopped, err
	c.logger.Error("replication stopped", "reason", err)
}

// fail is stop for callers that do not hold mu (the uploader).
func (c *Capture) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stop(err)
}

// onCommit is the tracker's callback, called with mu held.
func (c *Capture) onCommit(txn *wal.Txn) error {
	switch c.state {
	case StateWaiting:
		return c.startReplicating(txn)
	case StateReplicating:
		return c.stageTxn(txn)
	}
	return nil
}

// stageTxn turns a committed transaction into a record in staging.
func (c *Capture) stageTxn(txn *wal.Txn) error {
	if txn.PageSize != c.sums.PageSize() {
		c.stop(fmt.Errorf("database %s changed page size from %d to %d while replicating", c.name, c.sums.PageSize(), txn.PageSize))
		return nil
	}
	start := c.now()
	pre := c.sums.Checksum()
	c.sums.Apply(txn.Pages, txn.Commit, &c.undo)
	txid := c.pos.TXID + 1
	hdr := ltx.Header{
		Version:          ltx.Version,
		PageSize:         txn.PageSize,
		Commit:           txn.Commit,
		MinTXID:          txid,
		MaxTXID:          txid,
		Timestamp:        start.UnixMilli(),
		PreApplyChecksum: pre,
		WALOffset:        txn.Offset,
		WALSize:          txn.Size,
		WALSalt1:         txn.Salt1,
		WALSalt2:         txn.Salt2,
	}
	if c.overflowed || c.overCap(txn, txid) {
		// Not staged: the new snapshot will hold it. The app's commit
		// never waits for room.
		c.pos = staging.PosOf(hdr, c.sums.Checksum())
		c.posDirty = true
		c.indexPages(txn.Pages)
		c.unsent.push(txid, start)
		c.up.staged()
		return nil
	}
	pos, err := c.stage.Append(hdr, c.sums.Checksum(), txn.Pages)
	if err != nil {
		c.sums.Undo(&c.undo)
		return err
	}
	c.pos = pos
	c.posDirty = true
	c.indexPages(txn.Pages)
	c.unsent.push(txid, start)
	c.up.staged()
	return nil
}

func (c *Capture) indexPages(pages []wal.Page) {
	for _, p := range pages {
		c.walIndex[p.Pgno] = p.Offset
	}
}

// startReplicating handles a database's first WAL commit: the database
// file plus this transaction's pages become a snapshot.
func (c *Capture) startReplicating(txn *wal.Txn) error {
	txid := c.nextSnapshotTXID()
	db, err := openIfExists(c.path)
	if err != nil {
		return err
	}
	if db != nil {
		defer db.Close()
	}
	overlay := make(map[uint32][]byte, len(txn.Pages))
	for _, p := range txn.Pages {
		overlay[p.Pgno] = p.Data
	}
	page := func(pgno uint32, buf []byte) ([]byte, error) {
		if data, ok := overlay[pgno]; ok {
			return data, nil
		}
		return buf, readPage(db, pgno, buf)
	}
	if size := int64(txn.Commit) * int64(txn.PageSize); !fitsStaged(c.maxStaged, c.stage.Bytes(), size) {
		// Too large to stage (a big database file the app put there before
		// its first WAL commit): track its state; the uploader streams it.
		sums, err := encodeSnapshot(io.Discard, txid, txn.PageSize, txn.Commit, page, c.now(), nil)
		if err != nil {
			return fmt.Errorf("first snapshot of %s: %w", c.name, err)
		}
		if err := c.deferSnapshot(txid, sums, size); err != nil {
			return err
		}
	} else {
		sums, err := c.snapshot(txid, txn.PageSize, txn.Commit, page)
		if err != nil {
			return fmt.Errorf("first snapshot of %s: %w", c.name, err)
		}
		c.sums = sums
		c.up.snapshotStaged(txid)
	}
	c.unsent.push(txid, c.now())
	c.indexPages(txn.Pages)
	c.pos = staging.Pos{TXID: txid, Checksum: c.sums.Checksum(), WALSalt1: txn.Salt1, WALSalt2: txn.Salt2, WALOffset: txn.Offset, WALSize: txn.Size}
	c.posDirty = true
	c.state = StateReplicating
	c.logger.Info("replicating new database", "snapshot_txid", txid)
	c.up.staged()
	return nil
}

// nextSnapshotTXID keeps TXIDs from ever going back on one replica path.
// Called with mu held.
func (c *Capture) nextSnapshotTXID() ltx.TXID {
	return max(c.pos.TXID, c.up.replicaTXID()) + 1
}

// close makes staging and the position durable and closes staging. The
// queue must be closed.
func (c *Capture) close() error {
	close(c.closed) // waiting durable commits get an I/O error now
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.stage.Sync()
	// Staging that could not be written or synced must not be claimed by a
	// durable position: start-up would skip those commits in the WAL.
	if err == nil {
		err = c.stage.WritePos(c.pos, true)
	}
	if cerr := c.stage.Close(); err == nil {
		err = cerr
	}
	return err
}
