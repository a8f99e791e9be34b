package e2e

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/checksum"

	"github.com/litefs-dev/litefs/staging"

	"github.com/litefs-dev/litefs/internal/daemon"
	"github.com/litefs-dev/litefs/internal/testenv"

	_ "github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/wal"
)

// env is one data dir, mount dir and file replica, with a daemon in this
// process.
type env struct {
	t          *testing.T
	root       string
	dataDir    string
	mountDir   string
	replicaDir string
	syncInt    string
	extra      string // extra [[dbs]] keys
	httpExtra  string // extra [http] keys
	procAddr   string // HTTP address of the daemon startProcess ran
	dm         *daemon.Daemon
}

func newEnv(t *testing.T, syncInterval string) *env {
	t.Helper()
	testenv.RequireFUSE(t)
	root := t.TempDir()
	e := &env{t: t, root: root, dataDir: filepath.Join(root, "data"), mountDir: filepath.Join(root, "mnt"),
		replicaDir: filepath.Join(root, "replica"), syncInt: syncInterval}
	for _, d := range []string{e.dataDir, e.mountDir, e.replicaDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) configText() string {
	return testenv.Config{
		FUSEDir: e.mountDir, DataDir: e.dataDir, HTTPAddr: "127.0.0.1:0", HTTPExtra: e.httpExtra, DBExtra: e.extra,
		Replica: testenv.Replica{URL: "file://" + e.replicaDir, SyncInterval: e.syncInt},
	}.TOML()
}

func (e *env) config() *config.Config {
	e.t.Helper()
	cfg, err := config.Parse("test.toml", e.configText())
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

// logTo captures a daemon's log (and echoes it with -v).
func logTo(w io.Writer) *slog.Logger {
	if testing.Verbose() {
		w = io.MultiWriter(w, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start mounts; the daemon is shut down at cleanup if the test did not.
func (e *env) start() *daemon.Daemon {
	e.t.Helper()
	dm := daemon.New(e.config(), testLogger(e.t))
	if err := dm.Start(context.Background()); err != nil {
		e.t.Fatalf("start daemon: %v", err)
	}
	e.dm = dm
	e.t.Cleanup(func() {
		if e.dm == dm {
			e.stop()
		}
	})
	return dm
}

func (e *env) stop() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.dm.Shutdown(ctx); err != nil {
		e.t.Errorf("shutdown: %v", err)
	}
	e.dm = nil
}

func (e *env) db() *litefs.DB { return e.dm.DBs()[0] }

// open opens the database through the mount.
func (e *env) open(params string) *sql.DB {
	e.t.Helper()
	return openDB(e.t, filepath.Join(e.mountDir, "db"), params)
}

func openDB(t testing.TB, path, params string) *sql.DB {
	t.Helper()
	dsn := "file:" + path + "?_busy_timeout=10000"
	if params != "" {
		dsn += "&" + params
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t testing.TB, db interface {
	Exec(string, ...any) (sql.Result, error)
}, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// flush uploads everything staged and returns the position.
func (e *env) flush() staging.Pos {
	e.t.Helper()
	if err := e.db().Flush(context.Background()); err != nil {
		e.t.Fatalf("flush: %v", err)
	}
	st, err := e.db().State()
	if st != litefs.StateReplicating {
		e.t.Fatalf("database state %s: %v", st, err)
	}
	pos := e.db().Pos()
	if r := e.db().ReplicaPos(); r.TXID != pos.TXID || r.Checksum != pos.Checksum {
		e.t.Fatalf("after flush replica at %d/%s, staged at %d/%s", r.TXID, r.Checksum, pos.TXID, pos.Checksum)
	}
	return pos
}

func (e *env) client() replica.ReplicaClient { return file.NewClient(e.replicaDir) }

// restore rebuilds the database from the replica into a new file.
func (e *env) restore(txid ltx.TXID) (string, ltx.Pos) {
	e.t.Helper()
	out := filepath.Join(e.t.TempDir(), "restored.db")
	pos, err := replica.Restore(context.Background(), e.client(), replica.RestoreOptions{OutputPath: out, TXID: txid})
	if err != nil {
		e.t.Fatalf("restore: %v", err)
	}
	return out, pos
}

// verify flushes, restores the latest state and compares it with the live
// database: integrity, content row for row, and the rolling checksum.
func (e *env) verify(live *sql.DB) {
	e.t.Helper()
	pos := e.flush()
	if live := e.liveChecksum(); live != pos.Checksum {
		e.t.Fatalf("live database checksum %s, tracked %s at TXID %d", live, pos.Checksum, pos.TXID)
	}
	out, rpos := e.restore(0)
	if rpos.TXID != pos.TXID || rpos.PostApplyChecksum != pos.Checksum {
		e.t.Fatalf("restored %d/%s, live %d/%s", rpos.TXID, rpos.PostApplyChecksum, pos.TXID, pos.Checksum)
	}
	sum, err := checksum.DatabaseChecksum(out)
	if err != nil {
		e.t.Fatal(err)
	}
	if sum != pos.Checksum {
		e.t.Fatalf("restored file checksum %s, tracked %s", sum, pos.Checksum)
	}
	restored := openDB(e.t, out, "mode=ro")
	integrity(e.t, restored)
	if got, want := dump(e.t, restored), dump(e.t, live); got != want {
		e.t.Fatalf("restored content differs from live:\nrestored: %.500s\nlive:     %.500s", got, want)
	}
}

func integrity(t testing.TB, db *sql.DB) {
	t.Helper()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check: %q %v", res, err)
	}
}

// dump renders every table's rows in rowid order.
func dump(t testing.TB, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type='table' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	var b strings.Builder
	for _, tbl := range tables {
		fmt.Fprintf(&b, "[%s]", tbl)
		rows, err := db.Query(fmt.Sprintf("SELECT * FROM %q ORDER BY rowid", tbl))
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%v;", vals)
		}
		rows.Close()
	}
	return b.String()
}

// liveChecksum computes the rolling checksum of the live database from the
// data dir: the database file with the WAL's committed transactions laid
// over it. It shares no code with the tracker.
func (e *env) liveChecksum() ltx.Checksum {
	e.t.Helper()
	path := filepath.Join(e.dataDir, "db")
	b, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	pageSize := int(binary.BigEndian.Uint16(b[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	pages := map[uint32][]byte{}
	for i := 0; i+pageSize <= len(b); i += pageSize {
		pages[uint32(i/pageSize)+1] = b[i : i+pageSize]
	}
	commit := uint32(len(b) / pageSize)
	if f, err := os.Open(path + "-wal"); err == nil {
		fi, _ := f.Stat()
		_, _, err := wal.Scan(f, fi.Size(), func(txn *wal.Txn) error {
			for _, p := range txn.Pages {
				pages[p.Pgno] = append([]byte(nil), p.Data...)
			}
			commit = txn.Commit
			return nil
		})
		f.Close()
		if err != nil {
			e.t.Fatal(err)
		}
	}
	var sum ltx.Checksum
	lock := ltx.LockPgno(uint32(pageSize))
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if pgno == lock {
			continue
		}
		data, ok := pages[pgno]
		if !ok {
			data = make([]byte, pageSize)
		}
		sum ^= ltx.ChecksumPage(pgno, data)
	}
	return ltx.ChecksumFlag | sum
}

// queryInt runs a one-integer query on a *sql.DB or a database file's path.
func queryInt(t testing.TB, db any, q string) int64 {
	t.Helper()
	var d *sql.DB
	switch v := db.(type) {
	case *sql.DB:
		d = v
	case string:
		d = openDB(t, v, "mode=ro")
		defer d.Close()
	default:
		t.Fatalf("queryInt: %T", db)
	}
	var n int64
	if err := d.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
