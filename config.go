package litefs

// The config file (DESIGN §7).
//
// ParseConfig reads TOML in four steps:
//
//  1. toml.Decode into a generic map: syntax errors, with toml's line.
//  2. A schema walk (the schema is the Config struct and its toml tags) that
//     decodes the map into Config and reports unknown keys (with a "did you
//     mean" for a near miss or a key written in the wrong table), wrong
//     types, bad durations and sizes, explicit zeros where zero is nonsense,
//     and unset environment variables.
//  3. Defaults (DESIGN §7's table).
//  4. Semantic checks: required keys, absolute paths, fuse.dir vs data.dir,
//     db paths inside fuse.dir, replica URLs, one db per replica path.
//
// Every problem is reported, not just the first, one line each:
//
//	FILE:LINE: KEY: PROBLEM; WHAT TO DO
//
// KEY is the full key path with 0-based array indices ("dbs[1].replica.url").
// BurntSushi/toml does not expose key positions, so a small scanner
// (keyLines) finds the line where each key path is first written, tracking
// [table] and [[array]] headers, dotted keys and inline tables. A problem
// about a missing key points at the table it belongs in (line 1 when that
// table is missing too).
//
// Environment variables: ${VAR} and ${VAR:-default} are expanded inside
// string values after parsing (never in keys, comments or non-string
// values), so an expanded value cannot change the TOML structure and line
// numbers stay true. ${VAR} with VAR unset is an error naming VAR; set but
// empty expands to "". ${VAR:-default} gives default when VAR is unset or
// empty (as in sh). Anything else with a $ — a bare $, $VAR, an unclosed ${
// — is literal, so secrets containing $ survive; there is no escape for a
// literal "${NAME}".

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
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
	Addr string `toml:"addr"` // host:port, or "off"
	// ReadinessMaxLag, when set, makes /readyz not ready while a database's
	// replication lag exceeds it. 0 (the default): lag never affects /readyz.
	ReadinessMaxLag Duration `toml:"readiness-max-lag,omitzero"`
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

// Defaults, from DESIGN §7.
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

// Duration is a time.Duration written as "1s", "24h".
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	v, err := time.ParseDuration(s)
	if err != nil {
		if daysRe.MatchString(s) {
			return fmt.Errorf("bad duration %q; there is no day unit: write hours, like \"72h\"", b)
		}
		return fmt.Errorf("bad duration %q; write it like \"1s\", \"500ms\" or \"24h\"", b)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q; use a positive one like \"30s\"", b)
	}
	*d = Duration(v)
	return nil
}

var daysRe = regexp.MustCompile(`(?i)^[0-9.]+\s*(d|days?|w|weeks?|y|years?)$`)

// Size is a byte count written as "1GiB", "512MiB", "100MB" or a plain number.
type Size int64

var sizeRe = regexp.MustCompile(`^\s*([0-9]+)\s*([A-Za-z]*)\s*$`)

