package litefs

import (
	"context"
	"errors"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/staging"
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

// DB is one replicated database: its Capture (the fs.DB hooks, the
// tracker, staging) and its uploader (lease, snapshot policy, retention,
// uploads to the replica). The two share staging and the lag metric; each
// has its own lock.
type DB struct {
	name    string // relative to the data dir
	path    string // the real file in the data dir
	stage   *staging.Log
	capture *Capture
	up      *uploader

	Metrics Metrics
}

// ErrFenced is in the error State reports once another writer owns the
// replica and this database stopped uploading.
var ErrFenced = errors.New("fenced")

// Name is the database's path relative to the data dir.
func (d *DB) Name() string { return d.name }

// Path is the database file in the data dir.
func (d *DB) Path() string { return d.path }

// Capture is what the FUSE loopback calls (it implements fs.DB).
func (d *DB) Capture() *Capture { return d.capture }

// State returns the replication state and, when stopped, why.
func (d *DB) State() (DBState, error) { return d.capture.State() }

// Pos is the last staged position, once every write already in the WAL was
// applied.
func (d *DB) Pos() staging.Pos { return d.capture.Pos() }

// ReplicaPos is the newest position the replica confirmed.
func (d *DB) ReplicaPos() staging.Pos { return d.up.ReplicaPos() }

// Waiting is how many commits wait for the replica (durability "replica"
// or "replica-on-fsync") and how long the oldest has waited.
func (d *DB) Waiting(now time.Time) (int, time.Duration) { return d.capture.waits.Waiting(now) }

// Durability is the database's durability mode.
func (d *DB) Durability() Durability { return d.capture.durability }

// StagingBytes is what staging holds that the replica has not confirmed.
func (d *DB) StagingBytes() int64 { return d.stage.Bytes() }

// SetMountPath tells the database where the app sees it through the FUSE
// mount ("" once unmounted): a snapshot pins the WAL there with a read lock,
// as a reader would.
func (d *DB) SetMountPath(p string) {
	if p == "" {
		d.up.mountPath.Store(nil)
		return
	}
	d.up.mountPath.Store(&p)
}

// RefuseWrites makes every later WAL change fail; the ones already made are
// applied and staged. The daemon calls it first on shutdown: a commit
// acknowledged after it could not be uploaded before the process exits.
func (d *DB) RefuseWrites() { d.capture.refuseWrites() }

// Run uploads staged segments until ctx ends (see uploader.Run).
func (d *DB) Run(ctx context.Context) { d.up.Run(ctx) }

// Flush uploads everything staged now (see uploader.Flush).
func (d *DB) Flush(ctx context.Context) error { return d.up.Flush(ctx) }

// Snapshot takes a snapshot of the current state now (as snapshot-interval
// would) and returns its TXID: staged for the next upload, or streamed to
// the replica at once when it would not fit under staging-max-bytes.
func (d *DB) Snapshot(ctx context.Context) (ltx.TXID, error) { return d.up.Snapshot(ctx) }

// Close releases the lease and makes staging and the position durable. The
// uploader must have stopped.
func (d *DB) Close(ctx context.Context) error {
	d.capture.closeQueue()
	err := d.up.releaseLease(ctx)
	if cerr := d.capture.close(); err == nil {
		err = cerr
	}
	return err
}
