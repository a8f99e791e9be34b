package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/fs"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/backends"
)

// Daemon is `litefs mount`: it opens every configured database (the start-up
// sequence), mounts the FUSE dir, runs one uploader per database and serves
// HTTP. Shutdown flushes staging and unmounts.
type Daemon struct {
	cfg    *config.Config
	logger *slog.Logger

	dbs    []*litefs.DB
	server *fs.Server
	http   *http.Server
	ln     net.Listener

	// Now is the clock the databases use (tests move it); nil = time.Now.
	Now func() time.Time

	lock   *dataDirLock
	ops    *opHistogram // nil with [fuse] op-metrics = false
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	mounted bool
}

// New returns a daemon for cfg; Start opens and mounts.
func New(cfg *config.Config, logger *slog.Logger) *Daemon {
	dm := &Daemon{cfg: cfg, logger: logger}
	if cfg.FUSE.OpMetrics == nil || *cfg.FUSE.OpMetrics {
		dm.ops = newOpHistogram()
	}
	return dm
}

// DBs returns the replicated databases, in config order.
func (dm *Daemon) DBs() []*litefs.DB { return dm.dbs }

// HTTPAddr is the address the HTTP server listens on ("" when off).
func (dm *Daemon) HTTPAddr() string {
	if dm.ln == nil {
		return ""
	}
	return dm.ln.Addr().String()
}

// Start runs the start-up sequence and mounts. On error nothing is left
// mounted or running.
func (dm *Daemon) Start(ctx context.Context) (err error) {
	cfg := dm.cfg
	if fi, err := os.Stat(cfg.Data.Dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("data.dir %s does not exist: create it, or mount the volume there", cfg.Data.Dir)
	}
	if err := os.MkdirAll(cfg.FUSE.Dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create fuse.dir: %w", err)
	}
	// The lock comes before anything reads or writes staging.
	lock, err := lockDataDir(cfg.Data.Dir)
	if err != nil {
		return err
	}
	dm.lock = lock
	// Before the databases open: a Litestream user's database still in
	// fuse.dir must be named as such, not met with "run restore first".
	if err := fs.CheckMountDir(cfg.FUSE.Dir, cfg.Data.Dir, dm.logger); err != nil {
		lock.release()
		return err
	}
	defer func() {
		if err != nil {
			for _, db := range dm.dbs {
				_ = db.Close(context.Background())
			}
			dm.lock.release()
		}
	}()
	owner, err := litefs.VolumeID(cfg.Data.Dir)
	if err != nil {
		return err
	}
	fsdbs := map[string]fs.DB{}
	for _, dc := range cfg.DBs {
		name, err := cfg.RelPath(dc.Path)
		if err != nil {
			return err
		}
		durability, err := litefs.ParseDurability(dc.Replica.Durability)
		if err != nil {
			return fmt.Errorf("database %s: %w", dc.Path, err)
		}
		client, err := backends.NewClient(ctx, dc.Replica.URL, dc.Replica.Settings())
		if err != nil {
			return fmt.Errorf("database %s: %w", dc.Path, err)
		}
		db, err := litefs.OpenDB(ctx, litefs.DBOptions{
			Name: name, DataDir: cfg.Data.Dir, Client: client,
			SyncInterval: time.Duration(*dc.Replica.SyncInterval),
			AllowEmptyDB: dc.AllowEmptyDB, Logger: dm.logger, Owner: owner, Now: dm.Now,
			LeaseTTL:         time.Duration(dc.Replica.LeaseTTL),
			SnapshotInterval: time.Duration(dc.Replica.SnapshotInterval),
			Retention:        time.Duration(dc.Replica.Retention),
			StagingMaxBytes:  int64(dc.Replica.StagingMaxBytes),
			Durability:       durability,
		})
		if err != nil {
			return err
		}
		dm.dbs = append(dm.dbs, db)
		fsdbs[name] = db.Capture()
	}
	if cfg.HTTP.Addr != "" && cfg.HTTP.Addr != "off" {
		ln, err := net.Listen("tcp", cfg.HTTP.Addr)
		if err != nil {
			return fmt.Errorf("http.addr %s: %w", cfg.HTTP.Addr, err)
		}
		dm.ln = ln
		dm.http = &http.Server{Handler: dm.handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = dm.http.Serve(ln) }()
	}
	server, err := fs.Mount(fs.Options{
		DataDir: cfg.Data.Dir, MountDir: cfg.FUSE.Dir, DBs: fsdbs,
		AllowOther: *cfg.FUSE.AllowOther, Passthrough: *cfg.FUSE.Passthrough,
		Debug: cfg.FUSE.Debug, Logger: dm.logger, ObserveOp: dm.observeOp(),
	})
	if err != nil {
		if dm.http != nil {
			_ = dm.http.Close()
		}
		return err
	}
	dm.server = server
	for _, db := range dm.dbs {
		db.SetMountPath(filepath.Join(cfg.FUSE.Dir, filepath.FromSlash(db.Name())))
	}
	dm.mu.Lock()
	dm.mounted = true
	dm.mu.Unlock()

	runCtx, cancel := context.WithCancel(context.Background())
	dm.cancel = cancel
	for _, db := range dm.dbs {
		dm.wg.Add(1)
		go func() {
			defer dm.wg.Done()
			db.Run(runCtx)
		}()
	}
	dm.logger.Info("mounted", "fuse_dir", cfg.FUSE.Dir, "data_dir", cfg.Data.Dir, "http", dm.HTTPAddr())
	return nil
}

