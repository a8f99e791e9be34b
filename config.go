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
	"sort"
	"strconv"
	"strings"
	"sync"
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
type checker struct {
	file    string
	text    string          // the config text
	hasText bool            // false when validating a Config built in code: no lines
	lines   map[string]int  // key path → line, computed from text on first use
	defined map[string]bool // key paths written in the text (nil: unknown)
	seen    map[string]bool // one problem per key path
	probs   []problem
}

type problem struct {
	line     int
	key, msg string
}

// add reports a problem with a key, at the line where the key (or, when it
// is not written, the nearest table around it) is written.
func (ck *checker) add(key, format string, args ...any) {
	ck.addLine(ck.lineOf(key), key, fmt.Sprintf(format, args...))
}

func (ck *checker) addLine(line int, key, msg string) {
	if key != "" {
		for k := key; k != ""; k = parentKey(k) {
			if ck.seen[k] {
				return // one problem per key, none under a key that has one
			}
		}
		if ck.seen == nil {
			ck.seen = map[string]bool{}
		}
		ck.seen[key] = true
	}
	ck.probs = append(ck.probs, problem{line, key, msg})
}

func (ck *checker) err() error {
	if len(ck.probs) == 0 {
		return nil
	}
	sort.SliceStable(ck.probs, func(i, j int) bool { return ck.probs[i].line < ck.probs[j].line })
	e := &ConfigError{}
	for i, p := range ck.probs {
		if i == maxProblems {
			e.Problems = append(e.Problems, fmt.Sprintf("%s: %d more problems not shown; fix the ones above first", ck.file, len(ck.probs)-i))
			break
		}
		var b strings.Builder
		b.WriteString(ck.file)
		if p.line > 0 {
			fmt.Fprintf(&b, ":%d", p.line)
		}
		b.WriteString(": ")
		if p.key != "" {
			b.WriteString(p.key + ": ")
		}
		b.WriteString(p.msg)
		e.Problems = append(e.Problems, oneLine(b.String()))
	}
	return e
}

// oneLine keeps a message on one line whatever values it quotes.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", `\n`, "\n", `\n`, "\r", `\r`).Replace(s)
}

// lineOf is the line where key, or else its nearest parent, is written:
// 1 when none is, 0 when there is no text.
func (ck *checker) lineOf(key string) int {
	if !ck.hasText {
		return 0
	}
	if ck.lines == nil {
		ck.lines = keyLines(ck.text)
	}
	for k := key; k != ""; k = parentKey(k) {
		if l, ok := ck.lines[k]; ok {
			return l
		}
	}
	return 1
}

func parentKey(k string) string {
	if i := strings.LastIndexAny(k, ".["); i >= 0 {
		return k[:i]
	}
	return ""
}

// missing reports a required key that is absent, or present but empty.
func (ck *checker) missing(key, fix string) {
	if ck.defined[key] {
		ck.add(key, "is empty; %s", fix)
	} else {
		ck.add(key, "missing required key; %s", fix)
	}
}

// absDir checks a required absolute directory and cleans it.
func (ck *checker) absDir(key string, dir *string, what string) bool {
	switch {
	case *dir == "":
		ck.missing(key, "set it to "+what)
		return false
	case !filepath.IsAbs(*dir):
		ck.add(key, "%q is a relative path; write an absolute path", *dir)
		return false
	}
	*dir = filepath.Clean(*dir)
	return true
}

