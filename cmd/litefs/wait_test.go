package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/litefs-dev/litefs/internal/daemon"
)

// waitServer answers GET /wait with the given statuses in turn (the last
// one from then on) and records each request.
type waitServer struct {
	mu     sync.Mutex
	codes  []int
	reqs   []*http.Request
	addr   string
	answer daemon.TXIDs
}

func newWaitServer(t *testing.T, codes ...int) *waitServer {
	t.Helper()
	ws := &waitServer{codes: codes, answer: daemon.TXIDs{DB: "db", Path: "/var/lib/myapp/db", TXID: 0x2b, ReplicaTXID: 0x2a}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/wait" {
			http.NotFound(w, r)
			return
		}
		ws.mu.Lock()
		ws.reqs = append(ws.reqs, r)
		code := ws.codes[min(len(ws.reqs), len(ws.codes))-1]
		ws.mu.Unlock()
		switch code {
		case 200:
			_ = json.NewEncoder(w).Encode(ws.answer)
		case 504:
			http.Error(w, "timed out after 1s: the replica holds TXID 0000000000000029 of db, not yet 000000000000002a", code)
		case 409:
			http.Error(w, "replication of db stopped (fenced: another writer owns the replica of db)", code)
		case 401:
			http.Error(w, "unauthorized: send the [http] token as Authorization: Bearer <token>", code)
		case 404:
			http.Error(w, "no such database: /x/db (this daemon replicates /var/lib/myapp/db)", code)
		}
	}))
	t.Cleanup(srv.Close)
	ws.addr = strings.TrimPrefix(srv.URL, "http://")
	return ws
}

func (ws *waitServer) requests() []*http.Request {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.reqs
}

// A reached TXID exits 0 and says so; the request names the database by
// its absolute path, the TXID in hex and the timeout.
func TestWaitReached(t *testing.T) {
	ws := newWaitServer(t, 200)
	t.Setenv("LITEFS_HTTP_TOKEN", "")
	code, stdout, stderr := runCLI(t, "wait", "-addr", ws.addr, "-txid", "42", "-timeout", "7s", "/var/lib/myapp/db")
	if code != 0 || stderr != "" || stdout != "/var/lib/myapp/db: the replica holds TXID 000000000000002a\n" {
		t.Fatalf("litefs wait: exit %d, %q, %q", code, stdout, stderr)
	}
	reqs := ws.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	q := reqs[0].URL.Query()
	if q.Get("db") != "/var/lib/myapp/db" || q.Get("txid") != "000000000000002a" || q.Get("timeout") != "7s" || reqs[0].Header.Get("Authorization") != "" {
		t.Fatalf("request %s, Authorization %q", reqs[0].URL, reqs[0].Header.Get("Authorization"))
	}

	// A relative DB is taken from the working directory.
	wd, _ := os.Getwd()
	if code, _, stderr := runCLI(t, "wait", "-addr", ws.addr, "-txid", "000000000000002a", "sub/db"); code != 0 {
		t.Fatalf("relative DB: exit %d, %q", code, stderr)
	}
	if got := ws.requests()[1].URL.Query().Get("db"); got != filepath.Join(wd, "sub/db") {
		t.Fatalf("relative DB sent as %q", got)
	}
}

