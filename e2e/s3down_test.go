package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/internal/daemon"
	"github.com/litefs-dev/litefs/internal/s3test"
)

// gate is a TCP forwarder to S3 on a fixed port that can be shut, so that
// connecting is refused (nothing listens), and opened again on the same
// port: S3 that is down, then back, at one address.
type gate struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newGate(t *testing.T, target string) *gate {
	g := &gate{t: t, addr: freeTCPAddr(t), target: strings.TrimPrefix(target, "http://"), conns: map[net.Conn]bool{}}
	t.Cleanup(g.shut)
	return g
}

func freeTCPAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (g *gate) url() string { return "http://" + g.addr }

func (g *gate) open() {
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		g.t.Fatalf("gate: listen on %s again: %v", g.addr, err)
	}
	g.mu.Lock()
	g.ln = ln
	g.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go g.forward(c)
		}
	}()
}

func (g *gate) forward(c net.Conn) {
	up, err := net.Dial("tcp", g.target)
	if err != nil {
		c.Close()
		return
	}
	g.mu.Lock()
	g.conns[c], g.conns[up] = true, true
	g.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

// shut stops listening and cuts every connection: new ones are refused.
func (g *gate) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for c := range g.conns {
		c.Close()
	}
	clear(g.conns)
}

// S3 unreachable when `litefs mount` starts, refused or hanging, on a volume
// with a history and on a new database: the mount comes up, the app
// commits, the log says the replica is unreachable, and once S3 is back
// everything is uploaded: restore = live.
func TestS3DownAtStart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hang     bool // versitygw stopped (SIGSTOP) instead of refusing
		existing bool // the volume already has a replicated database
	}{
		{"refused/existing", false, true},
		{"refused/new", false, false},
		{"hanging/existing", true, true},
		{"hanging/new", true, false},
	} {
		t.Run(strings.ReplaceAll(tc.name, "/", "-"), func(t *testing.T) {
			srv := s3test.StartVersityGW(t)
			g := newGate(t, srv.Endpoint)
			g.open()
			e := newS3Env(t, srv, "db", "100ms")
			e.endpoint = g.url()
			if tc.existing {
				e.start()
				db := e.open("_journal_mode=WAL")
				mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
				mustExec(t, db, `INSERT INTO t (v) VALUES ('before')`)
				e.flush()
				db.Close()
				e.stop()
			}
			down := g.shut
			back := g.open
			if tc.hang {
				down = func() { srv.Pause(t) }
				back = func() { srv.Resume(t) }
				t.Cleanup(func() { _ = srv.Cmd.Process.Signal(syscall.SIGCONT) })
			}
			down()
			started := time.Now()
			e.startProcess() // fails the test unless /readyz answers 200
			t.Logf("mounted and ready %v after start with S3 down", time.Since(started).Round(time.Millisecond))
			db := e.open("_journal_mode=WAL")
			mustExec(t, db, `CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)`)
			for i := 0; i < 50; i++ {
				mustExec(t, db, `INSERT INTO t (v) VALUES (?)`, fmt.Sprintf("during outage %d", i))
			}
			waitFor(t, 10*time.Second, "the unreachable replica logged", func() bool {
				return strings.Contains(e.logs.String(), "replica unreachable at start-up: mounting anyway")
			})
			if got := metric(t, e.httpAddr, "litefs_replica_txid"); got >= metric(t, e.httpAddr, "litefs_db_txid") {
				t.Fatalf("replica TXID %v already caught up with S3 down", got)
			}
			back()
			waitFor(t, 60*time.Second, "the replica caught up once S3 is back", func() bool {
				return metric(t, e.httpAddr, "litefs_replica_txid") == metric(t, e.httpAddr, "litefs_db_txid") &&
					metric(t, e.httpAddr, "litefs_staging_bytes") == 0
			})
			if !strings.Contains(e.logs.String(), "replica reachable") {
				t.Fatalf("the log does not say the replica answered again:\n%s", e.logs)
			}
			out, _ := e.restore(0)
			got := openDB(t, out, "mode=ro")
			integrity(t, got)
			if d, want := dump(t, got), dump(t, db); d != want {
				t.Fatalf("restore differs from live:\nrestored: %.300s\nlive:     %.300s", d, want)
			}
		})
	}
}

// S3 that answers and refuses (a wrong secret) is not an outage: start-up
// fails at once, saying what to check, and nothing is mounted.
func TestS3RefusedAtStartFails(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	bad := *srv
	bad.SecretKey = "not-the-secret"
	e := newS3Env(t, &bad, "db", "100ms")
	cfg, err := config.Parse("test.toml", e.configText())
	if err != nil {
		t.Fatal(err)
	}
	dm := daemon.New(cfg, testLogger(t))
	if err := dm.Start(context.Background()); err == nil {
		_ = dm.Shutdown(context.Background())
		t.Fatal("started with a wrong secret")
	} else {
		wantErr(t, err, "s3 access denied", "check the access key id")
	}
	if isMounted(e.mountDir) {
		t.Fatal("mounted after a refusal")
	}
}

// A new volume starts while S3 is down, and the app creates its database;
// once S3 answers it turns out to hold a history (start-up would have said
// "run restore first"). Uploads stop with that said, /readyz is not ready,
// and the replica is unchanged: two histories are never mixed.
func TestS3DownAtStartNewDBOverHistory(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	g := newGate(t, srv.Endpoint)
	g.open()
	e := newS3Env(t, srv, "db", "100ms")
	e.endpoint = g.url()
	e.start()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (v TEXT)`)
	mustExec(t, db, `INSERT INTO t VALUES ('the replica''s history')`)
	e.flush()
	db.Close()
	e.stop()
	before := dump(t, openDB(t, func() string { out, _ := e.restore(0); return out }(), "mode=ro"))
	// A new, empty volume.
	if err := os.RemoveAll(e.dataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(e.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	g.shut()
	e.startProcess()
	db = e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE u (v TEXT)`)
	mustExec(t, db, `INSERT INTO u VALUES ('a new database')`)
	g.open()
	waitFor(t, 60*time.Second, "replication to stop", func() bool {
		return strings.Contains(e.logs.String(), "was created while the replica was unreachable")
	})
	resp, err := http.Get("http://" + e.httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "run `litefs restore`") {
		t.Fatalf("/readyz: %d %q, want 503 saying what to do", resp.StatusCode, body)
	}
	out, _ := e.restore(0)
	if got := dump(t, openDB(t, out, "mode=ro")); got != before {
		t.Fatalf("the replica changed:\nnow:    %.300s\nbefore: %.300s", got, before)
	}
	// The app was never affected.
	mustExec(t, db, `INSERT INTO u VALUES ('still writable')`)
}
