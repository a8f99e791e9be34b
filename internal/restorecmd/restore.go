package restorecmd

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/backends"
	"github.com/litefs-dev/litefs/replica/file"
)

const usage = `usage: restore [flags] DB
       restore [flags] -o OUT -replica URL
       restore [flags] -o OUT URL

Rebuilds a database from its replica: the newest snapshot at or before the
target, then every segment after it, each verified, written to a temporary
file and renamed into place.

DB is the path the app sees (under fuse.dir); the database is written to the
matching path under data.dir, or to -o.

Flags:
`

// Run runs the command and returns its exit status: 0 done (or nothing to
// do), 1 failed, 2 a mistake in the command line (as the flag package's).
func Run(ctx context.Context, name string, args []string, stderr io.Writer) int {
	err := run(ctx, name, args, stderr)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFlags):
		return 2 // the flag package printed the error and the usage
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %s (run '%s -h' for the usage)\n", name, err, name)
		return 2
	}
	// replica.Restore's errors already say "restore:".
	fmt.Fprintf(stderr, "%s: %s\n", name, strings.TrimPrefix(err.Error(), "restore: "))
	return 1
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// errFlags stands for a flag the flag package refused (and reported).
var errFlags = errors.New("bad flags")

type options struct {
	config, out, replicaURL, timestamp, txid string
	ifDBNotExists, ifReplicaExists, verbose  bool
	parallelism                              int
	integrityCheck                           bool
}

