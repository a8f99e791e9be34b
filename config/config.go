package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/litefs-dev/litefs/replica/backends"
	"github.com/litefs-dev/litefs/staging"
)

// DefaultPath is used when neither -config nor $LITEFS_CONFIG is given.
const DefaultPath = "/etc/litefs.toml"

// Config is the daemon's and restore's configuration file.
type Config struct {
	FUSE            FUSEConfig `toml:"fuse"`
	Data            DataConfig `toml:"data"`
	HTTP            HTTPConfig `toml:"http"`
	ShutdownTimeout Duration   `toml:"shutdown-timeout"`
	DBs             []DBConfig `toml:"dbs"`

	// Path is the file the config was read from, for messages.
	Path string `toml:"-"`
}

type FUSEConfig struct {
	Dir         string `toml:"dir"`
	AllowOther  *bool  `toml:"allow-other"`
	Passthrough *bool  `toml:"passthrough"`
	Debug       bool   `toml:"debug"`
	// OpMetrics times every FUSE operation into litefs_fuse_op_seconds
	// (default true; two clock reads a request).
	OpMetrics *bool `toml:"op-metrics"`
}

type DataConfig struct {
	Dir string `toml:"dir"`
}

type HTTPConfig struct {
	Addr string `toml:"addr"` // host:port, or "off"
	// ReadinessMaxLag, when set, makes /readyz not ready while a database's
	// replication lag exceeds it. 0 (the default): lag never affects /readyz.
	ReadinessMaxLag Duration `toml:"readiness-max-lag,omitzero"`
	// Token, when set, is the bearer token the control endpoints
	// (POST /debug/snapshot, /debug/pprof/) demand. Unset: they answer
	// loopback clients only. Probes and /metrics never need it.
	Token string `toml:"token,omitempty"`
	// Pprof serves /debug/pprof/ (behind the same check as the other
	// control endpoints). Off by default: a profile costs CPU on demand.
	Pprof bool `toml:"pprof,omitempty"`
}

type DBConfig struct {
	Path         string        `toml:"path"`
	AllowEmptyDB bool          `toml:"allow-empty-db"`
	Replica      ReplicaConfig `toml:"replica"`
}

type ReplicaConfig struct {
	URL               string    `toml:"url"`
	Endpoint          string    `toml:"endpoint"`
	Region            string    `toml:"region"`
	ForcePathStyle    bool      `toml:"force-path-style"`
	AccessKeyID       string    `toml:"access-key-id"`
	SecretAccessKey   string    `toml:"secret-access-key"`
	ConditionalWrites *bool     `toml:"conditional-writes"`
	LeaseTTL          Duration  `toml:"lease-ttl"`
	SyncInterval      *Duration `toml:"sync-interval"`
	SnapshotInterval  Duration  `toml:"snapshot-interval"`
	Retention         Duration  `toml:"retention"`
	StagingMaxBytes   Size      `toml:"staging-max-bytes"`
	// Durability: "volume" (default), "replica" or "replica-on-fsync".
	Durability string `toml:"durability"`
}

// Settings are the replica keys its backend needs beyond the URL.
func (r *ReplicaConfig) Settings() backends.Settings {
	return backends.Settings{
		Endpoint: r.Endpoint, Region: r.Region, ForcePathStyle: r.ForcePathStyle,
		AccessKeyID: r.AccessKeyID, SecretAccessKey: r.SecretAccessKey,
		ConditionalWrites: r.ConditionalWrites == nil || *r.ConditionalWrites,
	}
}

// Defaults (docs/configuration.md lists them for users).
const (
	DefaultHTTPAddr         = ":9090"
	DefaultShutdownTimeout  = 30 * time.Second
	DefaultLeaseTTL         = 30 * time.Second
	DefaultSyncInterval     = time.Second
	DefaultSnapshotInterval = 24 * time.Hour
	DefaultRetention        = 72 * time.Hour
	DefaultStagingMaxBytes  = 1 << 30

	// MinStagingMaxBytes is the smallest staging-max-bytes accepted.
	MinStagingMaxBytes = 1 << 20
)

// FilePath picks the config file: the flag, else $LITEFS_CONFIG, else
// /etc/litefs.toml. There is no built-in config.
func FilePath(flag string) string {
	if flag != "" {
		return flag
	}
	if p := os.Getenv("LITEFS_CONFIG"); p != "" {
		return p
	}
	return DefaultPath
}

// Read reads, expands, parses, defaults and validates a config file.
func Read(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		switch {
		case path == os.Getenv("LITEFS_CONFIG") && path != "":
			return nil, fmt.Errorf("config file %s (from $LITEFS_CONFIG) does not exist; fix $LITEFS_CONFIG or pass -config FILE", path)
		case path == DefaultPath:
			return nil, fmt.Errorf("config file %s does not exist; pass -config FILE or set $LITEFS_CONFIG (there is no built-in default)", path)
		default:
			return nil, fmt.Errorf("config file %s does not exist; check the -config path", path)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, string(b))
}

