package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/config"
)

// goodConfig is the smallest valid config; bad configs below are built by
// editing it or written out in full.
const goodConfig = `[fuse]
dir = "/var/lib/myapp"
[data]
dir = "/var/lib/litefs"

[[dbs]]
path = "/var/lib/myapp/db"
[dbs.replica]
url = "s3://mybucket/db"
`

// withReplica is goodConfig plus lines under [dbs.replica] (from line 10).
func withReplica(lines string) string { return goodConfig + lines }

func TestConfigBad(t *testing.T) {
	t.Setenv("LITEFS_TEST_EMPTY", "")
	os.Unsetenv("LITEFS_TEST_UNSET")
	tests := []struct {
		name, text, want string
	}{
		{"unknown key near miss", withReplica(`sync_interval = "1s"`),
			`t.toml:10: dbs[0].replica.sync_interval: unknown key; did you mean sync-interval?`},
		{"unknown key typo", withReplica(`retension = "24h"`),
			`t.toml:10: dbs[0].replica.retension: unknown key; did you mean retention?`},
		{"unknown key without a near miss", `[fuse]
dir = "/var/lib/myapp"
colour = "blue"
` + goodConfig[len("[fuse]\ndir = \"/var/lib/myapp\"\n"):],
			`t.toml:3: fuse.colour: unknown key; [fuse] takes dir, allow-other, passthrough, debug, op-metrics`},
		{"key in the wrong table", `addr = ":9090"
` + goodConfig,
			`t.toml:1: addr: unknown key; addr belongs in [http]`},
		{"unknown key in the second [[dbs]]", goodConfig + `
[[dbs]]
path = "/var/lib/myapp/db2"
[dbs.replica]
url = "s3://mybucket/db2"
sync-intervall = "1s"
`, `t.toml:15: dbs[1].replica.sync-intervall: unknown key; did you mean sync-interval?`},
		{"unknown table", goodConfig + `[metrics]
enabled = true
`, `t.toml:10: metrics: unknown key; the top level takes fuse, data, http, shutdown-timeout, dbs`},
		{"[dbs] instead of [[dbs]]", strings.Replace(goodConfig, "[[dbs]]", "[dbs]", 1),
			`t.toml:6: dbs: want an array of tables, got a table; write each one as [[dbs]], with two brackets`},
		{"unknown scheme", strings.Replace(goodConfig, "s3://mybucket/db", "gs://mybucket/db", 1),
			`t.toml:9: dbs[0].replica.url: unknown scheme "gs" in "gs://mybucket/db"; use s3://bucket/path or file:///dir`},
		{"no scheme", strings.Replace(goodConfig, "s3://mybucket/db", "mybucket/db", 1),
			`t.toml:9: dbs[0].replica.url: "mybucket/db" has no scheme; use s3://bucket/path or file:///dir`},
		{"s3 without a path", strings.Replace(goodConfig, "s3://mybucket/db", "s3://mybucket/", 1),
			`t.toml:9: dbs[0].replica.url: "s3://mybucket/" has no path inside the bucket; write s3://bucket/path`},
		{"s3 with an endpoint as host", strings.Replace(goodConfig, "s3://mybucket/db", "s3://minio:9000/db", 1),
			`t.toml:9: dbs[0].replica.url: "s3://minio:9000/db" has a port: the host is the bucket name; set the server as endpoint = "http://host:port"`},
		{"file url with two slashes", strings.Replace(goodConfig, "s3://mybucket/db", "file://replica/db", 1),
			`t.toml:9: dbs[0].replica.url: "file://replica/db" has a host ("replica"); write file:///absolute/dir, with three slashes`},
		{"bad duration", withReplica(`sync-interval = "1 second"`),
			`t.toml:10: dbs[0].replica.sync-interval: bad duration "1 second"; write it like "1s", "500ms" or "24h"`},
		{"duration in days", withReplica(`retention = "7d"`),
			`t.toml:10: dbs[0].replica.retention: bad duration "7d"; there is no day unit: write hours, like "72h"`},
		{"duration without quotes", withReplica(`lease-ttl = 30`),
			`t.toml:10: dbs[0].replica.lease-ttl: want a duration in quotes, like "1s", got an integer; write it like "1s", "500ms" or "24h"`},
		{"negative duration", withReplica(`sync-interval = "-1s"`),
			`t.toml:10: dbs[0].replica.sync-interval: negative duration "-1s"; use a positive one like "30s"`},
		{"zero lease-ttl", withReplica(`lease-ttl = "0s"`),
			`t.toml:10: dbs[0].replica.lease-ttl: must be more than 0s; omit it for the default 30s`},
		{"zero shutdown-timeout", `shutdown-timeout = "0s"
` + goodConfig,
			`t.toml:1: shutdown-timeout: must be more than 0s; omit it for the default 30s`},
		{"bad size", withReplica(`staging-max-bytes = "1 gigabyte"`),
			`t.toml:10: dbs[0].replica.staging-max-bytes: bad size "1 gigabyte": unknown unit "gigabyte"; use B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB)`},
		{"size not a size", withReplica(`staging-max-bytes = "lots"`),
			`t.toml:10: dbs[0].replica.staging-max-bytes: bad size "lots"; write it like "1GiB", "512MiB" or a number of bytes`},
		{"staging too small", withReplica(`staging-max-bytes = 65536`),
			`t.toml:10: dbs[0].replica.staging-max-bytes: 65536 bytes is below the minimum of 1MiB; use at least "1MiB" (the default is "1GiB")`},
		{"staging explicitly 0", withReplica(`staging-max-bytes = "0"`),
			`t.toml:10: dbs[0].replica.staging-max-bytes: 0 bytes is below the minimum of 1MiB; use at least "1MiB" (the default is "1GiB")`},
		{"db path outside the FUSE dir", strings.Replace(goodConfig, `path = "/var/lib/myapp/db"`, `path = "/var/lib/other/db"`, 1),
			`t.toml:7: dbs[0].path: /var/lib/other/db is not inside fuse.dir /var/lib/myapp; use the path the app opens under the mount, like "/var/lib/myapp/db"`},
		{"db path given as the data path", strings.Replace(goodConfig, `path = "/var/lib/myapp/db"`, `path = "/var/lib/litefs/db"`, 1),
			`t.toml:7: dbs[0].path: /var/lib/litefs/db is under data.dir /var/lib/litefs; use the path the app opens under the mount: "/var/lib/myapp/db"`},
		{"db path relative", strings.Replace(goodConfig, `path = "/var/lib/myapp/db"`, `path = "db"`, 1),
			`t.toml:7: dbs[0].path: "db" is a relative path; write the absolute path the app opens, like "/var/lib/myapp/db"`},
		{"db path is the FUSE dir", strings.Replace(goodConfig, `path = "/var/lib/myapp/db"`, `path = "/var/lib/myapp/"`, 1),
			`t.toml:7: dbs[0].path: /var/lib/myapp is fuse.dir itself; name the database file inside it, like "/var/lib/myapp/db"`},
		{"db path is a WAL", strings.Replace(goodConfig, `path = "/var/lib/myapp/db"`, `path = "/var/lib/myapp/db-wal"`, 1),
			`t.toml:7: dbs[0].path: /var/lib/myapp/db-wal names a SQLite wal file; name the database file itself`},
		{"db path in .litefs", strings.Replace(goodConfig, `path = "/var/lib/myapp/db"`, `path = "/var/lib/myapp/.litefs/db"`, 1),
			`t.toml:7: dbs[0].path: /var/lib/myapp/.litefs/db is inside the hidden .litefs directory; choose another path under fuse.dir`},
		{"two dbs on one s3 replica path", goodConfig + `
[[dbs]]
path = "/var/lib/myapp/db2"
[dbs.replica]
url = "s3://mybucket/db/"
`, `t.toml:14: dbs[1].replica.url: s3://mybucket/db/ is the same replica path as dbs[0]'s s3://mybucket/db; give each database its own replica path`},
		{"two dbs on one file replica path", `[fuse]
dir = "/var/lib/myapp"
[data]
dir = "/var/lib/litefs"
[[dbs]]
path = "/var/lib/myapp/a"
replica.url = "file:///srv/replica/"
[[dbs]]
path = "/var/lib/myapp/b"
replica.url = "file:///srv/replica"
`, `t.toml:10: dbs[1].replica.url: file:///srv/replica is the same replica path as dbs[0]'s file:///srv/replica/; give each database its own replica path`},
		{"the same db twice", goodConfig + `
[[dbs]]
path = "/var/lib/myapp//db"
[dbs.replica]
url = "s3://mybucket/other"
`, `t.toml:12: dbs[1].path: /var/lib/myapp/db is also dbs[0]; configure each database once`},
		{"missing fuse.dir", goodConfig[len("[fuse]\ndir = \"/var/lib/myapp\"\n"):],
			`t.toml:1: fuse.dir: missing required key; set it to the directory the app opens its database in, like dir = "/var/lib/myapp" under [fuse]`},
		{"missing data.dir, table present", strings.Replace(goodConfig, `dir = "/var/lib/litefs"`, `# no dir`, 1),
			`t.toml:3: data.dir: missing required key; set it to the real volume behind the mount, like dir = "/var/lib/litefs" under [data]`},
		{"missing dbs", goodConfig[:strings.Index(goodConfig, "[[dbs]]")],
			`t.toml:1: dbs: missing required key; add a [[dbs]] table with path, and url under [dbs.replica]`},
		{"missing dbs path", strings.Replace(goodConfig, `path = "/var/lib/myapp/db"`, ``, 1),
			`t.toml:6: dbs[0].path: missing required key; set it to the database file the app opens, like path = "/var/lib/myapp/db"`},
		{"missing replica url", strings.Replace(goodConfig, `url = "s3://mybucket/db"`, `region = "eu-west-1"`, 1),
			`t.toml:8: dbs[0].replica.url: missing required key; set url under [dbs.replica] to s3://bucket/path or file:///dir`},
		{"missing replica table", goodConfig[:strings.Index(goodConfig, "[dbs.replica]")],
			`t.toml:6: dbs[0].replica.url: missing required key; set url under [dbs.replica] to s3://bucket/path or file:///dir`},
		{"empty replica url from the environment", strings.Replace(goodConfig, `s3://mybucket/db`, `${LITEFS_TEST_EMPTY}`, 1),
			`t.toml:9: dbs[0].replica.url: is empty; set url under [dbs.replica] to s3://bucket/path or file:///dir`},
		{"unset environment variable", withReplica(`endpoint = "${LITEFS_TEST_UNSET}"`),
			`t.toml:10: dbs[0].replica.endpoint: environment variable LITEFS_TEST_UNSET is not set; set it, or write ${LITEFS_TEST_UNSET:-default} to give a default`},
		{"fuse.dir relative", strings.Replace(goodConfig, `"/var/lib/myapp"`, `"var/lib/myapp"`, 1),
			`t.toml:2: fuse.dir: "var/lib/myapp" is a relative path; write an absolute path`},
		{"data.dir relative", strings.Replace(goodConfig, `"/var/lib/litefs"`, `"./litefs"`, 1),
			`t.toml:4: data.dir: "./litefs" is a relative path; write an absolute path`},
		{"data.dir inside fuse.dir", strings.Replace(goodConfig, `"/var/lib/litefs"`, `"/var/lib/myapp/data"`, 1),
			`t.toml:4: data.dir: /var/lib/myapp/data is inside fuse.dir /var/lib/myapp; put the volume outside the mount`},
		{"fuse.dir inside data.dir", strings.Replace(strings.Replace(goodConfig, `"/var/lib/litefs"`, `"/var/lib"`, 1), `"/var/lib/myapp"`, `"/var/lib/myapp/"`, 1),
			`t.toml:2: fuse.dir: /var/lib/myapp is inside data.dir /var/lib; put the mount outside the volume`},
		{"fuse.dir is data.dir", strings.Replace(goodConfig, `"/var/lib/litefs"`, `"/var/lib/myapp/"`, 1),
			`t.toml:4: data.dir: same directory as fuse.dir (/var/lib/myapp); the mount and the volume must be two directories`},
		{"boolean in quotes", strings.Replace(goodConfig, "[data]", "allow-other = \"yes\"\n[data]", 1),
			`t.toml:3: fuse.allow-other: want true or false, got a string; write true or false, without quotes`},
		{"string without quotes", strings.Replace(goodConfig, `dir = "/var/lib/myapp"`, `dir = 5`, 1),
			`t.toml:2: fuse.dir: want a string, got an integer; put the value in double quotes`},
		{"bad http.addr", "[http]\naddr = \"9090\"\n" + goodConfig,
			`t.toml:2: http.addr: "9090" is not host:port; write it like ":9090" or "127.0.0.1:9090", or "off"`},
		{"zero readiness-max-lag", "[http]\nreadiness-max-lag = \"0s\"\n" + goodConfig,
			`t.toml:2: http.readiness-max-lag: must be more than 0s; omit it, and lag never makes /readyz unready`},
		{"endpoint without a scheme", withReplica(`endpoint = "minio:9000"`),
			`t.toml:10: dbs[0].replica.endpoint: "minio:9000" is not an http(s) URL; write it like "http://minio:9000" or "https://s3.example.com"`},
		{"access key without secret", withReplica(`access-key-id = "AKIA"`),
			`t.toml:8: dbs[0].replica.secret-access-key: missing, but access-key-id is set; set both, or neither to use the environment`},
		{"replica file inside the mount", strings.Replace(goodConfig, "s3://mybucket/db", "file:///var/lib/myapp/replica", 1),
			`t.toml:9: dbs[0].replica.url: file:///var/lib/myapp/replica is inside fuse.dir /var/lib/myapp; keep the replica outside the mount`},
		{"inline table url", `fuse.dir = "/var/lib/myapp"
data.dir = "/var/lib/litefs"
dbs = [
  { path = "/var/lib/myapp/a", replica = { url = "s3://b/a" } },
  { path = "/var/lib/myapp/b", replica = {
      url = "s3:/b",
  } },
]
`, `t.toml:6: dbs[1].replica.url: "s3:/b" has no bucket; write s3://bucket/path`},
		{"line after a multi-line string", "# comment\n[fuse]\ndir = \"\"\"\n/var/lib/myapp\"\"\"\nlabel = '''\nx\n[fuse]\n'''\ndebug = \"no\"\n" +
			goodConfig[len("[fuse]\ndir = \"/var/lib/myapp\"\n"):],
			"t.toml:5: fuse.label: unknown key; [fuse] takes dir, allow-other, passthrough, debug, op-metrics\n" +
				"t.toml:9: fuse.debug: want true or false, got a string; write true or false, without quotes"},
		{"syntax error: unterminated string", strings.Replace(goodConfig, `"s3://mybucket/db"`, `"s3://mybucket/db`, 1),
			`t.toml:9: dbs.replica.url: TOML syntax error: strings cannot contain newlines; fix the syntax`},
		{"syntax error: key defined twice", withReplica(`url = "s3://mybucket/x"`),
			`t.toml:10: dbs.replica.url: TOML syntax error: Key 'dbs.replica.url' has already been defined; fix the syntax`},
		{"several problems, sorted by line", `[fuse]
dir = "/var/lib/myapp"
dri = "x"
[data]
dir = "/var/lib/litefs"
[[dbs]]
path = "/elsewhere/db"
[dbs.replica]
url = "s3://b/p"
sync-interval = "soon"
`, "t.toml:3: fuse.dri: unknown key; did you mean dir?\n" +
			"t.toml:7: dbs[0].path: /elsewhere/db is not inside fuse.dir /var/lib/myapp; use the path the app opens under the mount, like \"/var/lib/myapp/db\"\n" +
			"t.toml:10: dbs[0].replica.sync-interval: bad duration \"soon\"; write it like \"1s\", \"500ms\" or \"24h\""},
	}
	if len(tests) < 20 {
		t.Fatalf("only %d bad configs", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse("t.toml", tt.text)
			if err == nil {
				t.Fatalf("no error; parsed %+v\nconfig:\n%s", c, tt.text)
			}
			if err.Error() != tt.want {
				t.Fatalf("error:\n%s\nwant:\n%s\nconfig:\n%s", err, tt.want, tt.text)
			}
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Problems) != strings.Count(tt.want, "\n")+1 {
				t.Fatalf("want a *Error with one problem per line, got %#v", err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := config.Parse("t.toml", goodConfig)
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != "t.toml" || c.FUSE.Dir != "/var/lib/myapp" || c.Data.Dir != "/var/lib/litefs" {
		t.Fatalf("paths: %+v", c)
	}
	if !*c.FUSE.AllowOther || !*c.FUSE.Passthrough || c.FUSE.Debug {
		t.Errorf("fuse defaults: allow-other %v passthrough %v debug %v; want true true false", *c.FUSE.AllowOther, *c.FUSE.Passthrough, c.FUSE.Debug)
	}
	if c.HTTP.Addr != ":9090" || c.HTTP.ReadinessMaxLag != 0 {
		t.Errorf("http defaults: %+v", c.HTTP)
	}
	if c.ShutdownTimeout != config.Duration(30*time.Second) {
		t.Errorf("shutdown-timeout %v", c.ShutdownTimeout)
	}
	if len(c.DBs) != 1 {
		t.Fatalf("dbs: %+v", c.DBs)
	}
	db := c.DBs[0]
	r := db.Replica
	if db.Path != "/var/lib/myapp/db" || db.AllowEmptyDB {
		t.Errorf("db: %+v", db)
	}
	if r.URL != "s3://mybucket/db" || r.Endpoint != "" || r.Region != "" || r.ForcePathStyle || r.AccessKeyID != "" || r.SecretAccessKey != "" {
		t.Errorf("replica: %+v", r)
	}
	for _, d := range []struct {
		name      string
		got, want time.Duration
	}{
		{"lease-ttl", time.Duration(r.LeaseTTL), 30 * time.Second},
		{"sync-interval", time.Duration(*r.SyncInterval), time.Second},
		{"snapshot-interval", time.Duration(r.SnapshotInterval), 24 * time.Hour},
		{"retention", time.Duration(r.Retention), 72 * time.Hour},
	} {
		if d.got != d.want {
			t.Errorf("%s = %v, want %v", d.name, d.got, d.want)
		}
	}
	if !*r.ConditionalWrites {
		t.Error("conditional-writes defaults to false")
	}
	if r.StagingMaxBytes != 1<<30 {
		t.Errorf("staging-max-bytes = %d", r.StagingMaxBytes)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate after Parse: %v", err)
	}
}

func TestConfigExplicitValues(t *testing.T) {
	c, err := config.Read(filepath.Join("..", "testdata", "config", "good-full.toml"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.DBs[0].Replica
	switch {
	case time.Duration(c.ShutdownTimeout) != 45*time.Second,
		*c.FUSE.AllowOther, *c.FUSE.Passthrough, !c.FUSE.Debug,
		c.HTTP.Addr != "127.0.0.1:9091", time.Duration(c.HTTP.ReadinessMaxLag) != 5*time.Minute,
		!c.DBs[0].AllowEmptyDB,
		r.URL != "s3://mybucket/myapp/db", r.Endpoint != "http://versitygw:7070", r.Region != "us-east-1",
		!r.ForcePathStyle, r.AccessKeyID != "AKIAEXAMPLE",
		r.SecretAccessKey != "se$cret/with$dollars", // a bare $ is literal
		*r.ConditionalWrites,
		time.Duration(r.LeaseTTL) != 10*time.Second,
		r.SyncInterval == nil || *r.SyncInterval != 0, // "0s" is kept, not defaulted
		time.Duration(r.SnapshotInterval) != 6*time.Hour,
		time.Duration(r.Retention) != 168*time.Hour,
		r.StagingMaxBytes != 256<<20:
		t.Fatalf("explicit values not kept: %+v %+v", c, r)
	}
}

func TestConfigSizes(t *testing.T) {
	for in, want := range map[string]config.Size{
		"1048576": 1 << 20, "1MiB": 1 << 20, "1 GiB": 1 << 30, "512mib": 512 << 20,
		"2GB": 2e9, "100MB": 100e6, "3KiB": 3 << 10, "1TiB": 1 << 40, "7B": 7,
	} {
		var s config.Size
		if err := s.UnmarshalText([]byte(in)); err != nil || s != want {
			t.Errorf("%q: %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"", "1G", "1.5GiB", "-1", "GiB", "99999999999TiB"} {
		var s config.Size
		if err := s.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q: no error, got %d", in, s)
		}
	}
	if got := config.Size(1 << 30).String(); got != "1GiB" {
		t.Errorf("String: %s", got)
	}
}

func TestConfigEnv(t *testing.T) {
	t.Setenv("LITEFS_TEST_BUCKET", "envbucket")
	t.Setenv("LITEFS_TEST_EMPTY", "")
	t.Setenv("LITEFS_TEST_SYNC", "0s")
	os.Unsetenv("LITEFS_TEST_UNSET")
	for in, want := range map[string]string{
		"${LITEFS_TEST_BUCKET}":                      "envbucket",
		"s3://${LITEFS_TEST_BUCKET}/db":              "s3://envbucket/db",
		"${LITEFS_TEST_UNSET:-fallback}":             "fallback",
		"${LITEFS_TEST_UNSET:-}":                     "",
		"${LITEFS_TEST_EMPTY}":                       "",
		"${LITEFS_TEST_EMPTY:-used when empty}":      "used when empty",
		"${LITEFS_TEST_BUCKET:-unused}":              "envbucket",
		"pa$$word$LITEFS_TEST_BUCKET$":               "pa$$word$LITEFS_TEST_BUCKET$",
		"${not closed":                               "${not closed",
		"${1BAD}":                                    "${1BAD}",
		"$${LITEFS_TEST_BUCKET}":                     "$envbucket",
		"${LITEFS_TEST_UNSET:-a}${LITEFS_TEST_SYNC}": "a0s",
	} {
		got, err := config.ExpandEnv(in)
		if err != nil || got != want {
			t.Errorf("ExpandEnv(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := config.ExpandEnv("${LITEFS_TEST_UNSET}"); err == nil ||
		err.Error() != "environment variable LITEFS_TEST_UNSET is not set; set it, or write ${LITEFS_TEST_UNSET:-default} to give a default" {
		t.Errorf("unset: %v", err)
	}

	// In a config: strings are expanded after parsing, so a value cannot
	// break the TOML, and keys and comments are never expanded.
	t.Setenv("LITEFS_TEST_QUOTE", `s3://b/"quoted"`)
	text := strings.Replace(goodConfig, `url = "s3://mybucket/db"`,
		`url = "s3://${LITEFS_TEST_BUCKET}/db" # ${LITEFS_TEST_UNSET} in a comment is not expanded
sync-interval = "${LITEFS_TEST_SYNC}"
region = "${LITEFS_TEST_UNSET:-us-east-1}"
endpoint = "${LITEFS_TEST_UNSET:-}"
secret-access-key = "${LITEFS_TEST_QUOTE}"
access-key-id = "AKIA"`, 1)
	c, err := config.Parse("t.toml", text)
	if err != nil {
		t.Fatal(err)
	}
	r := c.DBs[0].Replica
	if r.URL != "s3://envbucket/db" || *r.SyncInterval != 0 || r.Region != "us-east-1" || r.Endpoint != "" || r.SecretAccessKey != `s3://b/"quoted"` {
		t.Fatalf("expanded: %+v", r)
	}
	c, err = config.Read(filepath.Join("..", "testdata", "config", "good-env.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.FUSE.Dir != "/var/lib/myapp" || c.DBs[0].Replica.URL != "s3://mybucket/db" {
		t.Fatalf("defaults from ${VAR:-default}: %+v", c)
	}
}

func TestConfigPath(t *testing.T) {
	t.Setenv("LITEFS_CONFIG", "")
	if got := config.FilePath(""); got != "/etc/litefs.toml" {
		t.Errorf("default: %s", got)
	}
	t.Setenv("LITEFS_CONFIG", "/from/env.toml")
	if got := config.FilePath(""); got != "/from/env.toml" {
		t.Errorf("$LITEFS_CONFIG not honoured: %s", got)
	}
	if got := config.FilePath("/from/flag.toml"); got != "/from/flag.toml" {
		t.Errorf("-config does not win: %s", got)
	}

	// $LITEFS_CONFIG is read, and a missing file says where the path came from.
	dir := t.TempDir()
	p := filepath.Join(dir, "litefs.toml")
	t.Setenv("LITEFS_CONFIG", p)
	_, err := config.Read(config.FilePath(""))
	if want := "config file " + p + " (from $LITEFS_CONFIG) does not exist; fix $LITEFS_CONFIG or pass -config FILE"; err == nil || err.Error() != want {
		t.Errorf("missing $LITEFS_CONFIG file: %v\nwant: %s", err, want)
	}
	if err := os.WriteFile(p, []byte(goodConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Read(config.FilePath(""))
	if err != nil || c.Path != p {
		t.Fatalf("Read($LITEFS_CONFIG): %v", err)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(goodConfig, "[data]", "bad = 1\n[data]", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Read(p); err == nil || err.Error() != p+":3: fuse.bad: unknown key; [fuse] takes dir, allow-other, passthrough, debug, op-metrics" {
		t.Errorf("messages name the file read: %v", err)
	}
	t.Setenv("LITEFS_CONFIG", "")
	_, err = config.Read(filepath.Join(dir, "flag.toml"))
	if want := "config file " + filepath.Join(dir, "flag.toml") + " does not exist; check the -config path"; err == nil || err.Error() != want {
		t.Errorf("missing -config file: %v", err)
	}
	if _, statErr := os.Stat(config.DefaultPath); os.IsNotExist(statErr) {
		_, err = config.Read(config.FilePath(""))
		if want := "config file /etc/litefs.toml does not exist; pass -config FILE or set $LITEFS_CONFIG (there is no built-in default)"; err == nil || err.Error() != want {
			t.Errorf("missing default file: %v", err)
		}
	}
}

func TestConfigPaths(t *testing.T) {
	c, err := config.Parse("t.toml", goodConfig+`
[[dbs]]
path = "/var/lib/myapp/sub/../sub/app.db"
[dbs.replica]
url = "file:///srv/replica/app"
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ fuse, rel, data string }{
		{"/var/lib/myapp/db", "db", "/var/lib/litefs/db"},
		{"/var/lib/myapp/sub/app.db", "sub/app.db", "/var/lib/litefs/sub/app.db"},
		{"/var/lib/myapp/..db", "..db", "/var/lib/litefs/..db"},
	} {
		if rel, err := c.RelPath(tt.fuse); err != nil || rel != tt.rel {
			t.Errorf("RelPath(%s) = %q, %v; want %q", tt.fuse, rel, err, tt.rel)
		}
		if dp, err := c.DataPath(tt.fuse); err != nil || dp != tt.data {
			t.Errorf("DataPath(%s) = %q, %v; want %q", tt.fuse, dp, err, tt.data)
		}
	}
	for _, p := range []string{"/var/lib/myapp", "/var/lib/other/db", "/var/lib/myapp/../db", "/var/lib/myapp/.litefs/db"} {
		if rel, err := c.RelPath(p); err == nil {
			t.Errorf("RelPath(%s) = %q, want an error", p, rel)
		}
	}
	if c.DBs[1].Path != "/var/lib/myapp/sub/app.db" {
		t.Errorf("db path not cleaned: %s", c.DBs[1].Path)
	}
	for path, want := range map[string]string{
		"/var/lib/myapp/db":           "/var/lib/myapp/db",
		"/var/lib/litefs/db":          "/var/lib/myapp/db", // the data path finds it too
		"/var/lib/myapp//db":          "/var/lib/myapp/db",
		"/var/lib/litefs/sub/app.db":  "/var/lib/myapp/sub/app.db",
		"/var/lib/myapp/sub/./app.db": "/var/lib/myapp/sub/app.db",
	} {
		db, err := c.FindDB(path)
		if err != nil || db.Path != want {
			t.Errorf("FindDB(%s) = %v, %v; want %s", path, db, err, want)
		}
	}
	_, err = c.FindDB("/var/lib/myapp/nope")
	if want := "database /var/lib/myapp/nope is not in t.toml (it has: /var/lib/myapp/db, /var/lib/myapp/sub/app.db)"; err == nil || err.Error() != want {
		t.Errorf("FindDB unknown: %v", err)
	}
}

// TestConfigValidateInCode: a Config built in code is checked the same way,
// without line numbers.
func TestConfigValidateInCode(t *testing.T) {
	c := &config.Config{Path: "code", FUSE: config.FUSEConfig{Dir: "/mnt"}, Data: config.DataConfig{Dir: "/data"},
		DBs: []config.DBConfig{{Path: "/mnt/db", Replica: config.ReplicaConfig{URL: "s3://b/p", StagingMaxBytes: 1 << 30,
			LeaseTTL: config.Duration(time.Second), SnapshotInterval: config.Duration(time.Hour), Retention: -1}}},
		ShutdownTimeout: config.Duration(time.Second)}
	err := c.Validate()
	if want := "code: dbs[0].replica.retention: must be more than 0s; omit it for the default 72h"; err == nil || err.Error() != want {
		t.Fatalf("Validate: %v\nwant: %s", err, want)
	}
}

// TestConfigTestdata: each testdata/config/good-*.toml parses; each
// bad-*.toml fails with exactly its "# error: " lines (FILE stands for its
// path).
func TestConfigTestdata(t *testing.T) {
	os.Unsetenv("LITEFS_TEST_UNSET_FUSE_DIR")
	files, err := filepath.Glob(filepath.Join("..", "testdata", "config", "*.toml"))
	if err != nil || len(files) < 8 {
		t.Fatalf("testdata: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, l := range strings.Split(string(b), "\n") {
				if e, ok := strings.CutPrefix(l, "# error: "); ok {
					want = append(want, strings.Replace(e, "FILE", f, 1))
				}
			}
			c, err := config.Read(f)
			switch {
			case strings.HasPrefix(filepath.Base(f), "good-"):
				if err != nil {
					t.Fatal(err)
				}
				if err := c.Validate(); err != nil {
					t.Fatalf("Validate: %v", err)
				}
			case err == nil:
				t.Fatalf("no error; want\n%s", strings.Join(want, "\n"))
			case err.Error() != strings.Join(want, "\n"):
				t.Fatalf("error:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
			}
		})
	}
}