func run(ctx context.Context, name string, args []string, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, strings.ReplaceAll(usage, "restore [flags]", name+" [flags]"))
		fs.PrintDefaults()
	}
	fs.StringVar(&o.config, "config", "", "config file (default $LITEFS_CONFIG, else "+config.DefaultPath+")")
	fs.StringVar(&o.out, "o", "", "output database path (default: the database's path under data.dir)")
	fs.StringVar(&o.replicaURL, "replica", "", "replica URL (s3://bucket/path or file:///dir) instead of a config")
	fs.StringVar(&o.timestamp, "timestamp", "", "restore the state as of this time (RFC3339)")
	fs.StringVar(&o.txid, "txid", "", "restore the state at this TXID (16 hex digits, or decimal)")
	fs.BoolVar(&o.ifDBNotExists, "if-db-not-exists", false, "succeed without doing anything if the database exists")
	fs.BoolVar(&o.ifReplicaExists, "if-replica-exists", false, "succeed without doing anything if the replica is empty")
	fs.IntVar(&o.parallelism, "parallelism", 8, "download workers")
	fs.BoolVar(&o.integrityCheck, "integrity-check", false, "run PRAGMA integrity_check on the result before renaming it into place")
	fs.BoolVar(&o.verbose, "v", false, "log each step")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return err
	} else if err != nil {
		return errFlags
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	client, out, err := o.resolve(ctx, fs.Args())
	if err != nil {
		return err
	}
	ropt := replica.RestoreOptions{OutputPath: out, Parallelism: o.parallelism, Logger: logger}
	if ropt.TXID, err = parseTXID(o.txid); err != nil {
		return usageError{err}
	}
	if o.timestamp != "" {
		if ropt.Timestamp, err = time.Parse(time.RFC3339Nano, o.timestamp); err != nil {
			return usagef("-timestamp %q: write it as RFC3339, e.g. 2026-01-02T15:04:05Z", o.timestamp)
		}
	}
	if ropt.TXID != 0 && !ropt.Timestamp.IsZero() {
		return usagef("give -txid or -timestamp, not both")
	}

	// Not Restore's own check of the output: that one refuses any entry at
	// the path, a dangling symlink included, while -if-db-not-exists only
	// skips a database that is there (Stat follows the link).
	if _, err := os.Stat(out); err == nil {
		if o.ifDBNotExists {
			logger.Info("database exists; nothing to restore", "path", out)
			return nil
		}
		return fmt.Errorf("database %s already exists: remove it first, or pass -if-db-not-exists", out)
	}
	if o.integrityCheck {
		ropt.Verify = func(tmp string) error {
			if err := integrityCheck(tmp); err != nil {
				return fmt.Errorf("integrity check: %w", err)
			}
			logger.Info("integrity check ok", "path", tmp)
			return nil
		}
	}
	start := time.Now()
	pos, err := replica.Restore(ctx, client, ropt)
	// Restore checks the directory before it reads the replica; the
	// command words it for someone setting up an init container.
	if errors.Is(err, replica.ErrOutputDir) {
		return fmt.Errorf("directory %s does not exist: is the volume mounted there?", filepath.Dir(out))
	} else if errors.Is(err, replica.ErrNoReplica) {
		return noReplica(client, o.ifReplicaExists, logger)
	} else if err != nil {
		return err
	}
	logger.Info("restore complete", "path", out, "txid", pos.TXID, "checksum", pos.PostApplyChecksum, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// noReplica answers a replica that holds nothing: with -if-replica-exists
// a success, else an error. A file replica whose directory does not exist
// is no replica either, but it is worded apart: most likely a mistyped path.
func noReplica(client replica.ReplicaClient, ifReplicaExists bool, logger *slog.Logger) error {
	var missing error
	if fc, ok := client.(*file.Client); ok {
		if err := fc.CheckDir(); errors.Is(err, fs.ErrNotExist) {
			missing = err
		}
	}
	switch {
	case missing != nil && ifReplicaExists:
		logger.Info("replica directory does not exist; nothing to restore", "dir", client.(*file.Client).Dir())
		return nil
	case missing != nil:
		return fmt.Errorf("%w: check the replica URL (pass -if-replica-exists to make a missing replica a success)", missing)
	case ifReplicaExists:
		logger.Info("replica is empty; nothing to restore", "replica", client.Type())
		return nil
	}
	return errors.New("replica is empty: nothing to restore (pass -if-replica-exists to make that a success)")
}

// resolve finds the replica and the output path, from the flags or the
// config file. Relative paths (DB, -o) are taken from the working
// directory.
func (o *options) resolve(ctx context.Context, args []string) (replica.ReplicaClient, string, error) {
	url := o.replicaURL
	var dbArg string
	switch len(args) {
	case 0:
	case 1:
		if strings.Contains(args[0], "://") {
			if url != "" {
				return nil, "", usagef("give the replica URL once: -replica URL or as the argument")
			}
			url = args[0]
		} else if url != "" {
			return nil, "", usagef("unexpected argument %q: with -replica URL, give -o OUT and no database path", args[0])
		} else {
			dbArg = args[0]
		}
	default:
		return nil, "", usagef("expected one argument (the database path, or a replica URL), got %d: %s", len(args), strings.Join(args, " "))
	}
	out := o.out
	if out != "" {
		var err error
		if out, err = filepath.Abs(out); err != nil {
			return nil, "", fmt.Errorf("-o %s: %w", o.out, err)
		}
	}
	if url != "" {
		if out == "" {
			return nil, "", usagef("-o OUT is required with a replica URL")
		}
		client, err := backends.NewClient(ctx, url, backends.Settings{ConditionalWrites: true})
		return client, out, err
	}
	if dbArg == "" {
		return nil, "", usagef("give the database path (DB), or -o OUT with -replica URL")
	}
	dbPath, err := filepath.Abs(dbArg)
	if err != nil {
		return nil, "", fmt.Errorf("database path %s: %w", dbArg, err)
	}
	cfg, err := config.Read(config.FilePath(o.config))
	if err != nil {
		return nil, "", err
	}
	db, err := cfg.FindDB(dbPath)
	if err != nil {
		return nil, "", err
	}
	if out == "" {
		if out, err = cfg.DataPath(db.Path); err != nil {
			return nil, "", err
		}
	}
	client, err := backends.NewClient(ctx, db.Replica.URL, db.Replica.Settings())
	return client, out, err
}

// parseTXID takes 16 hex digits as Litestream prints them, or decimal.
func parseTXID(s string) (ltx.TXID, error) {
	if s == "" {
		return 0, nil
	}
	if len(s) == 16 {
		if v, err := ltx.ParseTXID(s); err == nil {
			return v, nil
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("-txid %q: write 16 hex digits (0000000000000042) or a decimal number (66)", s)
	}
	return ltx.TXID(v), nil
}

func integrityCheck(path string) error {
	// immutable: the temp file is in WAL mode, and a plain read-only open
	// would want to create its -wal and -shm beside it.
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		return err
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		return err
	}
	if res != "ok" {
		return errors.New(res)
	}
	return nil
}
