package litefs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/checksum"
	"github.com/litefs-dev/litefs/internal/vfs"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/staging"
	"github.com/litefs-dev/litefs/wal"
)

// DBOptions says where a database lives and where it replicates to.
type DBOptions struct {
	Name         string // path relative to the data dir, slash-separated
	DataDir      string
	Client       replica.ReplicaClient
	SyncInterval time.Duration
	AllowEmptyDB bool
	// Owner is this volume's id for the replica lease (see VolumeID).
	Owner            string
	LeaseTTL         time.Duration
	SnapshotInterval time.Duration
	Retention        time.Duration
	// StagingMaxBytes caps staging (0: no cap): see overflow.go.
	StagingMaxBytes int64
	// Durability says when a commit is answered (durable.go).
	Durability Durability
	Logger     *slog.Logger
	Now        func() time.Time // nil = time.Now
}

// OpenDB runs the start-up sequence (docs/design.md, "Start-up") for one database before the
// filesystem is mounted, while the daemon alone owns its files:
//  1. the position is the newest of staging's pos file, staging's segments
//     and the replica's newest object;
//  2. a missing database waits for the app to create it, unless the replica
//     holds data (then "run restore first", unless AllowEmptyDB);
//  3. valid WAL commits past the position are staged first, so a crash
//     between the WAL write and staging loses nothing and costs no snapshot;
//  4. the WAL is checkpointed into the database file, whose checksum is
//     compared with the position: equal resumes the history, different takes
//     a new snapshot 1-<N+1>.
func OpenDB(ctx context.Context, opt DBOptions) (*DB, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	logger := opt.Logger.With("db", opt.Name)
	d := &DB{name: opt.Name, path: filepath.Join(opt.DataDir, filepath.FromSlash(opt.Name))}
	stage, stagePos, err := staging.Open(vfs.Default, filepath.Join(opt.DataDir, staging.DirName, filepath.FromSlash(opt.Name)), logger)
	if err != nil {
		return nil, fmt.Errorf("open staging of %s: %w", opt.Name, err)
	}
	d.stage = stage
	u := &uploader{
		name: opt.Name, logger: logger, now: opt.Now, client: opt.Client, stage: stage,
		metrics: &d.Metrics, syncInterval: opt.SyncInterval, notify: make(chan struct{}, 1), urgentCh: make(chan struct{}, 1),
		owner: opt.Owner, leaseTTL: opt.LeaseTTL, snapInterval: opt.SnapshotInterval, retention: opt.Retention,
	}
	if opt.LeaseTTL > 0 {
		l, err := replica.LeaserOf(opt.Client)
		if err != nil {
			logger.Warn("fencing is off, nothing stops a second writer", "reason", err)
		}
		u.leaser = l
	}
	c := &Capture{
		name: opt.Name, path: d.path, logger: logger, now: opt.Now, stage: stage,
		unsent: &d.Metrics.unsent, up: u, walIndex: map[uint32]int64{},
		maxStaged: opt.StagingMaxBytes, durability: opt.Durability,
		durableHist: &d.Metrics.Durable, closed: make(chan struct{}),
	}
	c.tracker = wal.NewTracker(c.onCommit)
	c.queue.cond.L = &c.queue.mu
	c.applyDone = make(chan struct{})
	u.capture = c
	d.capture, d.up = c, u
	if err := d.open(ctx, stagePos, opt.AllowEmptyDB); err != nil {
		stage.Close()
		return nil, err
	}
	go func() {
		defer close(c.applyDone)
		c.applyLoop()
	}()
	return d, nil
}