// The timeout, a stopped replication, a missing token, an unknown
// database and no daemon are exit status 1 with the daemon's reason.
func TestWaitFails(t *testing.T) {
	t.Setenv("LITEFS_HTTP_TOKEN", "")
	for _, tc := range []struct {
		code int
		want string
	}{
		{504, "litefs wait: timed out after 1s: the replica holds TXID 0000000000000029 of db, not yet 000000000000002a\n"},
		{409, "litefs wait: replication of db stopped (fenced: another writer owns the replica of db)\n"},
		{401, "litefs wait: unauthorized: send the [http] token as Authorization: Bearer <token> (give -token, $LITEFS_HTTP_TOKEN or a -config whose [http] token is set)\n"},
		{404, "litefs wait: no such database: /x/db (this daemon replicates /var/lib/myapp/db)\n"},
	} {
		ws := newWaitServer(t, tc.code)
		code, stdout, stderr := runCLI(t, "wait", "-addr", ws.addr, "-timeout", "0s", "-txid", "42", "/x/db")
		if code != 1 || stdout != "" || stderr != tc.want {
			t.Errorf("daemon answers %d: exit %d, %q, %q; want 1, %q", tc.code, code, stdout, stderr, tc.want)
		}
		if n := len(ws.requests()); n != 1 {
			t.Errorf("daemon answers %d: %d requests, want 1", tc.code, n)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	code, _, stderr := runCLI(t, "wait", "-addr", addr, "-txid", "1", "/x/db")
	if code != 1 || !strings.HasPrefix(stderr, "litefs wait: no litefs daemon answers at "+addr+": is it running?") {
		t.Errorf("no daemon: exit %d, %q", code, stderr)
	}
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	if code, _, stderr := runCLI(t, "wait", "-addr", strings.TrimPrefix(other.URL, "http://"), "-txid", "1", "/x/db"); code != 1 || !strings.Contains(stderr, "answers 404 for /wait: not a litefs daemon") {
		t.Errorf("not litefs: exit %d, %q", code, stderr)
	}
}

// A 504 before -timeout has passed asks again (a wait longer than one
// request may take).
func TestWaitAsksAgain(t *testing.T) {
	ws := newWaitServer(t, 504, 504, 200)
	if code, _, stderr := runCLI(t, "wait", "-addr", ws.addr, "-timeout", "1m", "-txid", "42", "/var/lib/myapp/db"); code != 0 {
		t.Fatalf("exit %d, %q", code, stderr)
	}
	if n := len(ws.requests()); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
}

// The token is -token, else $LITEFS_HTTP_TOKEN, else the config's; the
// address -addr, else the config's.
func TestWaitToken(t *testing.T) {
	ws := newWaitServer(t, 200)
	_, port, _ := net.SplitHostPort(ws.addr)
	cfg := writeConfig(t, `addr = ":`+port+`"`+"\ntoken = \"from-config\"")
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"", []string{"-config", cfg}, "Bearer from-config"},
		{"from-env", []string{"-config", cfg}, "Bearer from-env"},
		{"from-env", []string{"-config", cfg, "-token", "from-flag"}, "Bearer from-flag"},
		{"", []string{"-addr", ws.addr}, ""},
		{"", []string{"-addr", ws.addr, "-config", cfg}, "Bearer from-config"},
	} {
		t.Setenv("LITEFS_HTTP_TOKEN", tc.env)
		args := append(append([]string{"wait"}, tc.args...), "-txid", "1", "/var/lib/myapp/db")
		if code, _, stderr := runCLI(t, args...); code != 0 {
			t.Fatalf("litefs %q: exit %d, %q", args, code, stderr)
		}
		reqs := ws.requests()
		if got := reqs[len(reqs)-1].Header.Get("Authorization"); got != tc.want {
			t.Errorf("$LITEFS_HTTP_TOKEN=%q litefs %q: Authorization %q, want %q", tc.env, args, got, tc.want)
		}
	}
	off := writeConfig(t, `addr = "off"`)
	if code, _, stderr := runCLI(t, "wait", "-config", off, "-txid", "1", "/var/lib/myapp/db"); code != 1 || !strings.Contains(stderr, `http.addr is "off" in `+off) {
		t.Errorf("http off: exit %d, %q", code, stderr)
	}
}

// Mistakes in the command line exit 2 with one line; -h exits 0.
func TestWaitUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-txid", "1"}, "litefs wait: give the database path (DB) (run 'litefs wait -h' for the usage)\n"},
		{[]string{"-txid", "1", "a", "b"}, "litefs wait: unexpected argument \"b\": give one database path (run 'litefs wait -h' for the usage)\n"},
		{[]string{"/mnt/db"}, "litefs wait: give -txid N: the TXID to wait for (run 'litefs wait -h' for the usage)\n"},
		{[]string{"-txid", "x", "/mnt/db"}, "litefs wait: -txid \"x\": write 16 hex digits (0000000000000042) or a decimal number (66) (run 'litefs wait -h' for the usage)\n"},
		{[]string{"-txid", "1", "-timeout", "-1s", "/mnt/db"}, "litefs wait: -timeout -1s: give 0s or more (run 'litefs wait -h' for the usage)\n"},
		{[]string{"-txid", "1", "-addr", "9090", "/mnt/db"}, "litefs wait: -addr: address \"9090\": want HOST:PORT, like 127.0.0.1:9090 or :9090 (run 'litefs wait -h' for the usage)\n"},
	} {
		code, stdout, stderr := runCLI(t, append([]string{"wait"}, tc.args...)...)
		if code != 2 || stdout != "" || stderr != tc.want {
			t.Errorf("litefs wait %q: exit %d, %q, %q; want 2, %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
	if code, _, stderr := runCLI(t, "wait", "-nope"); code != 2 || !strings.Contains(stderr, "flag provided but not defined: -nope") {
		t.Errorf("litefs wait -nope: exit %d, %q", code, stderr)
	}
	for _, h := range []string{"-h", "-help", "--help"} {
		if code, _, stderr := runCLI(t, "wait", h); code != 0 || !strings.HasPrefix(stderr, "usage: litefs wait ") || !strings.Contains(stderr, "-txid") {
			t.Errorf("litefs wait %s: exit %d, %q", h, code, stderr)
		}
	}
	if code, stdout, _ := runCLI(t, "-h"); code != 0 || !strings.Contains(stdout, "  wait     wait until the replica holds") {
		t.Errorf("litefs -h does not list wait: %q", stdout)
	}
}