// Error lists every problem found in a config, one per line, each
// "FILE:LINE: KEY: PROBLEM; WHAT TO DO".
type Error struct {
	Problems []string
}

func (e *Error) Error() string { return strings.Join(e.Problems, "\n") }

// maxProblems bounds the list: past it, one more line says how many more.
const maxProblems = 20

// Parse parses config text; path is only used in messages. The error,
// if any, is a *Error.
func Parse(path, text string) (*Config, error) {
	ck := &checker{file: path, text: text, hasText: true, defined: map[string]bool{}}
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			msg := strings.TrimSuffix(strings.TrimSpace(perr.Message), ".")
			ck.addLine(max(perr.Position.Line, 1), perr.LastKey, "TOML syntax error: "+msg+"; fix the syntax")
		} else {
			ck.addLine(1, "", fmt.Sprintf("cannot read TOML: %v; fix the syntax", err))
		}
		return nil, ck.err()
	}
	c := &Config{Path: path}
	ck.decodeStruct(raw, reflect.ValueOf(c).Elem(), "", "")
	c.applyDefaults()
	c.check(ck)
	if err := ck.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks a config that was built in code, or re-checks a parsed
// one (for which it is idempotent). It applies no defaults and, having no
// text, names no lines.
func (c *Config) Validate() error {
	ck := &checker{file: c.Path}
	c.check(ck)
	return ck.err()
}

func (c *Config) applyDefaults() {
	if c.FUSE.AllowOther == nil {
		t := true
		c.FUSE.AllowOther = &t
	}
	if c.FUSE.Passthrough == nil {
		t := true
		c.FUSE.Passthrough = &t
	}
	if c.FUSE.OpMetrics == nil {
		t := true
		c.FUSE.OpMetrics = &t
	}
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = DefaultHTTPAddr
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(DefaultShutdownTimeout)
	}
	for i := range c.DBs {
		r := &c.DBs[i].Replica
		if r.ConditionalWrites == nil {
			t := true
			r.ConditionalWrites = &t
		}
		if r.LeaseTTL == 0 {
			r.LeaseTTL = Duration(DefaultLeaseTTL)
		}
		if r.SyncInterval == nil {
			d := Duration(DefaultSyncInterval)
			r.SyncInterval = &d
		}
		if r.SnapshotInterval == 0 {
			r.SnapshotInterval = Duration(DefaultSnapshotInterval)
		}
		if r.Retention == 0 {
			r.Retention = Duration(DefaultRetention)
		}
		if r.StagingMaxBytes == 0 {
			r.StagingMaxBytes = DefaultStagingMaxBytes
		}
	}
}

