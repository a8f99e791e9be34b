package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/litefs-dev/litefs/internal/daemon"
)

func TestDialAddr(t *testing.T) {
	for in, want := range map[string]string{
		":9090":          "127.0.0.1:9090",
		"0.0.0.0:9090":   "127.0.0.1:9090",
		"[::]:9090":      "127.0.0.1:9090",
		"127.0.0.1:9090": "127.0.0.1:9090",
		"[::1]:9090":     "[::1]:9090",
		"litefs:9090":    "litefs:9090",
	} {
		if got, err := dialAddr(in); err != nil || got != want {
			t.Errorf("dialAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"9090", "host:", ""} {
		if got, err := dialAddr(in); err == nil {
			t.Errorf("dialAddr(%q) = %q, want an error", in, got)
		}
	}
}

// statusServer answers GET /status as a daemon would.
func statusServer(t *testing.T, dbs []daemon.DBStatus) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(dbs)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// The text is aligned columns under a header, then why a stopped database
// stopped; -json is the daemon's array.
func TestStatusOutput(t *testing.T) {
	addr := statusServer(t, []daemon.DBStatus{
		{Name: "db", Path: "/var/lib/litefs/db", State: "replicating", TXID: 0x2a, ReplicaTXID: 0x29, LagSeconds: 1.2345, StagedBytes: 4096},
		{Name: "sub/other.db", Path: "/var/lib/litefs/sub/other.db", State: "stopped", Error: "fenced", TXID: 7, ReplicaTXID: 7},
	})
	code, stdout, stderr := runCLI(t, "status", "-addr", addr)
	want := `NAME          PATH                          STATE        TXID              REPLICA_TXID      LAG     STAGED_BYTES
db            /var/lib/litefs/db            replicating  000000000000002a  0000000000000029  1.235s  4096
sub/other.db  /var/lib/litefs/sub/other.db  stopped      0000000000000007  0000000000000007  0s      0
sub/other.db: stopped: fenced
`
	if code != 0 || stderr != "" || stdout != want {
		t.Fatalf("litefs status: exit %d, stderr %q\n%s\nwant:\n%s", code, stderr, stdout, want)
	}
	code, stdout, _ = runCLI(t, "status", "-json", "-addr", addr)
	var got []map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); code != 0 || err != nil {
		t.Fatalf("litefs status -json: exit %d, %v\n%s", code, err, stdout)
	}
	if len(got) != 2 || got[0]["name"] != "db" || got[0]["txid"] != "000000000000002a" || got[0]["replica_txid"] != "0000000000000029" ||
		got[0]["lag_seconds"] != 1.2345 || got[0]["staged_bytes"] != 4096.0 || got[0]["state"] != "replicating" ||
		got[1]["error"] != "fenced" {
		t.Fatalf("litefs status -json printed:\n%s", stdout)
	}
}

// The address comes from the config's [http] addr; a host-less one is
// asked on loopback.
func TestStatusConfigAddr(t *testing.T) {
	_, port, _ := net.SplitHostPort(statusServer(t, []daemon.DBStatus{{Name: "db", State: "waiting"}}))
	cfg := writeConfig(t, `addr = ":`+port+`"`)
	if code, stdout, stderr := runCLI(t, "status", "-config", cfg); code != 0 || !strings.Contains(stdout, "\ndb ") {
		t.Fatalf("litefs status -config (addr :%s): exit %d, %q, %q", port, code, stdout, stderr)
	}
	cfg = writeConfig(t, `addr = "off"`)
	if code, _, stderr := runCLI(t, "status", "-config", cfg); code != 1 || !strings.Contains(stderr, `http.addr is "off" in `+cfg) {
		t.Fatalf("http off: exit %d, %q", code, stderr)
	}
}

func writeConfig(t *testing.T, httpLines string) string {
	t.Helper()
	root := t.TempDir()
	path := filepath.Join(root, "litefs.toml")
	text := "[fuse]\ndir = \"" + root + "/mnt\"\n[data]\ndir = \"" + root + "/data\"\n[http]\n" + httpLines +
		"\n[[dbs]]\npath = \"" + root + "/mnt/db\"\n[dbs.replica]\nurl = \"file://" + root + "/replica\"\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Nothing listening: one line saying no daemon answers, exit 1. Something
// else listening: it says so.
func TestStatusNoDaemon(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	code, stdout, stderr := runCLI(t, "status", "-addr", addr)
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "litefs status: no litefs daemon answers at "+addr+": is it running?") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("no daemon: exit %d, %q, %q", code, stdout, stderr)
	}

	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	addr = strings.TrimPrefix(other.URL, "http://")
	if code, _, stderr := runCLI(t, "status", "-addr", addr); code != 1 || !strings.Contains(stderr, "answers 404 for /status") {
		t.Errorf("not litefs: exit %d, %q", code, stderr)
	}
}
