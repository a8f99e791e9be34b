package bench

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/daemon"
	"github.com/litefs-dev/litefs/internal/testenv"

	_ "github.com/mattn/go-sqlite3"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/fs"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// target is one place a benchmark opens its database.
type target struct {
	name string
	path string // database path the app opens
	stop func()
}

// settle starts a benchmark from a quiet machine: what earlier ones left
// dirty (gigabytes, after the large ones) is written back, so it does not
// land in this one's fsyncs, and their garbage is collected, so that the
// in-process daemons measured here do not pay for it in GC assists.
func settle() {
	syscall.Sync()
	runtime.GC()
	debug.FreeOSMemory()
}

func nativeTarget(b *testing.B) target {
	dir := b.TempDir()
	return target{name: "native", path: filepath.Join(dir, "db"), stop: func() {}}
}

// nullDB sees the WAL's operations and does nothing with them: the FUSE
// path of a replicated WAL (no passthrough, direct_io) without replication.
type nullDB struct{}

func (nullDB) WriteWAL(off int64, p []byte, write func() (int, error)) (int, error) { return write() }
func (nullDB) TruncateWAL(size int64, truncate func() error) error                  { return truncate() }
func (nullDB) SyncWAL(sync func() error) error                                      { return sync() }
func (nullDB) RemoveWAL(remove func() error) error                                  { return remove() }
func (nullDB) JournalCreated()                                                      {}

// loopbackTarget is the same FUSE filesystem with replication off: the WAL
// still reaches the daemon (as it must to be replicated), nothing tracks it.
func loopbackTarget(b *testing.B, passthrough bool) target {
	testenv.RequireFUSE(b)
	dir := b.TempDir()
	data, mnt := filepath.Join(dir, "data"), filepath.Join(dir, "mnt")
	os.MkdirAll(data, 0o755)
	os.MkdirAll(mnt, 0o755)
	srv, err := fs.Mount(fs.Options{DataDir: data, MountDir: mnt, Passthrough: passthrough, Logger: quiet,
		DBs: map[string]fs.DB{"db": nullDB{}}})
	if err != nil {
		b.Fatal(err)
	}
	return target{name: "loopback", path: filepath.Join(mnt, "db"), stop: func() { srv.Unmount() }}
}

// litefsTarget is the daemon replicating to a file replica.
func litefsTarget(b *testing.B, passthrough bool, syncInterval string) (target, *daemon.Daemon) {
	return litefsTargetWith(b, passthrough, syncInterval, "")
}

// litefsTargetWith is litefsTarget with more [fuse] keys.
func litefsTargetWith(b *testing.B, passthrough bool, syncInterval, fuseExtra string) (target, *daemon.Daemon) {
	testenv.RequireFUSE(b)
	dir := b.TempDir()
	cfg, err := config.Parse("bench.toml", testenv.Config{
		FUSEDir: filepath.Join(dir, "mnt"), Passthrough: testenv.Bool(passthrough), FUSEExtra: fuseExtra, DataDir: filepath.Join(dir, "data"), HTTPAddr: "off",
		Replica: testenv.Replica{URL: "file://" + filepath.Join(dir, "replica"), SyncInterval: syncInterval},
	}.TOML())
	if err != nil {
		b.Fatal(err)
	}
	os.MkdirAll(cfg.Data.Dir, 0o755)
	dm := daemon.New(cfg, quiet)
	if err := dm.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	return target{name: "litefs", path: filepath.Join(dir, "mnt", "db"), stop: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dm.Shutdown(ctx)
	}}, dm
}

func open(b *testing.B, path, sync string) *sql.DB {
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000&_synchronous="+sync)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		b.Fatal(err)
	}
	return db
}

// latencies summarises per-operation durations.
type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := append(latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(p*float64(len(s)-1))]
}