// Shutdown stops the uploaders, unmounts, uploads what staging still holds
// (bounded by ctx), and makes staging durable. Whatever could not be
// uploaded stays staged for the next start.
func (dm *Daemon) Shutdown(ctx context.Context) error {
	// From here on the WAL refuses writes: a commit acknowledged now could
	// not be uploaded before we exit, and the app must not believe it safe.
	for _, db := range dm.dbs {
		db.RefuseWrites()
	}
	if dm.cancel != nil {
		dm.cancel()
	}
	dm.wg.Wait()
	var errs []error
	for _, db := range dm.dbs {
		db.SetMountPath("")
	}
	if dm.server != nil {
		if err := dm.server.Unmount(); err != nil {
			errs = append(errs, fmt.Errorf("unmount: %w", err))
		}
		dm.mu.Lock()
		dm.mounted = false
		dm.mu.Unlock()
	}
	for _, db := range dm.dbs {
		if err := dm.flushUntil(ctx, db); err != nil {
			errs = append(errs, fmt.Errorf("flush %s: %d bytes left in staging for the next start: %w", db.Name(), db.StagingBytes(), err))
		}
		if err := db.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", db.Name(), err))
		}
	}
	if dm.http != nil {
		_ = dm.http.Close()
	}
	dm.lock.release()
	return errors.Join(errs...)
}

// defaultDurableWaitLimit: how long a durable commit may wait before
// /readyz says not ready, when readiness-max-lag is unset.
const defaultDurableWaitLimit = 10 * time.Second

// Ready reports whether the daemon serves its purpose: mounted, and no
// database fenced or out of WAL mode. An S3 outage alone is not unready.
func (dm *Daemon) Ready() error {
	dm.mu.Lock()
	mounted := dm.mounted
	dm.mu.Unlock()
	if !mounted {
		return errors.New("not mounted")
	}
	maxLag := time.Duration(dm.cfg.HTTP.ReadinessMaxLag)
	for _, db := range dm.dbs {
		if st, err := db.State(); st == litefs.StateStopped {
			return fmt.Errorf("database %s: %v", db.Name(), err)
		}
		if lag := db.Lag(time.Now()); maxLag > 0 && lag > maxLag {
			return fmt.Errorf("database %s: replication lag %s exceeds readiness-max-lag %s", db.Name(), lag.Round(time.Millisecond), maxLag)
		}
		// A durable commit that waits blocks the app: not ready once it
		// waited readiness-max-lag (10 s when unset).
		if n, oldest := db.Waiting(time.Now()); n > 0 {
			limit := maxLag
			if limit <= 0 {
				limit = defaultDurableWaitLimit
			}
			if oldest > limit {
				return fmt.Errorf("database %s: %d durable commit(s) waiting for the replica, the oldest for %s", db.Name(), n, oldest.Round(time.Millisecond))
			}
		}
	}
	return nil
}

// flushUntil uploads what db has staged, retrying with backoff until ctx
// ends: a flush that fails once at SIGTERM (an S3 hiccup) must not leave
// everything staged while shutdown-timeout has time left. It gives up at
// once when retrying cannot help: another writer holds the lease, or the
// database is fenced.
func (dm *Daemon) flushUntil(ctx context.Context, db *litefs.DB) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := db.Flush(ctx)
		if err == nil || errors.Is(err, replica.ErrLeaseHeld) || errors.Is(err, litefs.ErrFenced) || ctx.Err() != nil {
			return err
		}
		dm.logger.Warn("shutdown: upload failed; retrying until shutdown-timeout",
			"db", db.Name(), "attempt", attempt, "staged_bytes", db.StagingBytes(), "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last upload error: %v)", ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (dm *Daemon) observeOp() func(fs.Op, time.Duration) {
	if dm.ops == nil {
		return nil
	}
	return dm.ops.observe
}
