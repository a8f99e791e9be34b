package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica"
	lfs3 "github.com/litefs-dev/litefs/replica/s3"
)

// tcpCutter forwards TCP connections on 127.0.0.1 to a target. While
// armed, each chunk a client sends is, with probability p, forwarded only
// in part before both connections are reset: a connection cut in the
// middle of a request (of its body, for an upload).
type tcpCutter struct {
	url    string
	ln     net.Listener
	target string
	p      atomic.Uint64 // math.Float64bits of the probability
	cuts   atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]bool
}

func startCutter(t testing.TB, target string) *tcpCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &tcpCutter{url: "http://" + ln.Addr().String(), ln: ln, target: target, conns: map[net.Conn]bool{}}
	go c.serve()
	t.Cleanup(func() {
		ln.Close()
		c.mu.Lock()
		for conn := range c.conns {
			conn.Close()
		}
		c.mu.Unlock()
	})
	return c
}

// arm sets the probability of a cut per chunk sent (0 disarms).
func (c *tcpCutter) arm(p float64) { c.p.Store(uint64(p * 1e6)) }

func (c *tcpCutter) track(conn net.Conn, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on {
		c.conns[conn] = true
	} else {
		delete(c.conns, conn)
	}
}

func (c *tcpCutter) serve() {
	for {
		client, err := c.ln.Accept()
		if err != nil {
			return
		}
		go c.handle(client)
	}
}