// open reads where the replica and staging stand, then starts the capture
// from the newest position.
func (d *DB) open(ctx context.Context, stagePos staging.Pos, allowEmpty bool) error {
	u := d.up
	filePos, err := d.stage.ReadPos()
	if err != nil {
		return err
	}
	// An overflow (or a snapshot too large to stage) left staging without
	// the history the replica needs: the next upload is a new snapshot, and
	// nothing is staged until then.
	if _, ok, err := d.stage.ReadOverflow(); err != nil {
		return err
	} else if ok {
		d.capture.overflowed = true
		u.needRebase.Store(true)
	}
	readCtx, cancel := context.WithTimeout(ctx, replicaStartTimeout)
	repPos, snap, since, err := replicaState(readCtx, u.client)
	cancel()
	unreachable := err != nil
	switch {
	case unreachable && (errors.Is(err, replica.ErrRefused) || ctx.Err() != nil):
		return fmt.Errorf("read replica of %s: %w", d.name, err)
	case unreachable:
		// An outage must not keep the app down: mount on the volume's own
		// position; the uploader reads the replica once it answers.
		u.down = outage{since: u.now(), logged: u.now()}
		u.logger.Warn("replica unreachable at start-up: mounting anyway; commits are staged on the volume and uploaded once it answers",
			"err", err)
		// No snapshot falls due while nothing is known: the policy counts
		// from now until the replica's own snapshot is learned.
		snap = snapshotInfo{Time: u.now()}
	}
	u.replicaPos, u.snap, u.uploadedSince = repPos, snap, since
	u.confirmed.advance(repPos.TXID)
	if staged, err := d.stage.Frozen(); err == nil {
		for _, f := range staged {
			if f.Level == replica.SnapshotLevel && f.Max > u.snap.TXID {
				u.snap, u.uploadedSince = snapshotInfo{TXID: f.Max, Time: u.now()}, 0
			}
		}
	}
	if err := d.capture.start(staging.Newer(staging.Newer(filePos, stagePos), repPos), repPos.TXID, allowEmpty); err != nil {
		return err
	}
	if unreachable {
		c := d.capture
		u.unknown = &unknownReplica{startTXID: c.pos.TXID, dbMissing: c.state == StateWaiting, allowEmpty: allowEmpty}
	}
	return nil
}

// start sets the capture at pos: steps 2 to 4 of OpenDB. The replica
// holds up to replicaTXID.
func (c *Capture) start(pos staging.Pos, replicaTXID ltx.TXID, allowEmpty bool) error {
	c.pos = pos
	pageSize, exists, err := checksum.ReadDBHeader(c.path)
	if err != nil {
		return err
	}
	if !exists {
		if replicaTXID > 0 && !allowEmpty {
			return fmt.Errorf("database %s does not exist but its replica holds TXID %d: run `litefs restore` first (or set allow-empty-db = true to start a new history)", c.path, replicaTXID)
		}
		c.state = StateWaiting
		c.logger.Info("database does not exist yet: waiting for the app to create it", "path", c.path)
		return nil
	}

	if pos.TXID > 0 {
		if err := c.recoverWAL(pageSize); err != nil {
			return err
		}
	}
	if err := checkpoint(c.path); err != nil {
		return err
	}
	clear(c.walIndex) // the checkpoint emptied the WAL recovery indexed
	if pageSize, _, err = checksum.ReadDBHeader(c.path); err != nil {
		return err
	}
	sums, err := checksum.SumFile(c.path, pageSize)
	if err != nil {
		return err
	}
	c.state = StateReplicating
	if c.pos.TXID > 0 && sums.Checksum() == c.pos.Checksum {
		c.sums = sums
		c.pos = staging.Pos{TXID: c.pos.TXID, Checksum: c.pos.Checksum}
		c.logger.Info("resuming replication", "txid", c.pos.TXID, "checksum", c.pos.Checksum)
		return c.stage.WritePos(c.pos, true)
	}
	reason := "the replica is empty"
	if c.pos.TXID > 0 {
		reason = fmt.Sprintf("the database (checksum %s) is not the state at TXID %d (checksum %s): it was written behind litefs's back or restored from elsewhere", sums.Checksum(), c.pos.TXID, c.pos.Checksum)
	}
	txid := c.nextSnapshotTXID()
	if size := int64(sums.Pages()) * int64(pageSize); !fitsStaged(c.maxStaged, c.stage.Bytes(), size) {
		c.logger.Info("a new snapshot is needed", "txid", txid, "reason", reason)
		if err := c.deferSnapshot(txid, sums, size); err != nil {
			return err
		}
		c.pos = staging.Pos{TXID: txid, Checksum: sums.Checksum()}
		c.unsent.push(txid, c.now())
		return c.stage.WritePos(c.pos, true)
	}
	c.logger.Info("taking a snapshot", "txid", txid, "reason", reason)
	commit := sums.Pages()
	if c.sums, err = c.snapshotFromDisk(txid, pageSize, commit, nil); err != nil {
		return fmt.Errorf("snapshot %s: %w", c.name, err)
	}
	if c.sums.Checksum() != sums.Checksum() {
		return fmt.Errorf("snapshot %s: database changed while litefs was starting", c.name)
	}
	c.pos = staging.Pos{TXID: txid, Checksum: c.sums.Checksum()}
	c.up.snapshotStaged(txid)
	c.unsent.push(txid, c.now())
	return c.stage.WritePos(c.pos, true)
}