var sizeUnits = map[string]int64{"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}

func (s Size) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if s != 0 && int64(s)%u.n == 0 {
			return strconv.FormatInt(int64(s)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Size) UnmarshalText(b []byte) error {
	m := sizeRe.FindStringSubmatch(string(b))
	if m == nil {
		return fmt.Errorf("bad size %q; write it like \"1GiB\", \"512MiB\" or a number of bytes", b)
	}
	mult, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return fmt.Errorf("bad size %q: unknown unit %q; use B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB)", b, m[2])
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > (1<<63-1)/mult {
		return fmt.Errorf("bad size %q: too large; write it like \"1GiB\"", b)
	}
	*s = Size(n * mult)
	return nil
}

var envRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// ExpandEnv replaces ${VAR} with the variable's value and ${VAR:-default}
// with the value, or default when VAR is unset or empty. ${VAR} with VAR
// unset is an error naming it. Everything else (a bare $, $VAR, an unclosed
// ${) is left alone so that secrets containing $ survive.
func ExpandEnv(s string) (string, error) {
	var missing []string
	out := envRe.ReplaceAllStringFunc(s, func(m string) string {
		sm := envRe.FindStringSubmatch(m)
		v, ok := os.LookupEnv(sm[1])
		if sm[2] != "" {
			if v == "" {
				return sm[3]
			}
			return v
		}
		if !ok {
			missing = append(missing, sm[1])
		}
		return v
	})
	switch len(missing) {
	case 0:
		return out, nil
	case 1:
		return "", fmt.Errorf("environment variable %s is not set; set it, or write ${%s:-default} to give a default", missing[0], missing[0])
	default:
		return "", fmt.Errorf("environment variables %s are not set; set them, or write ${NAME:-default} to give a default", strings.Join(missing, ", "))
	}
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
		switch {
		case path == os.Getenv("LITEFS_CONFIG") && path != "":
			return nil, fmt.Errorf("config file %s (from $LITEFS_CONFIG) does not exist; fix $LITEFS_CONFIG or pass -config FILE", path)
		case path == DefaultConfigPath:
			return nil, fmt.Errorf("config file %s does not exist; pass -config FILE or set $LITEFS_CONFIG (there is no built-in default)", path)
		default:
			return nil, fmt.Errorf("config file %s does not exist; check the -config path", path)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(path, string(b))
}

// ConfigError lists every problem found in a config, one per line, each
// "FILE:LINE: KEY: PROBLEM; WHAT TO DO".
type ConfigError struct {
	Problems []string
}

func (e *ConfigError) Error() string { return strings.Join(e.Problems, "\n") }

// maxProblems bounds the list: past it, one more line says how many more.
const maxProblems = 20

// ParseConfig parses config text; path is only used in messages. The error,
// if any, is a *ConfigError.
func ParseConfig(path, text string) (*Config, error) {
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
		} else if key, err := replicaKey(r.URL); err != nil {
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
	if first, _, _ := strings.Cut(filepath.ToSlash(rel), "/"); first == ".litefs" {
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

// replicaKey checks a replica URL and normalises it so that two spellings of
// one path collide: file:///a/ and file:///a, s3://b/p and s3://b/p/.
func replicaKey(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("cannot parse %q; write s3://bucket/path or file:///dir", raw)
	}
	switch u.Scheme {
	case "file":
		switch {
		case u.Host != "":
			return "", fmt.Errorf("%q has a host (%q); write file:///absolute/dir, with three slashes", raw, u.Host)
		case u.Path == "" || !strings.HasPrefix(u.Path, "/"):
			return "", fmt.Errorf("%q has no absolute directory; write file:///absolute/dir", raw)
		case u.RawQuery != "" || u.Fragment != "":
			return "", fmt.Errorf("%q has a query or fragment; write file:///absolute/dir", raw)
		}
		return "file://" + filepath.Clean(u.Path), nil
	case "s3":
		switch {
		case u.User != nil:
			return "", fmt.Errorf("%q holds credentials; remove them and set access-key-id and secret-access-key, or use the environment", redactUser(u))
		case u.RawQuery != "" || u.Fragment != "":
			return "", fmt.Errorf("%q has query parameters; remove them and set endpoint, region and force-path-style as keys", raw)
		case u.Host == "":
			return "", fmt.Errorf("%q has no bucket; write s3://bucket/path", raw)
		case u.Port() != "":
			return "", fmt.Errorf("%q has a port: the host is the bucket name; set the server as endpoint = \"http://host:port\"", raw)
		}
		p := strings.Trim(u.Path, "/")
		if p == "" {
			return "", fmt.Errorf("%q has no path inside the bucket; write s3://bucket/path", raw)
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return "", fmt.Errorf("%q has an empty, . or .. path segment; write s3://bucket/path", raw)
			}
		}
		return "s3://" + u.Host + "/" + p, nil
	case "":
		return "", fmt.Errorf("%q has no scheme; use s3://bucket/path or file:///dir", raw)
	default:
		return "", fmt.Errorf("unknown scheme %q in %q; use s3://bucket/path or file:///dir", u.Scheme, raw)
	}
}

func redactUser(u *url.URL) string {
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}

// isInside says whether clean absolute path a is strictly inside b.
func isInside(a, b string) bool {
	rel, err := filepath.Rel(b, a)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// checker collects problems with their lines.
