package litefs_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs"
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

// A replica produced by litefs is damaged one object at a time (a flipped
// byte in a page or in the checksum, truncated, deleted): restore through
// the CLI fails naming that object and leaves no database and no temp
// file at the target; with -txid at the boundary before the damage it
// restores exactly the state the app had then. Once more through the
// standalone restore binary, for its exit status.
func TestCorruptReplicaRestore(t *testing.T) {
	e := newEnv(t, "0s")
	e.start()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	type state struct {
		sum  ltx.Checksum
		dump string
	}
	states := map[ltx.TXID]state{}
	record := func() {
		p := e.flush()
		states[p.TXID] = state{p.Checksum, dump(t, db)}
	}
	record()
	for i := 0; i < 12; i++ {
		mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(?))`, 500+i*700)
		record()
		if i%3 == 2 {
			mustExec(t, db, `UPDATE t SET v = randomblob(300) WHERE id = ?`, i/2)
			record()
		}
	}
	// The damaged object must be one a restore of the latest state reads:
	// after the newest snapshot (size-triggered snapshots come often in a
	// small database, the shutdown's flush may take one). Small commits
	// until three follow it.
	ctx := context.Background()
	var segs []*ltx.FileInfo
	for i := 0; ; i++ {
		db.Close()
		e.stop()
		snaps, err := e.client().LTXFiles(ctx, replica.SnapshotLevel, 0)
		if err != nil || len(snaps) == 0 {
			t.Fatalf("%d snapshots (%v)", len(snaps), err)
		}
		if segs, err = e.client().LTXFiles(ctx, 0, snaps[len(snaps)-1].MaxTXID+1); err != nil {
			t.Fatal(err)
		}
		if len(segs) >= 3 {
			break
		}
		if i == 10 {
			t.Fatalf("%d level-0 objects after the newest snapshot %s", len(segs), snaps[len(snaps)-1].MaxTXID)
		}
		e.start()
		db = e.open("_journal_mode=WAL")
		for j := 0; j < 5; j++ {
			mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(50))`)
			record()
		}
	}
	// Not the newest object: without it the replica simply ends earlier
	// (a valid, older state), which no restore can tell from a short history.
	target := segs[(len(segs)-1)/2]
	before := target.MinTXID - 1
	if _, ok := states[before]; !ok {
		t.Fatalf("no recorded state at TXID %s", before)
	}
	name := ltx.FormatFilename(target.MinTXID, target.MaxTXID)
	key := "0/" + name
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte // nil deletes
		want   string              // what the error must name
	}{
		{"FlipPageByte", func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }, key},
		{"FlipFileChecksum", func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }, key},
		{"TruncateHalf", func(b []byte) []byte { return b[:len(b)/2] }, key},
		{"TruncateLastByte", func(b []byte) []byte { return b[:len(b)-1] }, key},
		// A deleted object has no key to read; the error names the TXIDs
		// it held and the objects around the gap.
		{"Delete", nil, target.MinTXID.String() + "-" + target.MaxTXID.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyTree(t, e.replicaDir)
			path := filepath.Join(dir, "ltx", "0", name)
			if tc.damage == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, tc.damage(b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			outDir := t.TempDir()
			out := filepath.Join(outDir, "restored.db")
			code, msg := runRestoreCLI(t, "-o", out, "-replica", "file://"+dir)
			if code == 0 {
				t.Fatalf("restore of a replica with %s damaged succeeded:\n%s", key, msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("restore failed without naming %s:\n%s", tc.want, msg)
			}
			checkEmptyDir(t, outDir)
			t.Logf("restore failed: %s", strings.TrimSpace(msg))

			code, msg = runRestoreCLI(t, "-o", out, "-replica", "file://"+dir, "-txid", before.String())
			if code != 0 {
				t.Fatalf("restore -txid %s, before the damage: exit %d:\n%s", before, code, msg)
			}
			checkRestored(t, out, states[before].sum, states[before].dump)

			for _, suffix := range []string{"", "-wal", "-shm"} {
				os.Remove(out + suffix) // checkRestored's connection made the -wal and -shm
			}
			if tc.name == "FlipPageByte" {
				bin := filepath.Join(litefsBin(t), "restore")
				cmd := exec.Command(bin, "-o", out, "-replica", "file://"+dir)
				outb, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(outb), key) {
					t.Fatalf("restore binary: %v (want exit status 1 naming %s):\n%s", err, key, outb)
				}
				checkEmptyDir(t, outDir)
			}
		})
	}
}

func checkEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("a failed restore left %s in %s", e.Name(), dir)
	}
}