// recoverWAL stages the WAL's commits past the position. Where the WAL
// continues the position's generation (same salts), the position's own
// transaction is found by offset, and the database file plus the WAL's
// transactions up to it must reproduce the position's checksum. Where the
// WAL is a newer generation (a restart, or a new WAL after the last close),
// the barrier before it made the database file hold exactly the position's
// state: its checksum must equal the position's, and every commit in the WAL
// comes after. Anything else stages nothing, and the checksum compare after
// the checkpoint decides.
func (c *Capture) recoverWAL(pageSize uint32) error {
	f, err := os.Open(c.path + "-wal")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("open WAL: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr, _, err := wal.Scan(f, fi.Size(), nil)
	if err != nil || hdr.Magic == 0 {
		return nil // no valid WAL: nothing to recover
	}
	sums, err := checksum.SumFile(c.path, pageSize)
	if err != nil {
		return err
	}
	c.sums = sums
	pos := c.pos
	sameGen := pos.HasWAL() && hdr.Salt1 == pos.WALSalt1 && hdr.Salt2 == pos.WALSalt2
	// A position without its WAL salts cannot tell which generation it saw.
	found := pos.HasWAL() && !sameGen && c.sums.Checksum() == pos.Checksum
	recovered := 0
	_, _, err = wal.Scan(f, fi.Size(), func(txn *wal.Txn) error {
		if found {
			if err := c.stageTxn(txn); err != nil {
				return err
			}
			recovered++
			return nil
		}
		if !sameGen || txn.PageSize != c.sums.PageSize() {
			return errStopScan
		}
		c.sums.Apply(txn.Pages, txn.Commit, &c.undo)
		if txn.Offset == pos.WALOffset {
			if c.sums.Checksum() != pos.Checksum {
				return errStopScan
			}
			found = true
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return fmt.Errorf("recover WAL of %s: %w", c.name, err)
	}
	if recovered > 0 {
		c.logger.Info("staged commits found in the WAL past the last position", "count", recovered, "txid", c.pos.TXID)
	}
	return nil
}

var errStopScan = errors.New("stop scan")

// checkpoint puts the database in WAL mode and moves the whole WAL into the
// database file, so the file alone holds the state.
func checkpoint(path string) error {
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("set WAL mode on %s: %w", path, err)
	}
	if mode != "wal" {
		return fmt.Errorf("database %s cannot be put in WAL mode (journal_mode is %q): litefs replicates only WAL-mode databases", path, mode)
	}
	var busy, logFrames, done int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if busy != 0 {
		return fmt.Errorf("checkpoint %s: database is busy: is another process using it outside litefs?", path)
	}
	return nil
}

// replicaState reads the replica's newest position, its newest snapshot and
// how many bytes of segments came after that snapshot.
func replicaState(ctx context.Context, c replica.ReplicaClient) (staging.Pos, snapshotInfo, int64, error) {
	var best *ltx.FileInfo
	var snap snapshotInfo
	var all []*ltx.FileInfo
	for level := 0; level <= replica.SnapshotLevel; level++ {
		infos, err := c.LTXFiles(ctx, level, 0)
		if err != nil {
			return staging.Pos{}, snap, 0, err
		}
		for _, info := range infos {
			if best == nil || info.MaxTXID > best.MaxTXID {
				best = info
			}
			if level == replica.SnapshotLevel && info.MaxTXID > snap.TXID {
				snap = snapshotInfo{TXID: info.MaxTXID, Time: info.CreatedAt}
			}
		}
		all = append(all, infos...)
	}
	if best == nil {
		return staging.Pos{}, snap, 0, nil
	}
	var since int64
	for _, info := range all {
		if info.Level < replica.SnapshotLevel && info.MinTXID > snap.TXID {
			since += info.Size
		}
	}
	post := best.PostApplyChecksum
	if post == 0 {
		var err error
		if post, err = readRemotePostApply(ctx, c, best); err != nil {
			return staging.Pos{}, snap, 0, err
		}
	}
	return staging.Pos{TXID: best.MaxTXID, Checksum: post}, snap, since, nil
}

func readRemotePostApply(ctx context.Context, c replica.ReplicaClient, info *ltx.FileInfo) (ltx.Checksum, error) {
	rc, err := c.OpenLTXFile(ctx, info.Level, info.MinTXID, info.MaxTXID, info.Size-ltx.TrailerSize, ltx.TrailerSize)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	var b [ltx.TrailerSize]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return 0, fmt.Errorf("read trailer of %s: %w", ltx.FormatFilename(info.MinTXID, info.MaxTXID), err)
	}
	var t ltx.Trailer
	if err := t.UnmarshalBinary(b[:]); err != nil {
		return 0, err
	}
	return t.PostApplyChecksum, nil
}