// dbPath checks a database path (and cleans it).
func (ck *checker) dbPath(key string, p *string, c *Config, fuseOK, dataOK bool) bool {
	ex := "/var/lib/myapp/db"
	if fuseOK {
		ex = filepath.Join(c.FUSE.Dir, "db")
	}
	switch {
	case *p == "":
		ck.missing(key, fmt.Sprintf("set it to the database file the app opens, like path = %q", ex))
		return false
	case !filepath.IsAbs(*p):
		ck.add(key, "%q is a relative path; write the absolute path the app opens, like %q", *p, ex)
		return false
	}
	*p = filepath.Clean(*p)
	for _, suf := range []string{"-wal", "-shm", "-journal"} {
		if strings.HasSuffix(*p, suf) {
			ck.add(key, "%s names a SQLite %s file; name the database file itself", *p, suf[1:])
			return false
		}
	}
	if !fuseOK {
		return true
	}
	if *p == c.FUSE.Dir {
		ck.add(key, "%s is fuse.dir itself; name the database file inside it, like %q", *p, ex)
		return false
	}
	if _, err := c.RelPath(*p); err != nil {
		if isInside(*p, c.FUSE.Dir) {
			ck.add(key, "%s is inside the hidden .litefs directory; choose another path under fuse.dir", *p)
		} else if rel, err := filepath.Rel(c.Data.Dir, *p); dataOK && err == nil && isInside(*p, c.Data.Dir) {
			ck.add(key, "%s is under data.dir %s; use the path the app opens under the mount: %q", *p, c.Data.Dir, filepath.Join(c.FUSE.Dir, rel))
		} else {
			ck.add(key, "%s is not inside fuse.dir %s; use the path the app opens under the mount, like %q", *p, c.FUSE.Dir, ex)
		}
		return false
	}
	return true
}

// positive reports a duration that is negative, or zero unless zeroOK.
func (ck *checker) positive(key string, d Duration, zeroOK bool) {
	if d < 0 || (d == 0 && !zeroOK) {
		ck.add(key, "must be more than 0s; %s", zeroFix(key))
	}
}

// zeroFix says what to do about an explicit zero.
func zeroFix(key string) string {
	switch schemaKey(key) {
	case "shutdown-timeout":
		return "omit it for the default 30s"
	case "http.readiness-max-lag":
		return "omit it, and lag never makes /readyz unready"
	case "dbs.replica.lease-ttl":
		return "omit it for the default 30s"
	case "dbs.replica.snapshot-interval":
		return "omit it for the default 24h"
	case "dbs.replica.retention":
		return "omit it for the default 72h"
	}
	return "use a positive duration"
}