// copyTree copies a directory of regular files into a new temp dir.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// Someone writes the data dir's database directly while litefs runs (a
// second SQLite connection on the data path, not through the mount; the
// app had closed its own, so SQLite itself stays consistent). The forced
// snapshot detects it and says so: the database stops replicating with a
// reason naming the write behind litefs's back, /readyz answers 503. The
// replica never mixes the two histories: a restore is a state the database
// really had, or fails. A restart then starts a new history from the
// volume, restore = live.
func TestWrittenBehindWhileMounted(t *testing.T) {
	e := newEnv(t, "0s")
	var logs syncBuf
	dm := e.startLogged(&logs)
	ctx := context.Background()
	app := e.open("_journal_mode=WAL")
	mustExec(t, app, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT)`)
	for i := 0; i < 20; i++ {
		mustExec(t, app, `INSERT INTO t (v) VALUES (?)`, fmt.Sprint("t ", i))
		mustExec(t, app, `INSERT INTO u (v) VALUES (?)`, fmt.Sprint("u ", i))
	}
	replicated := e.flush()
	states := []string{dump(t, app)} // every state the database had
	app.Close()                      // the last connection: SQLite checkpoints and unlinks the WAL through the mount

	direct := openDB(t, filepath.Join(e.dataDir, "db"), "_journal_mode=WAL")
	mustExec(t, direct, `INSERT INTO u (v) VALUES ('written behind litefs''s back')`)
	direct.Close()

	// The app goes on through the mount before anything notices.
	app = e.open("_journal_mode=WAL")
	states = append(states, dump(t, app))
	for i := 0; i < 3; i++ {
		mustExec(t, app, `INSERT INTO t (v) VALUES (?)`, fmt.Sprint("after ", i))
		states = append(states, dump(t, app))
	}
	staged := e.db().Pos()

	// A snapshot forced now must notice (one mismatch may be retried once).
	var serr error
	var st litefs.DBState
	var why error
	for try := 1; try <= 3; try++ {
		_, serr = e.db().Snapshot(ctx)
		st, why = e.db().State()
		t.Logf("forced snapshot %d: %v; state %s: %v", try, serr, st, why)
		if st == litefs.StateStopped {
			break
		}
	}
	if serr == nil || st != litefs.StateStopped || why == nil || !strings.Contains(why.Error(), "written behind litefs's back") {
		t.Errorf("after a write behind the mount, the snapshot returned %v and the state is %s (%v); want stopped, saying it was written behind litefs's back", serr, st, why)
	}
	resp, err := http.Get("http://" + dm.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "written behind litefs's back") {
		t.Errorf("/readyz: %d %s", resp.StatusCode, body)
	}

	// Nothing the app commits from now on reaches the replica.
	if err := e.db().Flush(ctx); err != nil {
		t.Logf("flush after detection: %v", err)
	}
	atDetection := e.db().ReplicaPos()
	mustExec(t, app, `INSERT INTO t (v) VALUES ('after detection')`)
	states = append(states, dump(t, app))
	if err := e.db().Flush(ctx); err != nil {
		t.Logf("flush after detection: %v", err)
	}
	if r := e.db().ReplicaPos(); r.TXID != atDetection.TXID {
		t.Errorf("the replica moved from TXID %d to %d after replication stopped", atDetection.TXID, r.TXID)
	}
	t.Logf("replicated TXID %d before the write behind; staged %d before detection; replica at %d", replicated.TXID, staged.TXID, atDetection.TXID)

	out := filepath.Join(t.TempDir(), "restored.db")
	pos, rerr := replica.Restore(ctx, e.client(), replica.RestoreOptions{OutputPath: out})
	if rerr != nil {
		t.Logf("restore fails loudly: %v", rerr)
	} else {
		rdb := openDB(t, out, "mode=ro")
		integrity(t, rdb)
		got := dump(t, rdb)
		rdb.Close()
		match := -1
		for i, s := range states {
			if s == got {
				match = i
			}
		}
		if match < 0 {
			t.Errorf("BUG: the replica's latest state (TXID %d) is a blend of two histories, a state the database never had: "+
				"the app's commits after the write behind litefs's back were replicated on top of the state before it.\nrestored:    %.400s\nlast real:   %.400s\nbefore it:   %.400s",
				pos.TXID, got, states[len(states)-1], states[0])
		} else {
			t.Logf("restore gives the state the database had at step %d of %d", match, len(states)-1)
		}
	}

	// A restart takes a new snapshot of the volume and says why.
	app.Close()
	e.stop()
	logs.Reset()
	e.startLogged(&logs)
	if !strings.Contains(logs.String(), "written behind litefs's back") {
		t.Errorf("the restart did not say why it took a snapshot:\n%s", logs.String())
	}
	app = e.open("_journal_mode=WAL")
	e.verify(app)
	e.checkOneHistory(2)
}
