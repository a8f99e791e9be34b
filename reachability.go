package litefs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/superfly/ltx"
)

// replicaStartTimeout bounds the replica read at start-up: a replica that
// hangs must not keep the mount, and so the app, down.
const replicaStartTimeout = 10 * time.Second

// outageLogEvery is how often a continuing outage is logged again (with how
// long it has lasted); the retries in between log at debug level.
const outageLogEvery = time.Minute

// unknownReplica is what start-up knew when it could not read the replica:
// the daemon mounted on the volume's own position, and the uploader learns
// the replica's before its first upload (learnReplica).
type unknownReplica struct {
	startTXID  ltx.TXID // the capture's position at start-up
	dbMissing  bool     // the database did not exist at start-up
	allowEmpty bool
}

// learnReplica reads the replica the first time it answers after a start-up
// that could not. It does what start-up would have done had the replica
// answered then:
//   - the replica is at or behind the volume: carry on (the volume's staged
//     objects follow what the replica holds);
//   - the replica moved past the volume's position (another writer, or a
//     restore elsewhere): a new snapshot continues its TXIDs, as when another
//     writer advanced it while we waited for the lease;
//   - the database did not exist at start-up and the replica holds a
//     history: start-up would have said "run restore first"; now the app has
//     written a new database, so uploads stop (nothing was uploaded) and the
//     error says how to choose, unless allow-empty-db allows a new history.
//
// Called with flushMu held.
func (u *uploader) learnReplica(ctx context.Context) error {
	k := u.unknown
	remote, snap, since, err := replicaState(ctx, u.client)
	if err != nil {
		return fmt.Errorf("read replica (unreachable since start-up): %w", err)
	}
	u.unknown = nil
	u.mu.Lock()
	if snap.TXID > u.snap.TXID {
		u.snap, u.uploadedSince = snap, since
	}
	u.mu.Unlock()
	if remote.TXID == 0 {
		u.logger.Info("replica reachable: it is empty; uploading the volume's history")
		return nil
	}
	if k.dbMissing && !k.allowEmpty {
		return fmt.Errorf("%w: database %s did not exist at start-up and was created while the replica was unreachable, "+
			"but the replica holds a history up to TXID %s: uploads stopped, nothing was uploaded. To keep the replica's "+
			"history, stop the app, move the new database aside and run `litefs restore`; to replace it with the new "+
			"database, set allow-empty-db = true and restart", ErrFenced, u.capture.path, remote.TXID)
	}
	u.repMu.Lock()
	u.replicaPos = remote
	u.repMu.Unlock()
	if remote.TXID > k.startTXID {
		u.logger.Warn("replica reachable: it moved past this volume's position while unreachable; taking a new snapshot that continues its TXIDs",
			"replica_txid", remote.TXID, "volume_txid", k.startTXID)
		u.needRebase.Store(true)
		return nil
	}
	u.logger.Info("replica reachable", "replica_txid", remote.TXID)
	return nil
}

// outage tracks a run of failed uploads so the log says once that the
// replica is unreachable, then once a minute how long it has been, and once
// when it answers again. Owned by the goroutine in Run.
type outage struct {
	since, logged time.Time
}

func (o *outage) failed(log *slog.Logger, now time.Time, staged int64, err error, retryIn time.Duration) {
	switch {
	case o.since.IsZero():
		o.since, o.logged = now, now
		log.Warn("replica unreachable; staging holds the commits and uploads resume when it answers (the app is not affected)",
			"err", err, "staged_bytes", staged, "retry_in", retryIn.Round(time.Millisecond))
	case now.Sub(o.logged) >= outageLogEvery:
		o.logged = now
		log.Warn("replica still unreachable", "for", now.Sub(o.since).Round(time.Second), "staged_bytes", staged, "err", err)
	default:
		log.Debug("upload failed; will retry", "err", err, "retry_in", retryIn.Round(time.Millisecond))
	}
}

func (o *outage) ended(log *slog.Logger, now time.Time) {
	if o.since.IsZero() {
		return
	}
	log.Info("replica reachable again; staging uploaded", "after", now.Sub(o.since).Round(time.Millisecond))
	o.since = time.Time{}
}
