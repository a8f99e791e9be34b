package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// LogBuffer collects a log written from many goroutines.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Reset forgets what was written.
func (l *LogBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// Config is the litefs.toml of one database at <FUSEDir>/db (DBName).
// Empty fields are left out, so litefs's defaults apply.
type Config struct {
	FUSEDir     string
	DataDir     string
	HTTPAddr    string // "off" turns HTTP off
	HTTPExtra   string // more [http] keys, as TOML lines (needs HTTPAddr)
	Passthrough *bool
	FUSEExtra   string // more [fuse] keys, as TOML lines
	DBName      string // default "db"
	DBExtra     string // more [[dbs]] keys, as TOML lines
	Replica     Replica
}

// Replica is the [dbs.replica] table.
type Replica struct {
	URL          string
	SyncInterval string
	// S3 settings (with force-path-style) when Endpoint is set.
	Endpoint, Region, AccessKey, SecretKey string
	Extra                                  string // more keys, as TOML lines
}

// DBPath is the database's path as the app sees it.
func (c Config) DBPath() string { return filepath.Join(c.FUSEDir, c.dbName()) }

func (c Config) dbName() string {
	if c.DBName == "" {
		return "db"
	}
	return c.DBName
}

// TOML renders the config.
func (c Config) TOML() string {
	return MultiConfig{
		FUSEDir: c.FUSEDir, DataDir: c.DataDir, HTTPAddr: c.HTTPAddr, HTTPExtra: c.HTTPExtra,
		Passthrough: c.Passthrough, FUSEExtra: c.FUSEExtra,
		DBs: []MultiDB{{Name: c.dbName(), Extra: c.DBExtra, Replica: c.Replica}},
	}.TOML()
}

func line(b *strings.Builder, s string) {
	if s = strings.TrimSpace(s); s != "" {
		b.WriteString(s + "\n")
	}
}

// Write writes the config to path and returns path.
func (c Config) Write(tb testing.TB, path string) string {
	tb.Helper()
	if err := os.WriteFile(path, []byte(c.TOML()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Bool is a *bool for Config.Passthrough.
func Bool(v bool) *bool { return &v }

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds litefs, restore and the example app once per test
// process and returns the directory that holds them.
func Binaries(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "litefs-bin-")
		if buildErr != nil {
			return
		}
		const mod = "github.com/litefs-dev/litefs/"
		out, err := exec.Command("go", "build", "-o", binDir, mod+"cmd/litefs", mod+"cmd/restore", mod+"examples/myapp").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binDir
}

// FreeAddr is a loopback address with a port free right now.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// RequireFUSE skips unless this process can mount FUSE directly: /dev/fuse
// exists and it is root (DirectMount needs CAP_SYS_ADMIN).
func RequireFUSE(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		tb.Skipf("no /dev/fuse (%v): FUSE tests need it", err)
	}
	if os.Geteuid() != 0 {
		tb.Skip("not root: FUSE tests mount directly (DirectMount) and need CAP_SYS_ADMIN")
	}
}