// schemaKey drops array indices: "dbs[1].replica.url" → "dbs.replica.url".
func schemaKey(key string) string {
	var b strings.Builder
	skip := false
	for _, r := range key {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Keys where an explicit zero is nonsense (checked before defaults hide it).
var nonZero = map[string]bool{
	"shutdown-timeout":              true,
	"http.readiness-max-lag":        true,
	"dbs.replica.lease-ttl":         true,
	"dbs.replica.snapshot-interval": true,
	"dbs.replica.retention":         true,
	"dbs.replica.staging-max-bytes": true,
}

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

func joinKey(a, k string) string {
	if a == "" {
		return k
	}
	return a + "." + k
}

// decodeStruct decodes a TOML table into the struct rv; path is the key path
// with indices, schema the same without.
func (ck *checker) decodeStruct(m map[string]any, rv reflect.Value, path, schema string) {
	fields := structFields(rv.Type())
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := joinKey(path, k)
		ck.defined[p] = true
		i, ok := fields[k]
		if !ok {
			ck.add(p, "unknown key; %s", suggest(schema, k))
			continue
		}
		ck.decodeValue(m[k], rv.Field(i), p, joinKey(schema, k))
	}
}

func (ck *checker) decodeValue(v any, fv reflect.Value, path, schema string) {
	t := fv.Type()
	if t.Kind() == reflect.Pointer && t.Elem() != reflect.TypeFor[bool]() && t.Elem() != durationType {
		return // not in the schema
	}
	switch {
	case t == durationType || t == reflect.PointerTo(durationType):
		s, ok := v.(string)
		if !ok {
			ck.add(path, "want a duration in quotes, like \"1s\", got %s; write it like \"1s\", \"500ms\" or \"24h\"", tomlType(v))
			return
		}
		if s, ok = ck.expand(path, s); !ok {
			return
		}
		var d Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			ck.add(path, "%v", err)
			return
		}
		if d == 0 && nonZero[schema] {
			ck.add(path, "must be more than 0s; %s", zeroFix(schema))
			return
		}
		if t.Kind() == reflect.Pointer {
			fv.Set(reflect.ValueOf(&d))
		} else {
			fv.Set(reflect.ValueOf(d))
		}
	case t == sizeType:
		var sz Size
		switch x := v.(type) {
		case int64:
			if x < 0 {
				ck.add(path, "negative size %d; write it like \"1GiB\"", x)
				return
			}
			sz = Size(x)
		case string:
			s, ok := ck.expand(path, x)
			if !ok {
				return
			}
			if err := sz.UnmarshalText([]byte(s)); err != nil {
				ck.add(path, "%v", err)
				return
			}
		default:
			ck.add(path, "want a size like \"1GiB\" or a number of bytes, got %s; write it like \"1GiB\"", tomlType(v))
			return
		}
		if sz < MinStagingMaxBytes && nonZero[schema] {
			ck.add(path, "%d bytes is below the minimum of 1MiB; use at least \"1MiB\" (the default is \"1GiB\")", int64(sz))
			return
		}
		fv.Set(reflect.ValueOf(sz))
	case t.Kind() == reflect.String:
		s, ok := v.(string)
		if !ok {
			ck.add(path, "want a string, got %s; put the value in double quotes", tomlType(v))
			return
		}
		if s, ok = ck.expand(path, s); ok {
			fv.SetString(s)
		}
	case t.Kind() == reflect.Bool || t == reflect.TypeFor[*bool]():
		b, ok := v.(bool)
		if !ok {
			fix := "write true or false"
			if _, isStr := v.(string); isStr {
				fix = "write true or false, without quotes"
			}
			ck.add(path, "want true or false, got %s; %s", tomlType(v), fix)
			return
		}
		if t.Kind() == reflect.Pointer {
			fv.Set(reflect.ValueOf(&b))
		} else {
			fv.SetBool(b)
		}
	case t.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			ck.add(path, "want a table, got %s; write [%s] and its keys on the lines below it", tomlType(v), schema)
			return
		}
		ck.decodeStruct(m, fv, path, schema)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		var elems []any
		switch x := v.(type) {
		case []map[string]any:
			for _, e := range x {
				elems = append(elems, e)
			}
		case []any:
			elems = x
		default:
			ck.add(path, "want an array of tables, got %s; write each one as [[%s]], with two brackets", tomlType(v), schema)
			return
		}
		s := reflect.MakeSlice(t, len(elems), len(elems))
		for i, e := range elems {
			p := fmt.Sprintf("%s[%d]", path, i)
			m, ok := e.(map[string]any)
			if !ok {
				ck.add(p, "want a table, got %s; write each one as [[%s]], with two brackets", tomlType(e), schema)
				continue
			}
			ck.defined[p] = true
			ck.decodeStruct(m, s.Index(i), p, schema)
		}
		fv.Set(s)
	}
}

// expand expands environment variables in a string value.
func (ck *checker) expand(path, s string) (string, bool) {
	out, err := ExpandEnv(s)
	if err != nil {
		ck.add(path, "%v", err)
		return "", false
	}
	return out, true
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	case time.Time:
		return "a date"
	}
	return fmt.Sprintf("a %T", v)
}

// structFields maps toml key → field index.
func structFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

