package litefs

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultConfigPath is used when neither -config nor $LITEFS_CONFIG is given.
const DefaultConfigPath = "/etc/litefs.toml"

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
}

type DataConfig struct {
	Dir string `toml:"dir"`
}

type HTTPConfig struct {
	Addr string `toml:"addr"`
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
}

// Duration is a time.Duration written as "1s", "24h".
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("bad duration %q: write it like \"1s\", \"500ms\" or \"24h\"", b)
	}
	if v < 0 {
		return fmt.Errorf("bad duration %q: must not be negative", b)
	}
	*d = Duration(v)
	return nil
}

// Size is a byte count written as "1GiB", "512MiB", "100MB" or a plain number.
type Size int64

var sizeRe = regexp.MustCompile(`^\s*([0-9]+)\s*([KMGT]i?B|B)?\s*$`)

func (s *Size) UnmarshalText(b []byte) error {
	m := sizeRe.FindStringSubmatch(string(b))
	if m == nil {
		return fmt.Errorf("bad size %q: write it like \"1GiB\", \"512MiB\" or \"1000000\"", b)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return fmt.Errorf("bad size %q: %w", b, err)
	}
	mult := map[string]int64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	*s = Size(n * mult)
	return nil
}

// Defaults, from DESIGN §7.
const (
	DefaultHTTPAddr         = ":9090"
	DefaultShutdownTimeout  = 30 * time.Second
	DefaultLeaseTTL         = 30 * time.Second
	DefaultSyncInterval     = time.Second
	DefaultSnapshotInterval = 24 * time.Hour
	DefaultRetention        = 72 * time.Hour
	DefaultStagingMaxBytes  = 1 << 30
)

var envRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ExpandEnv replaces ${VAR} with the variable's value; a bare $ is left alone
// so that secrets containing $ survive.
func ExpandEnv(s string) string {
	return envRe.ReplaceAllStringFunc(s, func(m string) string {
		return os.Getenv(m[2 : len(m)-1])
	})
}

// ConfigPath picks the config file: the flag, else $LITEFS_CONFIG, else
// /etc/litefs.toml. There is no built-in config.
func ConfigPath(flag string) string {
	if flag != "" {
		return flag
	}
	if p := os.Getenv("LITEFS_CONFIG"); p != "" {
		return p
	}
	return DefaultConfigPath
}

// ReadConfig reads, expands, parses, defaults and validates a config file.
func ReadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("config file %s does not exist: pass -config FILE or set $LITEFS_CONFIG", path)
	} else if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(path, string(b))
}

// ParseConfig parses config text; path is only used in messages.
func ParseConfig(path, text string) (*Config, error) {
	var c Config
	md, err := toml.Decode(ExpandEnv(text), &c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("%s:%d: %s", path, perr.Position.Line, perr.Message)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		return nil, fmt.Errorf("%s:%d: unknown key %q", path, lineOf(text, keys[0]), keys[0].String())
	}
	c.Path = path
	c.applyDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// lineOf finds the line where a key's last element is first written, for
// messages; 0 when it cannot tell.
func lineOf(text string, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	name := key[len(key)-1]
	for i, line := range strings.Split(text, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"=") || strings.HasPrefix(l, "["+name) || strings.Contains(l, "."+name) {
			return i + 1
		}
	}
	return 0
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

func (c *Config) validate() error {
	if c.FUSE.Dir == "" {
		return errors.New("missing required key fuse.dir (where the app opens its database)")
	}
	if c.Data.Dir == "" {
		return errors.New("missing required key data.dir (the real volume behind the mount)")
	}
	c.FUSE.Dir = filepath.Clean(c.FUSE.Dir)
	c.Data.Dir = filepath.Clean(c.Data.Dir)
	if c.FUSE.Dir == c.Data.Dir {
		return fmt.Errorf("fuse.dir and data.dir are both %s: they must be two directories", c.FUSE.Dir)
	}
	if len(c.DBs) == 0 {
		return errors.New("no [[dbs]] configured: add one with path and replica.url")
	}
	replicas := map[string]string{}
	paths := map[string]bool{}
	for i := range c.DBs {
		db := &c.DBs[i]
		where := fmt.Sprintf("dbs[%d]", i)
		if db.Path == "" {
			return fmt.Errorf("%s: missing required key path", where)
		}
		db.Path = filepath.Clean(db.Path)
		if _, err := c.RelPath(db.Path); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if paths[db.Path] {
			return fmt.Errorf("%s: database %s is configured twice", where, db.Path)
		}
		paths[db.Path] = true
		if db.Replica.URL == "" {
			return fmt.Errorf("%s: missing required key replica.url (s3://bucket/path or file:///dir)", where)
		}
		key, err := replicaKey(db.Replica.URL)
		if err != nil {
			return fmt.Errorf("%s: replica.url: %w", where, err)
		}
		if other, ok := replicas[key]; ok {
			return fmt.Errorf("%s: replica %s is also used by %s: each database needs its own replica path", where, db.Replica.URL, other)
		}
		replicas[key] = db.Path
	}
	return nil
}

// RelPath maps a database path under fuse.dir to its path relative to the
// data dir (and the FUSE dir).
func (c *Config) RelPath(dbPath string) (string, error) {
	rel, err := filepath.Rel(c.FUSE.Dir, filepath.Clean(dbPath))
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
		return "", fmt.Errorf("database path %s is not inside fuse.dir %s", dbPath, c.FUSE.Dir)
	}
	if strings.HasPrefix(rel, ".litefs") {
		return "", fmt.Errorf("database path %s is inside the hidden .litefs directory", dbPath)
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

// replicaKey normalises a replica URL so two spellings of one path collide.
func replicaKey(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("cannot parse %q: %v", raw, err)
	}
	switch u.Scheme {
	case "file":
		if u.Path == "" {
			return "", fmt.Errorf("%q has no directory: write file:///absolute/dir", raw)
		}
		return "file://" + filepath.Clean(u.Path), nil
	case "s3":
		if u.Host == "" {
			return "", fmt.Errorf("%q has no bucket: write s3://bucket/path", raw)
		}
		p := strings.Trim(u.Path, "/")
		if p == "" {
			return "", fmt.Errorf("%q has no path inside the bucket: write s3://bucket/path", raw)
		}
		return "s3://" + u.Host + "/" + p, nil
	case "":
		return "", fmt.Errorf("%q has no scheme: use s3://bucket/path or file:///dir", raw)
	default:
		return "", fmt.Errorf("unknown scheme %q in %q: use s3://bucket/path or file:///dir", u.Scheme, raw)
	}
}