// check is the semantic validation, after defaults. It cleans the paths it
// checks (so it is idempotent).
func (c *Config) check(ck *checker) {
	fuseOK := ck.absDir("fuse.dir", &c.FUSE.Dir, `the directory the app opens its database in, like dir = "/var/lib/myapp" under [fuse]`)
	dataOK := ck.absDir("data.dir", &c.Data.Dir, `the real volume behind the mount, like dir = "/var/lib/litefs" under [data]`)
	if fuseOK && dataOK {
		switch {
		case c.FUSE.Dir == c.Data.Dir:
			ck.add("data.dir", "same directory as fuse.dir (%s); the mount and the volume must be two directories", c.Data.Dir)
		case isInside(c.Data.Dir, c.FUSE.Dir):
			ck.add("data.dir", "%s is inside fuse.dir %s; put the volume outside the mount", c.Data.Dir, c.FUSE.Dir)
		case isInside(c.FUSE.Dir, c.Data.Dir):
			ck.add("fuse.dir", "%s is inside data.dir %s; put the mount outside the volume", c.FUSE.Dir, c.Data.Dir)
		}
	}
	if a := c.HTTP.Addr; a != "" && a != "off" {
		_, port, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
			ck.add("http.addr", "%q is not host:port; write it like \":9090\" or \"127.0.0.1:9090\", or \"off\"", a)
		}
	}
	ck.positive("shutdown-timeout", c.ShutdownTimeout, false)
	ck.positive("http.readiness-max-lag", c.HTTP.ReadinessMaxLag, true)

	if len(c.DBs) == 0 {
		ck.missing("dbs", "add a [[dbs]] table with path, and url under [dbs.replica]")
	}
	paths := map[string]int{}
	replicas := map[string]int{}
	for i := range c.DBs {
		db := &c.DBs[i]
		at := fmt.Sprintf("dbs[%d]", i)
		r := &db.Replica
		if ck.dbPath(at+".path", &db.Path, c, fuseOK, dataOK) {
			if j, ok := paths[db.Path]; ok {
				ck.add(at+".path", "%s is also dbs[%d]; configure each database once", db.Path, j)
			} else {
				paths[db.Path] = i
			}
		}

		if r.URL == "" {
			ck.missing(at+".replica.url", "set url under [dbs.replica] to s3://bucket/path or file:///dir")
		} else if key, err := backends.Key(r.URL); err != nil {
			ck.add(at+".replica.url", "%v", err)
		} else if j, ok := replicas[key]; ok {
			ck.add(at+".replica.url", "%s is the same replica path as dbs[%d]'s %s; give each database its own replica path", r.URL, j, c.DBs[j].Replica.URL)
		} else {
			replicas[key] = i
			if dir, ok := strings.CutPrefix(key, "file://"); ok && fuseOK && (dir == c.FUSE.Dir || isInside(dir, c.FUSE.Dir)) {
				ck.add(at+".replica.url", "%s is inside fuse.dir %s; keep the replica outside the mount", r.URL, c.FUSE.Dir)
			}
		}
		if r.Endpoint != "" {
			u, err := url.Parse(r.Endpoint)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				ck.add(at+".replica.endpoint", "%q is not an http(s) URL; write it like \"http://minio:9000\" or \"https://s3.example.com\"", r.Endpoint)
			}
		}
		switch {
		case r.AccessKeyID != "" && r.SecretAccessKey == "":
			ck.add(at+".replica.secret-access-key", "missing, but access-key-id is set; set both, or neither to use the environment")
		case r.AccessKeyID == "" && r.SecretAccessKey != "":
			ck.add(at+".replica.access-key-id", "missing, but secret-access-key is set; set both, or neither to use the environment")
		}
		ck.positive(at+".replica.lease-ttl", r.LeaseTTL, false)
		ck.positive(at+".replica.snapshot-interval", r.SnapshotInterval, false)
		ck.positive(at+".replica.retention", r.Retention, false)
		switch r.Durability {
		case "", "volume", "replica", "replica-on-fsync":
		default:
			ck.add(at+".replica.durability", "%q is not a durability; use \"volume\" (a commit returns once on the volume), \"replica\" (once the replica holds it) or \"replica-on-fsync\" (WAL fsyncs wait: PRAGMA synchronous=FULL commits)", r.Durability)
		}
		if r.SyncInterval != nil && *r.SyncInterval < 0 {
			ck.add(at+".replica.sync-interval", "negative duration %s; use \"0s\" or more", *r.SyncInterval)
		}
		if r.StagingMaxBytes < MinStagingMaxBytes {
			ck.add(at+".replica.staging-max-bytes", "%d bytes is below the minimum of 1MiB; use at least \"1MiB\" (the default is \"1GiB\")", int64(r.StagingMaxBytes))
		}
	}
}

// RelPath maps a database path under fuse.dir to its path relative to the
// data dir (and the FUSE dir).
func (c *Config) RelPath(dbPath string) (string, error) {
	rel, err := filepath.Rel(c.FUSE.Dir, filepath.Clean(dbPath))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", fmt.Errorf("database path %s is not inside fuse.dir %s", dbPath, c.FUSE.Dir)
	}
	if first, _, _ := strings.Cut(filepath.ToSlash(rel), "/"); first == staging.DirName {
		return "", fmt.Errorf("database path %s is inside the hidden %s directory", dbPath, staging.DirName)
	}
	return filepath.ToSlash(rel), nil
}

// DataPath maps a database path under fuse.dir to the real file in data.dir.
func (c *Config) DataPath(dbPath string) (string, error) {
	rel, err := c.RelPath(dbPath)
	if err != nil {
		return "", err
	}
	return filepath.Join(c.Data.Dir, filepath.FromSlash(rel)), nil
}

// FindDB returns the configured database with the given path (the FUSE path)
// or, for convenience, its data-dir path.
func (c *Config) FindDB(path string) (*DBConfig, error) {
	p := filepath.Clean(path)
	for i := range c.DBs {
		db := &c.DBs[i]
		if db.Path == p {
			return db, nil
		}
		if dp, _ := c.DataPath(db.Path); dp == p {
			return db, nil
		}
	}
	var have []string
	for _, db := range c.DBs {
		have = append(have, db.Path)
	}
	return nil, fmt.Errorf("database %s is not in %s (it has: %s)", path, c.Path, strings.Join(have, ", "))
}

// isInside says whether clean absolute path a is strictly inside b.
func isInside(a, b string) bool {
	rel, err := filepath.Rel(b, a)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// checker collects problems with their lines.
