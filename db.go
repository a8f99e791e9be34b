package litefs

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/staging"
	"github.com/litefs-dev/litefs/wal"
)

// DBState says whether a database is being replicated.
type DBState int

const (
	// StateWaiting: the database does not exist yet (or has never been in
	// WAL mode); replication starts at its first WAL commit.
	StateWaiting DBState = iota
	// StateReplicating: every WAL commit becomes a staged segment.
	StateReplicating
	// StateStopped: replication stopped (left WAL mode, or an error that
	// makes the history untrustworthy); Err says why.
	StateStopped
)

func (s DBState) String() string {
	return [...]string{"waiting", "replicating", "stopped"}[s]
}

// DB is one replicated database. The filesystem calls its fs.DB methods for
// every operation on the database's WAL; the tracker turns them into
// committed transactions, which become LTX segments in staging, which the
// uploader sends to the replica.
type DB struct {
	name         string // relative to the data dir
	path         string // the real file in the data dir
	client       replica.ReplicaClient
	logger       *slog.Logger
	now          func() time.Time
	stage        *staging.Log
	syncInterval time.Duration
	allowEmpty   bool

	// notify wakes the uploader when a segment was staged.
	notify chan struct{}

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
	sums     *pageSums
	pos      staging.Pos // the last staged transaction
	state    DBState
	err      error
	undo     sumUndo
	posDirty bool // pos changed since the last durable pos write

	flushMu sync.Mutex // one freeze and upload pass at a time
	// retentionDue: a snapshot was uploaded since retention last ran, at
	// retentionSince. Guarded by flushMu.
	retentionDue   bool
	retentionSince time.Time
	repMu          sync.Mutex
	replicaPos     staging.Pos // what the replica holds (max TXID)

	// walIndex maps each page committed in the current WAL generation to the
	// frame holding its latest version: a snapshot overlays them on the
	// database file. Guarded by mu.
	walIndex map[uint32]int64

	// Owned by the uploader goroutine (Run, Flush).
	leaser        replica.Leaser // nil: no fencing
	owner         string
	leaseTTL      time.Duration
	lease         *replica.Lease
	leasedBefore  bool // we held the lease on this replica since start-up
	snapInterval  time.Duration
	retention     time.Duration
	snap          snapshotInfo // the newest snapshot in the replica
	uploadedSince int64        // bytes uploaded since that snapshot
	needRebase    atomic.Bool  // staging must restart from a new snapshot
	snapMismatch  atomic.Int32 // snapshots in a row that did not match the tracked checksum
	mountPath     atomic.Pointer[string]

	leaseWait atomic.Pointer[leaseWaitError] // set while another writer holds the lease

	Metrics Metrics
}

// Name is the database's path relative to the data dir.
func (d *DB) Name() string { return d.name }

// State returns the replication state and, when stopped, why.
func (d *DB) State() (DBState, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state, d.err
}

// Pos is the last staged position, once every write already in the WAL was
// applied.
func (d *DB) Pos() staging.Pos {
	d.drain()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pos
}

// ReplicaPos is the newest position the replica confirmed.
func (d *DB) ReplicaPos() staging.Pos {
	d.repMu.Lock()
	defer d.repMu.Unlock()
	return d.replicaPos
}

// stop ends replication of this database, loudly. Staged history stays and
// is still uploaded: it is valid up to here.
func (d *DB) stop(err error) {
	if d.state == StateStopped {
		return
	}
	d.state, d.err = StateStopped, err
	d.logger.Error("replication stopped", "reason", err)
}

// onCommit is the tracker's callback, called with d.mu held.
func (d *DB) onCommit(txn *wal.Txn) error {
	switch d.state {
	case StateWaiting:
		return d.startReplicating(txn)
	case StateReplicating:
		return d.stageTxn(txn)
	}
	return nil
}

// stageTxn turns a committed transaction into an LTX segment in staging.
func (d *DB) stageTxn(txn *wal.Txn) error {
	if txn.PageSize != d.sums.pageSize {
		d.stop(fmt.Errorf("database %s changed page size from %d to %d while replicating", d.name, d.sums.pageSize, txn.PageSize))
		return nil
	}
	start := d.now()
	pre := d.sums.Checksum()
	d.sums.apply(txn.Pages, txn.Commit, &d.undo)
	txid := d.pos.TXID + 1
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
	pos, err := d.stage.Append(hdr, d.sums.Checksum(), txn.Pages)
	if err != nil {
		d.sums.undo(&d.undo)
		return err
	}
	d.pos = pos
	d.posDirty = true
	d.indexPages(txn.Pages)
	d.Metrics.unsent.push(txid, start)
	d.wake()
	return nil
}

func (d *DB) indexPages(pages []wal.Page) {
	for _, p := range pages {
		d.walIndex[p.Pgno] = p.Offset
	}
}

func (d *DB) wake() {
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

// startReplicating handles a database's first WAL commit: the database
// file plus this transaction's pages become a snapshot.
func (d *DB) startReplicating(txn *wal.Txn) error {
	txid := d.nextSnapshotTXID()
	db, err := openIfExists(d.path)
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
	sums, err := d.snapshot(txid, txn.PageSize, txn.Commit, func(pgno uint32, buf []byte) ([]byte, error) {
		if data, ok := overlay[pgno]; ok {
			return data, nil
		}
		return buf, readPage(db, pgno, buf)
	})
	if err != nil {
		return fmt.Errorf("first snapshot of %s: %w", d.name, err)
	}
	d.sums = sums
	d.noteSnapshot(txid)
	d.Metrics.unsent.push(txid, d.now())
	d.indexPages(txn.Pages)
	d.pos = staging.Pos{TXID: txid, Checksum: sums.Checksum(), WALSalt1: txn.Salt1, WALSalt2: txn.Salt2, WALOffset: txn.Offset, WALSize: txn.Size}
	d.posDirty = true
	d.state = StateReplicating
	d.logger.Info("replicating new database", "snapshot_txid", txid)
	d.wake()
	return nil
}

// nextSnapshotTXID keeps TXIDs from ever going back on one replica path.
func (d *DB) nextSnapshotTXID() ltx.TXID {
	txid := d.pos.TXID
	if r := d.ReplicaPos(); r.TXID > txid {
		txid = r.TXID
	}
	return txid + 1
}

// ErrFenced is in the error State reports once another writer owns the
// replica and this database stopped uploading.
var ErrFenced = errors.New("fenced")

// SetMountPath tells the database where the app sees it through the FUSE
// mount ("" once unmounted): a snapshot pins the WAL there with a read lock,
// as a reader would.
func (d *DB) SetMountPath(p string) {
	if p == "" {
		d.mountPath.Store(nil)
		return
	}
	d.mountPath.Store(&p)
}

// Path is the database file in the data dir.
func (d *DB) Path() string { return d.path }

// StagingBytes is what staging holds that the replica has not confirmed.
func (d *DB) StagingBytes() int64 { return d.stage.Bytes() }