// schemaTables maps each table of the schema ("" for the top level, "dbs",
// "dbs.replica") to its keys, in struct order.
var schemaTables = sync.OnceValue(func() map[string][]string {
	tables := map[string][]string{}
	var walk func(t reflect.Type, schema string)
	walk = func(t reflect.Type, schema string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			tables[schema] = append(tables[schema], name)
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != durationType {
				walk(ft, joinKey(schema, name))
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return tables
})

func tableName(schema string) string {
	switch schema {
	case "":
		return "the top level"
	case "dbs":
		return "[[dbs]]"
	}
	return "[" + schema + "]"
}

func normKey(k string) string {
	return strings.NewReplacer("_", "-", " ", "-").Replace(strings.ToLower(k))
}

// suggest says what to do about an unknown key k in the table schema.
func suggest(schema, k string) string {
	tables := schemaTables()
	here := tables[schema]
	n := normKey(k)
	for _, known := range here {
		if normKey(known) == n {
			return fmt.Sprintf("did you mean %s?", known)
		}
	}
	// A known key written in the wrong table.
	var where []string
	var name string
	for t, keys := range tables {
		for _, known := range keys {
			if t != schema && normKey(known) == n {
				where = append(where, tableName(t))
				name = known
			}
		}
	}
	if len(where) > 0 {
		sort.Strings(where)
		return fmt.Sprintf("%s belongs in %s", name, strings.Join(where, " or "))
	}
	best, bestD := "", 1<<30
	for _, known := range here {
		if d := editDistance(n, normKey(known)); d < bestD {
			best, bestD = known, d
		}
	}
	if limit := min(3, len(n)/4+1); bestD <= limit && bestD < len(n) {
		return fmt.Sprintf("did you mean %s?", best)
	}
	return fmt.Sprintf("%s takes %s", tableName(schema), strings.Join(here, ", "))
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and adjacent transpositions ("dri" → "dir") cost 1.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// keyLines maps each key path written in a TOML text ("fuse.dir",
// "dbs[1].replica.url", "dbs[1]" for the second [[dbs]] header) to the line
// where it is first written. It is only used for messages, on text that
// toml has already parsed: it tracks [table] and [[array]] headers (counting
// array elements per parent), dotted and quoted keys, inline tables and
// arrays of them, and skips strings (multi-line too) and comments.
func keyLines(text string) map[string]int {
	sc := &lineScanner{s: text, line: 1, lines: map[string]int{}, arrs: map[string]int{}}
	sc.run()
	return sc.lines
}

type lineScanner struct {
	s     string
	i     int
	line  int
	lines map[string]int
	arrs  map[string]int // array-of-tables path (parents indexed) → elements so far
}

func (sc *lineScanner) eof() bool { return sc.i >= len(sc.s) }

func (sc *lineScanner) set(path string, line int) {
	if _, ok := sc.lines[path]; !ok {
		sc.lines[path] = line
	}
}

func (sc *lineScanner) run() {
	table := ""
	for !sc.eof() {
		sc.skipSpace()
		if sc.eof() {
			break
		}
		switch c := sc.s[sc.i]; c {
		case '\n':
			sc.i++
			sc.line++
		case '#':
			sc.skipLine()
		case '[':
			line := sc.line
			arr := strings.HasPrefix(sc.s[sc.i:], "[[")
			sc.i++
			if arr {
				sc.i++
			}
			if keys, ok := sc.key(); ok {
				table = sc.header(keys, arr, line)
			}
			sc.skipLine()
		default:
			line := sc.line
			keys, ok := sc.key()
			sc.skipSpace()
			if !ok || sc.eof() || sc.s[sc.i] != '=' {
				sc.skipLine()
				continue
			}
			sc.i++
			sc.value(sc.record(table, keys, line))
			sc.skipLine()
		}
	}
}

// header resolves a [a.b] or [[a.b]] header to an indexed path.
func (sc *lineScanner) header(keys []string, arr bool, line int) string {
	p := ""
	for j, k := range keys {
		p = joinKey(p, k)
		if arr && j == len(keys)-1 {
			sc.set(p, line)
			n := sc.arrs[p]
			sc.arrs[p] = n + 1
			p = fmt.Sprintf("%s[%d]", p, n)
		} else if n, ok := sc.arrs[p]; ok {
			p = fmt.Sprintf("%s[%d]", p, n-1)
		}
		sc.set(p, line)
	}
	return p
}

// record notes a (dotted) key written in table at line; it returns its path.
func (sc *lineScanner) record(table string, keys []string, line int) string {
	p := table
	for _, k := range keys {
		p = joinKey(p, k)
		sc.set(p, line)
	}
	return p
}

func (sc *lineScanner) skipSpace() {
	for !sc.eof() && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t' || sc.s[sc.i] == '\r') {
		sc.i++
	}
}

// skipBlank skips spaces, newlines and comments (inside arrays and inline
// tables).
func (sc *lineScanner) skipBlank() {
	for !sc.eof() {
		switch sc.s[sc.i] {
		case ' ', '\t', '\r':
			sc.i++
		case '\n':
			sc.i++
			sc.line++
		case '#':
			for !sc.eof() && sc.s[sc.i] != '\n' {
				sc.i++
			}
		default:
			return
		}
	}
}

// skipLine skips past the next newline.
func (sc *lineScanner) skipLine() {
	for !sc.eof() {
		c := sc.s[sc.i]
		sc.i++
		if c == '\n' {
			sc.line++
			return
		}
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// key reads a dotted key.
func (sc *lineScanner) key() ([]string, bool) {
	var keys []string
	for {
		sc.skipSpace()
		if sc.eof() {
			return nil, false
		}
		var k string
		switch sc.s[sc.i] {
		case '"':
			k = sc.str('"', true)
		case '\'':
			k = sc.str('\'', false)
		default:
			start := sc.i
			for !sc.eof() && isBare(sc.s[sc.i]) {
				sc.i++
			}
			if sc.i == start {
				return nil, false
			}
			k = sc.s[start:sc.i]
		}
		keys = append(keys, k)
		sc.skipSpace()
		if sc.eof() || sc.s[sc.i] != '.' {
			return keys, true
		}
		sc.i++
	}
}

// str reads a one-line string starting at its quote; with escapes, \" and
// \\ are unescaped (enough for key names).
func (sc *lineScanner) str(q byte, escapes bool) string {
	sc.i++
	var b strings.Builder
	for !sc.eof() && sc.s[sc.i] != '\n' {
		c := sc.s[sc.i]
		sc.i++
		if c == q {
			break
		}
		if escapes && c == '\\' && !sc.eof() && sc.s[sc.i] != '\n' {
			c = sc.s[sc.i]
			sc.i++
		}
		b.WriteByte(c)
	}
	return b.String()
}

// multi skips a multi-line string starting at its opening delimiter.
func (sc *lineScanner) multi(q byte, escapes bool) {
	delim := strings.Repeat(string(q), 3)
	sc.i += 3
	for !sc.eof() {
		switch c := sc.s[sc.i]; {
		case escapes && c == '\\':
			sc.i++
			if !sc.eof() {
				if sc.s[sc.i] == '\n' {
					sc.line++
				}
				sc.i++
			}
		case strings.HasPrefix(sc.s[sc.i:], delim):
			sc.i += 3
			for n := 0; n < 2 && !sc.eof() && sc.s[sc.i] == q; n++ {
				sc.i++
			}
			return
		default:
			if c == '\n' {
				sc.line++
			}
			sc.i++
		}
	}
}

// value skips a value, recording the keys of inline tables under path.
func (sc *lineScanner) value(path string) {
	sc.skipSpace()
	if sc.eof() {
		return
	}
	rest := sc.s[sc.i:]
	switch {
	case strings.HasPrefix(rest, `"""`):
		sc.multi('"', true)
	case strings.HasPrefix(rest, `'''`):
		sc.multi('\'', false)
	case rest[0] == '"':
		sc.str('"', true)
	case rest[0] == '\'':
		sc.str('\'', false)
	case rest[0] == '[':
		sc.i++
		for n := 0; ; n++ {
			sc.skipBlank()
			if sc.eof() {
				return
			}
			if sc.s[sc.i] == ']' {
				sc.i++
				return
			}
			elem := fmt.Sprintf("%s[%d]", path, n)
			if sc.s[sc.i] == '{' {
				sc.set(elem, sc.line)
			}
			sc.value(elem)
			sc.skipBlank()
			if sc.eof() || sc.s[sc.i] != ',' {
				if !sc.eof() && sc.s[sc.i] == ']' {
					sc.i++
				}
				return
			}
			sc.i++
		}
	case rest[0] == '{':
		sc.i++
		for {
			sc.skipBlank()
			if sc.eof() {
				return
			}
			if sc.s[sc.i] == '}' {
				sc.i++
				return
			}
			line := sc.line
			keys, ok := sc.key()
			sc.skipSpace()
			if !ok || sc.eof() || sc.s[sc.i] != '=' {
				return
			}
			sc.i++
			sc.value(sc.record(path, keys, line))
			sc.skipBlank()
			if sc.eof() || sc.s[sc.i] != ',' {
				if !sc.eof() && sc.s[sc.i] == '}' {
					sc.i++
				}
				return
			}
			sc.i++
		}
	default:
		for !sc.eof() && !strings.ContainsRune(",]}#\n", rune(sc.s[sc.i])) {
			sc.i++
		}
	}
}