func (c *tcpCutter) handle(client net.Conn) {
	server, err := net.Dial("tcp", c.target)
	if err != nil {
		client.Close()
		return
	}
	c.track(client, true)
	c.track(server, true)
	reset := func() {
		for _, conn := range []net.Conn{client, server} {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			conn.Close()
			c.track(conn, false)
		}
	}
	defer reset()
	go func() {
		_, _ = io.Copy(client, server)
		client.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if p := float64(c.p.Load()) / 1e6; n > 1 && p > 0 && rand.Float64() < p {
				_, _ = server.Write(buf[:1+rand.IntN(n-1)])
				c.cuts.Add(1)
				return
			}
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// outageDuration is the S3 outage TestS3Faults injects: 5 s, or
// LITEFS_FAULT_OUTAGE (make soak: 60s).
func outageDuration(t *testing.T) time.Duration {
	if s := os.Getenv("LITEFS_FAULT_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("LITEFS_FAULT_OUTAGE=%q: want a duration like 60s", s)
		}
		return d
	}
	return 5 * time.Second
}

func fraction(p float64) func(*http.Request) bool {
	return func(*http.Request) bool { return rand.Float64() < p }
}

// S3 misbehaves in every way a fault-injecting proxy can make it, one kind
// at a time, under a steady write load: 500s, 503 SlowDown, 3 s delays,
// connections reset before the reply, replies lost after S3 stored the
// object, connections cut in the middle of a request, and an outage where
// every request is reset. The app's commits never wait for S3 (max commit
// latency per phase, bounded by 2 s); the uploader catches up on its own
// once S3 is back; nothing is uploaded twice under a different name (every
// TXID is in exactly one level-0 object, among both the listing and every
// PUT S3 stored); the replica is one chain and restore = live.
func TestS3Faults(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	p := s3test.StartProxy(t, srv.Endpoint)
	cut := startCutter(t, strings.TrimPrefix(p.URL, "http://"))
	e := newS3Env(t, srv, "db", "50ms")
	e.endpoint = cut.url
	e.leaseTTL = "6s"
	dm := e.start()
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	e.flush()

	type phase struct {
		name   string
		fault  *s3test.Fault
		cut    float64
		length time.Duration
	}
	outage := outageDuration(t)
	phases := []phase{
		{name: "no fault", length: time.Second},
		{name: "500 InternalError on 30% of requests", length: 2 * time.Second,
			fault: &s3test.Fault{Match: fraction(0.3), Times: -1, Action: s3test.Status, Status: http.StatusInternalServerError}},
		{name: "503 SlowDown on 30% of requests", length: 2 * time.Second,
			fault: &s3test.Fault{Match: fraction(0.3), Times: -1, Action: s3test.Status, Status: http.StatusServiceUnavailable}},
		{name: "3 s delay on 20% of requests", length: 3 * time.Second,
			fault: &s3test.Fault{Match: fraction(0.2), Times: -1, Action: s3test.Delay, Delay: 3 * time.Second}},
		{name: "connection reset instead of a reply on 30% of requests", length: 2 * time.Second,
			fault: &s3test.Fault{Match: fraction(0.3), Times: -1, Action: s3test.Reset}},
		{name: "reply lost after S3 did the work on 30% of requests", length: 2 * time.Second,
			fault: &s3test.Fault{Match: fraction(0.3), Times: -1, Action: s3test.DropResponse}},
		{name: "connection cut mid-request on 20% of sends", length: 2 * time.Second, cut: 0.2},
		{name: fmt.Sprintf("%v outage: every request reset", outage), length: outage,
			fault: &s3test.Fault{Times: -1, Action: s3test.Reset}},
		{name: "S3 back", length: time.Second},
	}

	var cur atomic.Int32
	lats := make([]durations, len(phases))
	var mu sync.Mutex
	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		defer close(werr)
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ph := cur.Load()
			t0 := time.Now()
			var err error
			switch {
			case i%40 == 0:
				err = insertMany(db, 10, 1500)
			case i%150 == 0:
				_, err = db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
			default:
				_, err = db.Exec(`INSERT INTO t (v) VALUES (randomblob(200))`)
			}
			if err != nil {
				werr <- fmt.Errorf("commit %d in phase %q: %w", i, phases[ph].name, err)
				return
			}
			d := time.Since(t0)
			mu.Lock()
			lats[ph] = append(lats[ph], d)
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	stopWriter := func() error {
		select {
		case <-stop:
		default:
			close(stop)
		}
		return <-werr
	}
	t.Cleanup(func() { _ = stopWriter() })

	applied := map[string]int{}
	for i, ph := range phases {
		cur.Store(int32(i))
		var f *s3test.Fault
		if ph.fault != nil {
			f = p.Inject(*ph.fault)
		}
		cut.arm(ph.cut)
		before := e.db().ReplicaPos().TXID
		time.Sleep(ph.length)
		cut.arm(0)
		if f != nil {
			applied[ph.name] = p.Applied(f)
			p.Remove(f)
		}
		mu.Lock()
		lat := append(durations(nil), lats[i]...)
		mu.Unlock()
		t.Logf("phase %q: commit latency %v; faults applied %d, cuts %d; replica TXID %d -> %d",
			ph.name, lat, applied[ph.name], cut.cuts.Load(), before, e.db().ReplicaPos().TXID)
	}
	if err := stopWriter(); err != nil {
		t.Fatalf("the app's writer failed: %v", err)
	}
	live := e.db().Pos()
	back := time.Now()
	waitFor(t, 60*time.Second, "the replica to catch up by itself after the faults", func() bool {
		return e.db().ReplicaPos().TXID >= live.TXID
	})
	t.Logf("caught up with TXID %d %v after the last fault; upload errors counted %d; S3 requests %v",
		live.TXID, time.Since(back).Round(time.Millisecond), e.db().Metrics.UploadErr.Load(), p.Counts())

	var worst time.Duration
	for i, ph := range phases {
		if len(lats[i]) == 0 {
			t.Errorf("phase %q: no commit at all", ph.name)
			continue
		}
		s := append(durations(nil), lats[i]...)
		sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
		worst = max(worst, s[len(s)-1])
		if ph.fault != nil && applied[ph.name] == 0 {
			t.Errorf("phase %q: the fault was never applied", ph.name)
		}
	}
	t.Logf("max commit latency with S3 failing: %v", worst)
	if worst > 2*time.Second {
		t.Errorf("a commit took %v while S3 misbehaved: the app waited on S3", worst)
	}
	if cut.cuts.Load() == 0 {
		t.Errorf("no connection was cut mid-request")
	}
	e.checkNotFenced()
	if v := metric(t, dm.HTTPAddr(), "litefs_fenced"); v != 0 {
		t.Fatalf("litefs_fenced %v", v)
	}
	e.verify(db)
	checkChain(t, e.client())
	checkUploadedOnce(t, e.client(), p.Records())
}

func insertMany(db *sql.DB, n, size int) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for i := 0; i < n; i++ {
		if _, err := tx.Exec(`INSERT INTO t (v) VALUES (randomblob(?))`, size); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// checkUploadedOnce asserts no transaction was uploaded under two names:
// the level-0 objects listed, and every level-0 object any PUT stored
// (whatever the client heard back), cover each TXID once; nothing is at
// levels 1-8.
func checkUploadedOnce(t *testing.T, c *lfs3.Client, recs []s3test.Record) {
	t.Helper()
	ctx := context.Background()
	for level := 1; level < replica.SnapshotLevel; level++ {
		if infos, err := c.LTXFiles(ctx, level, 0); err != nil || len(infos) > 0 {
			t.Fatalf("level %d holds %d objects (%v)", level, len(infos), err)
		}
	}
	listed, err := c.LTXFiles(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	type span struct{ min, max ltx.TXID }
	var spans []span
	names := map[string]bool{}
	for _, f := range listed {
		spans = append(spans, span{f.MinTXID, f.MaxTXID})
		names[ltx.FormatFilename(f.MinTXID, f.MaxTXID)] = true
	}
	stored := 0
	prefix := c.Key(0, 1, 1)
	prefix = prefix[:strings.LastIndexByte(prefix, '/')+1]
	for _, r := range recs {
		if !s3test.IsObjectPut(r, ".ltx") || r.Status != http.StatusOK || !strings.HasPrefix(r.Key, prefix) {
			continue
		}
		stored++
		name := strings.TrimPrefix(r.Key, prefix)
		if names[name] {
			continue
		}
		min, max, err := ltx.ParseFilename(name)
		if err != nil {
			t.Fatalf("PUT of %s: %v", r.Key, err)
		}
		names[name] = true
		spans = append(spans, span{min, max})
		t.Errorf("S3 stored %s, which the replica does not list", r.Key)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].min < spans[j].min })
	for i := 1; i < len(spans); i++ {
		if spans[i].min <= spans[i-1].max {
			t.Fatalf("level-0 objects %s-%s and %s-%s overlap: transactions uploaded twice under different names",
				spans[i-1].min, spans[i-1].max, spans[i].min, spans[i].max)
		}
	}
	t.Logf("%d level-0 objects, %d PUTs stored by S3 (retries of the same name included), no TXID in two objects", len(listed), stored)
}
