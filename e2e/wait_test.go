package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica"
)

// txidAnswer is GET /txid's answer (and a successful GET /wait's).
type txidAnswer struct {
	DB          string   `json:"db"`
	Path        string   `json:"path"`
	TXID        ltx.TXID `json:"txid"`
	ReplicaTXID ltx.TXID `json:"replica_txid"`
}

// httpGet sends GET http://addr+target (see httpDo).
func httpGet(t *testing.T, addr, target, token string) (int, string) {
	t.Helper()
	return httpDo(t, "GET", addr, target, token)
}

// httpDo sends method http://addr+target, with a bearer token unless it is
// "", and returns the status and body.
func httpDo(t *testing.T, method, addr, target, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func readTXIDs(t *testing.T, addr, dbPath string) txidAnswer {
	t.Helper()
	code, body := httpGet(t, addr, "/txid?db="+url.QueryEscape(dbPath), "")
	var a txidAnswer
	if err := json.Unmarshal([]byte(body), &a); code != 200 || err != nil {
		t.Fatalf("GET /txid: %d %q (%v)", code, body, err)
	}
	return a
}

// The wait API through a real `litefs mount` on S3 (versitygw), called
// from loopback with no token: after a commit, GET /txid gives its TXID
// (not yet in the replica), GET /wait returns 200 for it and at that
// moment S3 holds an object containing it, and a restore to that TXID has
// the commit. A TXID that never comes answers 504 after the timeout.
// `litefs wait` exits 0 for a reached TXID and 1 on timeout.
func TestWaitReplicatedS3(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	e := newS3Env(t, srv, "db", "1s")
	e.startProcess()
	dbPath := filepath.Join(e.mountDir, "db")
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY)`)
	ctx := context.Background()

	for round := 1; round <= 3; round++ {
		// Once the replica caught up the uploader is idle: the next commit
		// is uploaded a sync-interval after it, not at once.
		waitFor(t, 10*time.Second, "the replica to catch up", func() bool {
			a := readTXIDs(t, e.httpAddr, dbPath)
			return a.TXID > 0 && a.ReplicaTXID == a.TXID
		})
		mustExec(t, db, `INSERT INTO t (id) VALUES (?)`, round)
		a := readTXIDs(t, e.httpAddr, dbPath)
		if a.DB != "db" || a.Path != dbPath || a.ReplicaTXID >= a.TXID {
			t.Fatalf("round %d: /txid right after the commit: %+v; want the replica behind", round, a)
		}
		start := time.Now()
		code, body := httpGet(t, e.httpAddr, "/wait?db="+url.QueryEscape(dbPath)+"&txid="+a.TXID.String()+"&timeout=10s", "")
		waited := time.Since(start)
		var w txidAnswer
		if err := json.Unmarshal([]byte(body), &w); code != 200 || err != nil || w.ReplicaTXID < a.TXID {
			t.Fatalf("round %d: GET /wait for %s: %d %q (%v)", round, a.TXID, code, body, err)
		}
		// When /wait answered, S3 holds the TXID: a level-0 object whose
		// range holds it, or a snapshot at or past it.
		var where string
		for _, level := range []int{0, replica.SnapshotLevel} {
			files, err := e.client().LTXFiles(ctx, level, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				if f.MaxTXID >= a.TXID && (f.MinTXID <= a.TXID || level == replica.SnapshotLevel) {
					where = f.MinTXID.String() + "-" + f.MaxTXID.String()
				}
			}
		}
		if where == "" {
			t.Fatalf("round %d: /wait answered 200 for TXID %s after %v, but S3 holds no object with it", round, a.TXID, waited)
		}
		t.Logf("round %d: TXID %s in S3 (object %s) %v after /wait was called", round, a.TXID, where, waited)
		out, pos := e.restore(a.TXID)
		if pos.TXID != a.TXID || queryInt(t, out, `SELECT count(*) FROM t`) != int64(round) {
			t.Fatalf("round %d: restore to TXID %s gave TXID %s with %d rows", round, a.TXID, pos.TXID, queryInt(t, out, `SELECT count(*) FROM t`))
		}
	}

	a := readTXIDs(t, e.httpAddr, dbPath)
	never := a.TXID + 1000
	start := time.Now()
	code, body := httpGet(t, e.httpAddr, "/wait?db="+url.QueryEscape(dbPath)+"&txid="+never.String()+"&timeout=1s", "")
	if d := time.Since(start); code != 504 || d < time.Second || !strings.Contains(body, "timed out after 1s") {
		t.Fatalf("GET /wait for a TXID that never comes: %d %q after %v; want 504 after 1s", code, body, d)
	}

	// litefs wait, by the config's address, the TXID in decimal and in hex.
	code, stdout, stderr := cliRun(t, "", "litefs", "wait", "-config", e.cfgPath, "-txid", strconv.FormatUint(uint64(a.TXID), 10), dbPath)
	if code != 0 || !strings.Contains(stdout, dbPath+": the replica holds TXID ") {
		t.Fatalf("litefs wait for a replicated TXID: exit %d, %q, %q", code, stdout, stderr)
	}
	start = time.Now()
	code, stdout, stderr = cliRun(t, "", "litefs", "wait", "-config", e.cfgPath, "-timeout", "1s", "-txid", never.String(), dbPath)
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "litefs wait: timed out after 1s: the replica holds TXID ") || time.Since(start) < time.Second {
		t.Fatalf("litefs wait for a TXID that never comes: exit %d after %v, %q, %q", code, time.Since(start), stdout, stderr)
	}
}

// A wait for a TXID that can no longer reach the replica (the database left
// WAL mode) answers 409 saying why, and `litefs wait` exits 1. With an
// [http] token set, /txid and /wait want it (401 without), and `litefs
// wait` takes it from the config.
func TestWaitStopped(t *testing.T) {
	e := newEnv(t, "1h")
	t.Setenv("LITEFS_TEST_WAIT_TOKEN", "w41t-token")
	e.httpExtra = `token = "${LITEFS_TEST_WAIT_TOKEN}"`
	cfgPath := filepath.Join(e.root, "litefs.toml")
	writeFile(t, cfgPath, e.configText())
	dm := e.start()
	dbPath := filepath.Join(e.mountDir, "db")
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (x)`)
	pos := e.flush()

	q := "?db=" + url.QueryEscape(dbPath) + "&txid=" + pos.TXID.String()
	for _, p := range []string{"/txid", "/wait"} {
		if code, body := httpGet(t, dm.HTTPAddr(), p+q, ""); code != 401 {
			t.Fatalf("GET %s without the token: %d %q, want 401", p, code, body)
		}
	}
	if code, body := httpGet(t, dm.HTTPAddr(), "/wait"+q, "w41t-token"); code != 200 {
		t.Fatalf("GET /wait for a replicated TXID: %d %q", code, body)
	}

	mustExec(t, db, `PRAGMA journal_mode=DELETE`)
	mustExec(t, db, `INSERT INTO t VALUES (1)`)
	next := pos.TXID + 1
	code, body := httpGet(t, dm.HTTPAddr(), "/wait?db="+url.QueryEscape(dbPath)+"&txid="+next.String()+"&timeout=30s", "w41t-token")
	if code != 409 || !strings.Contains(body, "left WAL mode") || !strings.Contains(body, "replication of db stopped") {
		t.Fatalf("GET /wait after the database left WAL mode: %d %q, want 409 saying why", code, body)
	}
	code, stdout, stderr := cliRun(t, "", "litefs", "wait", "-config", cfgPath, "-addr", dm.HTTPAddr(), "-txid", next.String(), dbPath)
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "litefs wait: replication of db stopped") {
		t.Fatalf("litefs wait after the database left WAL mode: exit %d, %q, %q", code, stdout, stderr)
	}
	code, _, stderr = cliRun(t, "", "litefs", "wait", "-config", cfgPath, "-addr", dm.HTTPAddr(), "-txid", pos.TXID.String(), dbPath)
	if code != 0 {
		t.Fatalf("litefs wait (token from the config) for a replicated TXID: exit %d, %q", code, stderr)
	}
}
