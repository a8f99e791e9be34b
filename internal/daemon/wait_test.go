package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/replica/file"
)

// waitDaemon is a daemon (not mounted) with one database "sub/db" that
// exists (TXID 1, staged, not in the replica) and "later", which does not.
func waitDaemon(t *testing.T, token string) (*Daemon, *litefs.DB) {
	t.Helper()
	dataDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dataDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	sdb, err := sql.Open("sqlite3", "file:"+filepath.Join(dataDir, "sub", "db")+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sdb.Exec(`CREATE TABLE t (x)`); err != nil {
		t.Fatal(err)
	}
	sdb.Close()
	ctx := context.Background()
	dm := New(&config.Config{FUSE: config.FUSEConfig{Dir: "/var/lib/myapp"}, Data: config.DataConfig{Dir: dataDir},
		HTTP: config.HTTPConfig{Token: token}}, nil)
	for _, name := range []string{"sub/db", "later"} {
		db, err := litefs.OpenDB(ctx, litefs.DBOptions{Name: name, DataDir: dataDir, Client: file.NewClient(filepath.Join(t.TempDir(), "replica"))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close(ctx) })
		dm.dbs = append(dm.dbs, db)
	}
	return dm, dm.dbs[0]
}

// get serves one GET from loopback (no token) and returns the status and
// body.
func get(dm *Daemon, target string) (int, string) {
	req := httptest.NewRequest("GET", target, nil)
	req.RemoteAddr = "127.0.0.1:5000"
	rec := httptest.NewRecorder()
	dm.handler().ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// GET /txid finds the database by the path the app opens, its data-dir
// path or its name, and answers its local and replica TXIDs.
func TestTXIDEndpoint(t *testing.T) {
	dm, db := waitDaemon(t, "")
	for _, p := range []string{"/var/lib/myapp/sub/db", "/var/lib/myapp//sub/./db", filepath.Join(dm.cfg.Data.Dir, "sub/db"), "sub/db", "./sub/db"} {
		code, body := get(dm, "/txid?db="+url.QueryEscape(p))
		var got TXIDs
		if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil {
			t.Fatalf("GET /txid?db=%s: %d %q (%v)", p, code, body, err)
		}
		if want := (TXIDs{DB: "sub/db", Path: "/var/lib/myapp/sub/db", TXID: 1, ReplicaTXID: 0}); got != want {
			t.Fatalf("GET /txid?db=%s: %+v, want %+v", p, got, want)
		}
	}
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, body := get(dm, "/txid?db=sub/db")
	if code != 200 || !strings.Contains(body, `"txid":"0000000000000001","replica_txid":"0000000000000001"`) {
		t.Fatalf("after a flush: %d %q", code, body)
	}
	if code, body := get(dm, "/txid?db=later"); code != 200 || !strings.Contains(body, `"txid":"0000000000000000"`) {
		t.Fatalf("a database that does not exist yet: %d %q", code, body)
	}
}

// GET /wait answers 200 once the replica holds the TXID (waking up when an
// upload confirms it), 504 when the timeout passes first, 400 and 404 for
// bad arguments.
func TestWaitEndpoint(t *testing.T) {
	dm, db := waitDaemon(t, "")
	ctx := context.Background()

	start := time.Now()
	code, body := get(dm, "/wait?db=sub/db&txid=1&timeout=100ms")
	if code != 504 || !strings.Contains(body, "timed out after 100ms: the replica holds TXID 0000000000000000 of sub/db, not yet 0000000000000001") ||
		strings.Contains(body, "last commit") {
		t.Fatalf("wait before the upload: %d %q, want 504", code, body)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("504 after %v, before the timeout", d)
	}
	if code, body := get(dm, "/wait?db=sub/db&txid=9&timeout=0s"); code != 504 || !strings.Contains(body, "(the database's last commit is 0000000000000001)") {
		t.Fatalf("wait for a TXID past the last commit: %d %q", code, body)
	}

	// A wait in progress returns once an upload confirms its TXID.
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(200 * time.Millisecond)
		if err := db.Flush(ctx); err != nil {
			t.Error(err)
		}
	}()
	start = time.Now()
	code, body = get(dm, "/wait?db=/var/lib/myapp/sub/db&txid=0000000000000001&timeout=10s")
	<-done
	var got TXIDs
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil || got.ReplicaTXID != 1 || got.TXID != 1 || got.DB != "sub/db" {
		t.Fatalf("wait across the upload: %d %q (%v)", code, body, err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
		t.Fatalf("the wait returned after %v; the upload came after 200ms", d)
	}
	if code, _ := get(dm, "/wait?db=sub/db&txid=1"); code != 200 {
		t.Fatalf("wait for a TXID already replicated: %d", code)
	}
	if code, _ := get(dm, "/wait?db=later&txid=0&timeout=0s"); code != 200 {
		t.Fatalf("wait for TXID 0: %d", code)
	}

	for _, tc := range []struct {
		query string
		code  int
		want  string
	}{
		{"txid=1", 400, "give db=PATH"},
		{"db=sub/db", 400, "give txid=N"},
		{"db=sub/db&txid=x", 400, `txid "x": write 16 hex digits (0000000000000042) or a decimal number (66)`},
		{"db=sub/db&txid=-1", 400, `txid "-1"`},
		{"db=sub/db&txid=1&timeout=5", 400, `timeout "5": give a duration from 0s to 5m0s, like 5s`},
		{"db=sub/db&txid=1&timeout=-1s", 400, `timeout "-1s"`},
		{"db=sub/db&txid=1&timeout=6m", 400, `timeout "6m"`},
		{"db=nope&txid=1", 404, "no such database: nope (this daemon replicates /var/lib/myapp/sub/db, /var/lib/myapp/later)"},
		{"db=/var/lib/other/sub/db&txid=1", 404, "no such database: /var/lib/other/sub/db"},
		{"db=/var/lib/myapp&txid=1", 404, "no such database"},
		{"db=../myapp/sub/db&txid=1", 404, "no such database"},
	} {
		code, body := get(dm, "/wait?"+tc.query)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET /wait?%s: %d %q, want %d %q", tc.query, code, body, tc.code, tc.want)
		}
	}
	if code, _ := get(dm, "/txid?db=nope"); code != 404 {
		t.Errorf("GET /txid?db=nope: %d, want 404", code)
	}
}

// /txid and /wait are control endpoints: the token when one is set, else
// loopback only.
func TestWaitAccess(t *testing.T) {
	for _, tc := range []struct {
		token, remote, auth string
		want                int
	}{
		{"", "127.0.0.1:5000", "", 200},
		{"", "[::1]:5000", "", 200},
		{"", "10.1.2.3:5000", "", 403},
		{"tok", "127.0.0.1:5000", "", 401},
		{"tok", "10.1.2.3:5000", "Bearer nope", 401},
		{"tok", "10.1.2.3:5000", "Bearer tok", 200},
	} {
		dm, _ := waitDaemon(t, tc.token)
		for _, target := range []string{"/txid?db=sub/db", "/wait?db=sub/db&txid=0"} {
			req := httptest.NewRequest("GET", target, nil)
			req.RemoteAddr = tc.remote
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			dm.handler().ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("token %q, %s from %s with %q: %d %q, want %d", tc.token, target, tc.remote, tc.auth, rec.Code, rec.Body.String(), tc.want)
			}
		}
	}
}

func TestParseTXID(t *testing.T) {
	for in, want := range map[string]ltx.TXID{"000000000000002a": 42, "42": 42, "0": 0, "0000000000000000": 0, "1000000000000000": 1 << 60} {
		if got, err := ParseTXID(in); err != nil || got != want {
			t.Errorf("ParseTXID(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2a", "0x2a", "00000000000000zz", "-1", "1.5"} {
		if got, err := ParseTXID(in); err == nil {
			t.Errorf("ParseTXID(%q) = %d, want an error", in, got)
		}
	}
}
