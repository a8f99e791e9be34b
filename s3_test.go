package litefs_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/staging"

	"github.com/litefs-dev/litefs/internal/daemon"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/internal/restorecmd"
	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica"
	lfs3 "github.com/litefs-dev/litefs/replica/s3"
)

// s3env is an env whose replica is a path on a real versitygw, reached
// directly or through an s3test.Proxy. Its daemon runs in this process
// (start, with its log captured) or as a child (startProcess).
type s3env struct {
	*env
	srv      *s3test.Server
	endpoint string // srv.Endpoint, or a proxy's URL
	path     string // replica path in the bucket
	leaseTTL string // "" = the default
	logs     *logBuffer
	httpAddr string        // the child's HTTP address (startProcess)
	done     chan struct{} // closed when the child exited
	cfgPath  string
}

func newS3Env(t *testing.T, srv *s3test.Server, path, syncInterval string) *s3env {
	t.Helper()
	return &s3env{env: newEnv(t, syncInterval), srv: srv, endpoint: srv.Endpoint, path: path, logs: &logBuffer{}}
}

func (e *s3env) configText() string {
	ttl := ""
	if e.leaseTTL != "" {
		ttl = fmt.Sprintf("lease-ttl = %q\n", e.leaseTTL)
	}
	return fmt.Sprintf(`
[fuse]
dir = %q
[data]
dir = %q
[http]
addr = "127.0.0.1:0"
[[dbs]]
path = %q
%s
[dbs.replica]
url = "s3://%s/%s"
endpoint = %q
region = %q
force-path-style = true
access-key-id = %q
secret-access-key = %q
sync-interval = %q
%s`, e.mountDir, e.dataDir, filepath.Join(e.mountDir, "db"), e.extra,
		e.srv.Bucket, e.path, e.endpoint, e.srv.Region, e.srv.AccessKey, e.srv.SecretKey, e.syncInt, ttl)
}

// writeConfig writes the config file (for the restore CLI and children).
func (e *s3env) writeConfig(text string) string {
	e.t.Helper()
	e.cfgPath = filepath.Join(e.root, "litefs.toml")
	if err := os.WriteFile(e.cfgPath, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return e.cfgPath
}

// start runs the daemon in this process; its log goes to e.logs (and to
// stderr with -v).
func (e *s3env) start() *daemon.Daemon {
	e.t.Helper()
	text := e.configText()
	e.writeConfig(text)
	cfg, err := config.Parse("test.toml", text)
	if err != nil {
		e.t.Fatal(err)
	}
	var w io.Writer = e.logs
	if testing.Verbose() {
		w = io.MultiWriter(e.logs, prefixWriter(os.Stderr, e.t.Name()+"/"+filepath.Base(e.root)+": "))
	}
	dm := daemon.New(cfg, slog.New(slog.NewTextHandler(w, nil)))
	if err := dm.Start(context.Background()); err != nil {
		e.t.Fatalf("start daemon: %v\nlog:\n%s", err, e.logs)
	}
	e.env.dm = dm
	e.t.Cleanup(func() {
		if e.env.dm == dm {
			e.stop()
		}
	})
	return dm
}

// startProcess runs `litefs mount` as a child; its output goes to e.logs.
// The cleanup kills it and detaches its mount (dead after a kill -9).
func (e *s3env) startProcess() *exec.Cmd {
	e.t.Helper()
	e.httpAddr = freePort(e.t)
	cfgPath := e.writeConfig(replaceHTTP(e.configText(), e.httpAddr))
	cmd := exec.Command(filepath.Join(litefsBin(e.t), "litefs"), "mount", "-config", cfgPath)
	var w io.Writer = e.logs
	if testing.Verbose() {
		w = io.MultiWriter(e.logs, prefixWriter(os.Stderr, e.t.Name()+"/"+filepath.Base(e.root)+" (child): "))
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	e.done = done
	go func() { _ = cmd.Wait(); close(done) }()
	e.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = syscall.Unmount(e.mountDir, syscall.MNT_DETACH)
	})
	waitFor(e.t, 30*time.Second, "litefs mount ready", func() bool {
		select {
		case <-done:
			e.t.Fatalf("litefs mount exited at start:\n%s", e.logs)
		default:
		}
		resp, err := http.Get("http://" + e.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return cmd
}

// client reaches the replica directly (never through a proxy).
func (e *s3env) client() *lfs3.Client { return e.srv.Client(e.t, e.path) }

// restore rebuilds the database from S3 into a new file.
func (e *s3env) restore(txid ltx.TXID) (string, ltx.Pos) {
	e.t.Helper()
	out := filepath.Join(e.t.TempDir(), "restored.db")
	pos, err := replica.Restore(context.Background(), e.client(), replica.RestoreOptions{OutputPath: out, TXID: txid})
	if err != nil {
		e.t.Fatalf("restore from s3://%s/%s: %v", e.srv.Bucket, e.path, err)
	}
	return out, pos
}

// verify flushes, restores the latest state from S3 and compares it with
// the live database: position, checksums, integrity, content.
func (e *s3env) verify(live *sql.DB) staging.Pos {
	e.t.Helper()
	pos := e.flush()
	if sum := e.liveChecksum(); sum != pos.Checksum {
		e.t.Fatalf("live database checksum %s, tracked %s at TXID %d", sum, pos.Checksum, pos.TXID)
	}
	out, rpos := e.restore(0)
	if rpos.TXID != pos.TXID || rpos.PostApplyChecksum != pos.Checksum {
		e.t.Fatalf("restored %d/%s, live %d/%s", rpos.TXID, rpos.PostApplyChecksum, pos.TXID, pos.Checksum)
	}
	checkRestored(e.t, out, pos.Checksum, dump(e.t, live))
	return pos
}

// checkRestored checks a restored file's checksum, integrity and content.
func checkRestored(t testing.TB, path string, sum ltx.Checksum, wantDump string) {
	t.Helper()
	got, err := replica.DatabaseChecksum(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != sum {
		t.Fatalf("restored file %s has checksum %s, want %s", path, got, sum)
	}
	db := openDB(t, path, "mode=ro")
	integrity(t, db)
	if d := dump(t, db); d != wantDump {
		t.Fatalf("restored content differs:\nrestored: %.300s\nwant:     %.300s", d, wantDump)
	}
	db.Close()
}

// checkChain asserts the replica is one valid history: every level-0
// object follows the one before it or a snapshot, with no gap or overlap,
// and the history starts at TXID 1 (a snapshot, or a full first segment as
// Litestream writes).
func checkChain(t testing.TB, c *lfs3.Client) (snaps, segs []*ltx.FileInfo) {
	t.Helper()
	ctx := context.Background()
	var err error
	if snaps, err = c.LTXFiles(ctx, replica.SnapshotLevel, 0); err != nil {
		t.Fatal(err)
	}
	if segs, err = c.LTXFiles(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	isSnap := map[ltx.TXID]bool{}
	for _, s := range snaps {
		isSnap[s.MaxTXID] = true
	}
	if len(snaps) == 0 && (len(segs) == 0 || segs[0].MinTXID != 1) {
		t.Fatalf("the replica holds no snapshot and no history from TXID 1")
	}
	prev := ltx.TXID(0)
	for _, s := range segs {
		switch {
		case prev == 0:
			if s.MinTXID != 1 && !isSnap[s.MinTXID-1] {
				t.Fatalf("first segment %s-%s follows no snapshot", s.MinTXID, s.MaxTXID)
			}
		case s.MinTXID != prev+1 && !isSnap[s.MinTXID-1]:
			t.Fatalf("segment %s-%s after %s: gap or overlap", s.MinTXID, s.MaxTXID, prev)
		}
		prev = s.MaxTXID
	}
	return snaps, segs
}

// metric scrapes the daemon's /metrics and returns the first sample of name.
func metric(t testing.TB, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	t.Fatalf("metric %s not found at %s", name, addr)
	return 0
}

// waitFor polls cond every 20ms until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// logBuffer collects a daemon's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type prefixed struct {
	w      io.Writer
	prefix string
}

func prefixWriter(w io.Writer, prefix string) io.Writer { return prefixed{w, prefix} }

func (p prefixed) Write(b []byte) (int, error) {
	_, err := io.WriteString(p.w, p.prefix+string(b))
	return len(b), err
}

// durations summarises latencies.
type durations []time.Duration

func (d durations) String() string {
	if len(d) == 0 {
		return "n=0"
	}
	s := append(durations(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	pct := func(p float64) time.Duration { return s[int(p*float64(len(s)-1))] }
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v", len(s), pct(.5), pct(.99), s[len(s)-1])
}

// leaseDoc reads lock.json.
type leaseDoc struct {
	Owner    string    `json:"owner"`
	Expires  time.Time `json:"expires"`
	Released bool      `json:"released"`
}

func readLease(t testing.TB, c *lfs3.Client) leaseDoc {
	t.Helper()
	out, err := c.SDK().GetObject(context.Background(), &awss3.GetObjectInput{
		Bucket: aws.String(c.Config().Bucket), Key: aws.String(c.LeaseKey())})
	if err != nil {
		t.Fatalf("read lease: %v", err)
	}
	defer out.Body.Close()
	var d leaseDoc
	if err := json.NewDecoder(out.Body).Decode(&d); err != nil {
		t.Fatalf("decode lease: %v", err)
	}
	return d
}

// runRestoreCLI runs the restore command (as `litefs restore` and the
// standalone binary do) and returns its exit status and output.
func runRestoreCLI(t testing.TB, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := restorecmd.Run(ctx, "restore", args, &out)
	return code, out.String()
}

// 5,000 transactions through a real mount to versitygw; the latest state,
// a -txid boundary and a -timestamp in the middle restore exactly.
func TestS3FiveThousandTransactions(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	e := newS3Env(t, srv, "app/db", "0s")
	e.start()
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)`)
	mustExec(t, db, `CREATE INDEX t_k ON t (k)`)
	first := e.flush()

	type mark struct {
		pos  staging.Pos
		at   time.Time
		dump string
	}
	var marks []mark
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	const phases, perPhase = 5, 1000
	for phase := 0; phase < phases; phase++ {
		for i := 0; i < perPhase; i++ {
			switch {
			case i%100 == 99: // a multi-row transaction: still one TXID
				tx, err := db.Begin()
				if err != nil {
					t.Fatal(err)
				}
				for j := 0; j < 20; j++ {
					mustExec(t, tx, `INSERT INTO t (k, v) VALUES (?, ?)`, rng.IntN(1000), strings.Repeat("m", rng.IntN(300)))
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			case i%10 == 3:
				// Always matches a row: an UPDATE that changes nothing
				// commits nothing.
				mustExec(t, db, `UPDATE t SET v = v || 'u' WHERE id = coalesce((SELECT max(id) FROM t WHERE id <= ?), (SELECT max(id) FROM t))`, rng.IntN(5000))
			case i%25 == 7:
				mustExec(t, db, `DELETE FROM t WHERE id = (SELECT min(id) FROM t)`)
			default:
				mustExec(t, db, `INSERT INTO t (k, v) VALUES (?, ?)`, rng.IntN(1000), strings.Repeat("x", rng.IntN(200)))
			}
		}
		pos := e.flush()
		// A timestamp strictly between this phase's last commit and the
		// next phase's first (timestamps are milliseconds).
		time.Sleep(3 * time.Millisecond)
		at := time.Now()
		time.Sleep(3 * time.Millisecond)
		marks = append(marks, mark{pos: pos, at: at, dump: dump(t, db)})
	}
	elapsed := time.Since(start)
	last := marks[len(marks)-1].pos
	if n := last.TXID - first.TXID; n != phases*perPhase {
		t.Fatalf("%d transactions made %d TXIDs (%d..%d)", phases*perPhase, n, first.TXID, last.TXID)
	}
	t.Logf("%d transactions in %v (%.0f/s, flushes included)", phases*perPhase, elapsed.Round(time.Millisecond), float64(phases*perPhase)/elapsed.Seconds())

	// Latest: identical content and checksum.
	final := e.verify(db)
	if final.TXID != last.TXID {
		t.Fatalf("verify at TXID %d, last mark %d", final.TXID, last.TXID)
	}
	snaps, segs := checkChain(t, e.client())
	t.Logf("replica: %d snapshots, %d level-0 objects", len(snaps), len(segs))

	// Every mark is an object boundary: restore at it, through the CLI with
	// the config (TXID as Litestream prints it, and in decimal).
	for i, m := range []mark{marks[1], marks[3]} {
		out := filepath.Join(t.TempDir(), "txid.db")
		arg := m.pos.TXID.String()
		if i == 1 {
			arg = strconv.FormatUint(uint64(m.pos.TXID), 10)
		}
		code, msg := runRestoreCLI(t, "-config", e.cfgPath, "-o", out, "-txid", arg, "-v", filepath.Join(e.mountDir, "db"))
		if code != 0 {
			t.Fatalf("restore -txid %s: exit %d: %s", arg, code, msg)
		}
		checkRestored(t, out, m.pos.Checksum, m.dump)
	}

	// A timestamp in the middle gives the state committed at or before it.
	m := marks[2]
	out := filepath.Join(t.TempDir(), "ts.db")
	ts := m.at.UTC().Format(time.RFC3339Nano)
	if code, msg := runRestoreCLI(t, "-config", e.cfgPath, "-o", out, "-timestamp", ts, filepath.Join(e.mountDir, "db")); code != 0 {
		t.Fatalf("restore -timestamp %s: exit %d: %s", ts, code, msg)
	}
	checkRestored(t, out, m.pos.Checksum, m.dump)

	// A TXID inside an object is refused, naming the nearest boundaries.
	tried := false
	ends := map[ltx.TXID]bool{}
	for _, f := range append(append([]*ltx.FileInfo{}, snaps...), segs...) {
		ends[f.MaxTXID] = true
	}
	for _, s := range segs {
		if s.MinTXID < s.MaxTXID && !ends[s.MinTXID] {
			out := filepath.Join(t.TempDir(), "inside.db")
			code, msg := runRestoreCLI(t, "-config", e.cfgPath, "-o", out, "-txid", s.MinTXID.String(), filepath.Join(e.mountDir, "db"))
			if code == 0 || !strings.Contains(msg, "boundar") {
				t.Fatalf("restore -txid %s inside object %s-%s: exit %d: %s", s.MinTXID, s.MinTXID, s.MaxTXID, code, msg)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatalf("failed restore left %s", out)
			}
			tried = true
			break
		}
	}
	if !tried {
		t.Logf("no level-0 object holds more than one transaction: -txid inside an object not tried")
	}
}

// versitygw SIGSTOPped for 5 s during a write load: the app's commits go on,
// staging grows, and once it is back the replica catches up with no gap.
func TestS3Outage(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	e := newS3Env(t, srv, "db", "0s")
	dm := e.start()
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	e.flush()

	const (
		before = iota
		during
		after
	)
	var phase atomic.Int32
	var committed atomic.Int64
	var mu sync.Mutex
	lats := [3]durations{}
	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		defer close(werr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			p := phase.Load()
			t0 := time.Now()
			if _, err := db.Exec(`INSERT INTO t (v) VALUES (randomblob(300))`); err != nil {
				werr <- fmt.Errorf("commit %d (phase %d): %w", committed.Load(), p, err)
				return
			}
			d := time.Since(t0)
			mu.Lock()
			lats[p] = append(lats[p], d)
			mu.Unlock()
			committed.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	stopWriter := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	})

	time.Sleep(time.Second)
	stagingBefore := metric(t, dm.HTTPAddr(), "litefs_staging_bytes")
	repBefore := e.db().ReplicaPos().TXID
	phase.Store(during)
	srv.Pause(t)
	paused := time.Now()
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			srv.Resume(t)
		}
	})
	// Commits keep going during the outage: every second shows progress.
	maxStaging := stagingBefore
	for time.Since(paused) < 5*time.Second {
		n := committed.Load()
		time.Sleep(time.Second)
		select {
		case err := <-werr:
			t.Fatalf("writer failed during the outage: %v", err)
		default:
		}
		if committed.Load() == n {
			t.Errorf("no commit for 1s while S3 is down (at %v): the app is blocked", time.Since(paused).Round(time.Millisecond))
		}
		maxStaging = max(maxStaging, metric(t, dm.HTTPAddr(), "litefs_staging_bytes"))
		// An outage alone is not unreadiness: the lag metric says it.
		if resp, err := http.Get("http://" + dm.HTTPAddr() + "/readyz"); err != nil {
			t.Fatal(err)
		} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
			t.Errorf("/readyz %d during the S3 outage; want ready", resp.StatusCode)
		}
	}
	posAtResume := e.db().Pos()
	repDuring := e.db().ReplicaPos().TXID
	srv.Resume(t)
	resumed = true
	resumedAt := time.Now()
	phase.Store(after)
	time.Sleep(time.Second)
	stopWriter()
	if t.Failed() {
		return
	}

	// The uploader catches up promptly.
	live := e.db().Pos()
	caughtUp := waitFor(t, 60*time.Second, "the replica to catch up after the outage", func() bool {
		return e.db().ReplicaPos().TXID >= live.TXID
	})
	sinceResume := time.Since(resumedAt)
	t.Logf("outage: %d commits before, %d during, %d after; staging %.0f bytes before, up to %.0f during; replica TXID %d before, %d at resume (staged %d); caught up %v after the writer stopped, %v after resume",
		len(lats[before]), len(lats[during]), len(lats[after]), stagingBefore, maxStaging, repBefore, repDuring, posAtResume.TXID,
		caughtUp.Round(time.Millisecond), sinceResume.Round(time.Millisecond))
	for p, name := range []string{"before", "during", "after"} {
		t.Logf("commit latency %s the outage: %v", name, lats[p])
	}
	if len(lats[during]) < 100 {
		t.Fatalf("only %d commits during the 5 s outage", len(lats[during]))
	}
	if maxStaging <= stagingBefore || maxStaging < 100*300 {
		t.Fatalf("staging did not grow during the outage: %.0f before, max %.0f during", stagingBefore, maxStaging)
	}
	if repDuring >= posAtResume.TXID {
		t.Fatalf("replica at %d while S3 was stopped, staged %d: the outage did not hold uploads back", repDuring, posAtResume.TXID)
	}
	if sinceResume > 15*time.Second {
		t.Errorf("the replica took %v after S3 came back to catch up: the uploader is stuck on a request sent during the outage", sinceResume)
	}
	if st, err := e.db().State(); st != litefs.StateReplicating {
		t.Fatalf("state %s after the outage: %v", st, err)
	}
	e.verify(db)
	checkChain(t, e.client())
	if got := metric(t, dm.HTTPAddr(), "litefs_staging_bytes"); got != 0 {
		t.Fatalf("litefs_staging_bytes %v after catching up", got)
	}
}

// volumeID is the lease owner id a daemon keeps on its volume.
func (e *s3env) volumeID() string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dataDir, staging.DirName, "id"))
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// restoreInto does what the init container does before a daemon starts on
// an empty volume: restore the replica into the data dir.
func (e *s3env) restoreInto() ltx.Pos {
	e.t.Helper()
	pos, err := replica.Restore(context.Background(), e.client(), replica.RestoreOptions{OutputPath: filepath.Join(e.dataDir, "db")})
	if err != nil {
		e.t.Fatalf("restore into the data dir: %v", err)
	}
	return pos
}

// waitChildCaughtUp waits until the child daemon's replica holds what it
// staged, and returns that TXID.
func (e *s3env) waitChildCaughtUp() ltx.TXID {
	e.t.Helper()
	var txid float64
	waitFor(e.t, 30*time.Second, "the child daemon to upload what it staged", func() bool {
		txid = metric(e.t, e.httpAddr, "litefs_db_txid")
		return txid > 0 && metric(e.t, e.httpAddr, "litefs_replica_txid") == txid && metric(e.t, e.httpAddr, "litefs_staging_bytes") == 0
	})
	return ltx.TXID(txid)
}

func insertRows(t testing.TB, db *sql.DB, who string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		mustExec(t, db, `INSERT INTO t (who, v) VALUES (?, randomblob(100))`, who)
	}
}

// ltxPuts returns the object PUTs a proxy forwarded that the server
// accepted (status 200), oldest first.
func ltxPuts(p *s3test.Proxy) []s3test.Record {
	var out []s3test.Record
	for _, r := range p.Records() {
		if s3test.IsObjectPut(r, ".ltx") && r.Status == http.StatusOK {
			out = append(out, r)
		}
	}
	return out
}

// Two daemons on one replica path: the second cannot take the lease, says
// so and uploads nothing while the first keeps one valid chain; it takes
// over once the TTL has passed after the first dies uncleanly, and at once
// after a clean stop.
func TestS3LeaseTwoDaemons(t *testing.T) {
	srv := s3test.StartVersityGW(t)

	t.Run("unclean", func(t *testing.T) {
		a := newS3Env(t, srv, "unclean", "0s")
		a.leaseTTL = "2s"
		acmd := a.startProcess()
		adb := openDB(t, filepath.Join(a.mountDir, "db"), "_journal_mode=WAL")
		adb.SetMaxOpenConns(1)
		mustExec(t, adb, `CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, v BLOB)`)
		insertRows(t, adb, "a", 100)
		a.waitChildCaughtUp()
		aID := a.volumeID()

		// The second daemon: its own volume (restored from the replica by
		// the init container), mount and proxy, the same replica path.
		b := newS3Env(t, srv, "unclean", "0s")
		b.leaseTTL = "2s"
		bp := s3test.StartProxy(t, srv.Endpoint)
		b.endpoint = bp.URL
		b.restoreInto()
		b.start()
		bStart := b.db().ReplicaPos()
		bdb := b.open("_journal_mode=WAL")
		bdb.SetMaxOpenConns(1)
		insertRows(t, bdb, "b", 10)
		waitFor(t, 15*time.Second, "the second daemon to log that the lease is held", func() bool {
			return strings.Contains(b.logs.String(), "leased by "+aID)
		})
		for _, want := range []string{"another litefs is writing it", "waiting for the lease"} {
			if !strings.Contains(b.logs.String(), want) {
				t.Fatalf("the second daemon's log does not say %q:\n%s", want, b.logs)
			}
		}

		// The first goes on; the replica stays its one chain.
		insertRows(t, adb, "a", 50)
		aLast := a.waitChildCaughtUp()
		checkChain(t, a.client())
		out, rpos := a.restore(0)
		if rpos.TXID != aLast {
			t.Fatalf("restored TXID %d, the first daemon is at %d", rpos.TXID, aLast)
		}
		checkRestored(t, out, a.liveChecksum(), dump(t, adb))
		if got := b.db().Metrics.UploadOK.Load(); got != 0 {
			t.Fatalf("the second daemon uploaded %d objects without the lease", got)
		}
		if puts := ltxPuts(bp); len(puts) != 0 || bp.CountFunc(func(r s3test.Record) bool { return s3test.IsObjectPut(r, ".ltx") }) != 0 {
			t.Fatalf("the second daemon sent LTX PUTs without the lease: %+v", puts)
		}
		if got := b.db().ReplicaPos(); got != bStart {
			t.Fatalf("the second daemon's replica position moved from %d to %d", bStart.TXID, got.TXID)
		}
		if st, err := b.db().State(); st != litefs.StateReplicating {
			t.Fatalf("the waiting daemon is %s (%v): waiting for a lease is not fencing", st, err)
		}
		if l := readLease(t, b.client()); l.Owner != aID || l.Released {
			t.Fatalf("lease %+v, want held by %s", l, aID)
		}

		// kill -9 the first: its lease blocks the second until it expires.
		adb.Close()
		if err := acmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-a.done
		killed := time.Now()
		lease := readLease(t, b.client())
		if lease.Owner != aID || lease.Released {
			t.Fatalf("lease after kill -9: %+v", lease)
		}
		waitFor(t, 30*time.Second, "the second daemon to take over", func() bool {
			return b.db().ReplicaPos().TXID > aLast
		})
		puts := ltxPuts(bp)
		if len(puts) == 0 {
			t.Fatal("the second daemon's replica position moved with no PUT")
		}
		firstPut := puts[0].Start
		t.Logf("kill -9 at %s, the dead lease expired at %s, the second daemon's first upload at %s (%v after the kill, %v after expiry)",
			killed.Format("15:04:05.000"), lease.Expires.Format("15:04:05.000"), firstPut.Format("15:04:05.000"),
			firstPut.Sub(killed).Round(time.Millisecond), firstPut.Sub(lease.Expires).Round(time.Millisecond))
		if firstPut.Before(lease.Expires) {
			t.Fatalf("the second daemon uploaded at %s, before the dead owner's lease expired at %s", firstPut, lease.Expires)
		}
		if d := firstPut.Sub(lease.Expires); d > 12*time.Second {
			t.Fatalf("the second daemon took %v after the lease expired to take over", d)
		}
		if l := readLease(t, b.client()); l.Owner != b.volumeID() {
			t.Fatalf("lease after takeover: %+v, want %s", l, b.volumeID())
		}
		if !strings.Contains(b.logs.String(), "another writer advanced the replica") {
			t.Fatalf("the second daemon did not say it continues after the first's history:\n%s", b.logs)
		}

		// After the takeover the replica is the second's database.
		insertRows(t, bdb, "b", 20)
		b.verify(bdb)
		checkChain(t, b.client())
		if st, _ := b.db().State(); st != litefs.StateReplicating {
			t.Fatalf("state %s after takeover", st)
		}
	})

	// The owner is the volume: a daemon restarted on the same volume after
	// a kill -9 takes its own lease back at once, without waiting the TTL.
	t.Run("same-volume", func(t *testing.T) {
		const ttl = 30 * time.Second
		a := newS3Env(t, srv, "same", "0s")
		a.leaseTTL = ttl.String()
		acmd := a.startProcess()
		adb := openDB(t, filepath.Join(a.mountDir, "db"), "_journal_mode=WAL")
		adb.SetMaxOpenConns(1)
		mustExec(t, adb, `CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, v BLOB)`)
		insertRows(t, adb, "a", 20)
		a.waitChildCaughtUp()
		adb.Close()
		if err := acmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-a.done
		if l := readLease(t, a.client()); l.Owner != a.volumeID() || l.Released || time.Until(l.Expires) < ttl/2 {
			t.Fatalf("lease after kill -9: %+v; want ours, unexpired for a while", l)
		}
		a.start() // detaches the dead mount
		db := a.open("_journal_mode=WAL")
		db.SetMaxOpenConns(1)
		insertRows(t, db, "a", 5)
		t0 := time.Now()
		a.verify(db)
		if d := time.Since(t0); d > ttl/4 {
			t.Fatalf("the restarted daemon took %v to upload on its own volume's lease", d)
		}
		checkChain(t, a.client())
	})

	t.Run("clean", func(t *testing.T) {
		const ttl = 30 * time.Second
		x := newS3Env(t, srv, "clean", "0s")
		x.leaseTTL = ttl.String()
		x.start()
		xdb := x.open("_journal_mode=WAL")
		xdb.SetMaxOpenConns(1)
		mustExec(t, xdb, `CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, v BLOB)`)
		insertRows(t, xdb, "x", 50)
		x.flush()
		xID := x.volumeID()

		y := newS3Env(t, srv, "clean", "0s")
		y.leaseTTL = ttl.String()
		yp := s3test.StartProxy(t, srv.Endpoint)
		y.endpoint = yp.URL
		y.restoreInto()
		y.start()
		ydb := y.open("_journal_mode=WAL")
		ydb.SetMaxOpenConns(1)
		insertRows(t, ydb, "y", 10)
		waitFor(t, 15*time.Second, "the second daemon to log that the lease is held", func() bool {
			return strings.Contains(y.logs.String(), "leased by "+xID)
		})
		insertRows(t, xdb, "x", 10)
		xLast := x.flush()
		if got := y.db().Metrics.UploadOK.Load(); got != 0 {
			t.Fatalf("the second daemon uploaded %d objects without the lease", got)
		}

		// A clean stop releases the lease: no waiting out the TTL.
		xdb.Close()
		x.stop()
		stopped := time.Now()
		if l := readLease(t, y.client()); !l.Released || l.Owner != xID {
			t.Fatalf("lease after a clean stop: %+v, want released by %s", l, xID)
		}
		took := waitFor(t, ttl, "the second daemon to take over after a clean stop", func() bool {
			return y.db().ReplicaPos().TXID > xLast.TXID
		})
		t.Logf("the second daemon took over %v after the first stopped cleanly (lease TTL %v)", took.Round(time.Millisecond), ttl)
		if took > 3*time.Second {
			t.Errorf("the second daemon took %v to take over a released lease; want at once (TTL %v)", took.Round(time.Millisecond), ttl)
		}
		if l := readLease(t, y.client()); l.Owner != y.volumeID() {
			t.Fatalf("lease after takeover: %+v", l)
		}
		insertRows(t, ydb, "y", 10)
		y.verify(ydb)
		checkChain(t, y.client())
		if puts := ltxPuts(yp); len(puts) == 0 || puts[0].Start.Before(stopped) {
			t.Fatalf("the second daemon's first upload is not after the first stopped: %+v", puts)
		}
	})
}

// A writer cut off from S3 longer than its lease: another daemon takes the
// replica over; when the first can reach S3 again it finds its lease taken,
// stops uploading and says so (fenced, /readyz unready), and overwrites
// nothing: the replica stays the second's history.
func TestS3LeaseFencedAfterPartition(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	a := newS3Env(t, srv, "db", "0s")
	a.leaseTTL = "2s"
	pa := s3test.StartProxy(t, srv.Endpoint)
	a.endpoint = pa.URL
	adm := a.start()
	adb := a.open("_journal_mode=WAL")
	adb.SetMaxOpenConns(1)
	mustExec(t, adb, `CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, v BLOB)`)
	insertRows(t, adb, "a", 20)
	a.flush()

	// The partition: every request of the first daemon is reset. Its app
	// commits more than the second daemon's will (staged, not uploaded).
	cut := pa.Inject(s3test.Fault{Action: s3test.Reset, Times: -1})
	insertRows(t, adb, "a", 60)

	b := newS3Env(t, srv, "db", "0s")
	b.leaseTTL = "2s"
	b.restoreInto()
	b.start()
	bStart := b.db().ReplicaPos().TXID
	bdb := b.open("_journal_mode=WAL")
	bdb.SetMaxOpenConns(1)
	insertRows(t, bdb, "b", 20)
	waitFor(t, 20*time.Second, "the second daemon to take over the expired lease", func() bool {
		return b.db().ReplicaPos().TXID > bStart
	})
	if pa.Applied(cut) == 0 {
		t.Fatal("the first daemon sent nothing during the partition")
	}

	// The partition heals: the first finds the lease taken and stops.
	pa.Remove(cut)
	healed := time.Now()
	waitFor(t, 30*time.Second, "the first daemon to notice it lost the lease", func() bool {
		st, _ := a.db().State()
		return st == litefs.StateStopped
	})
	fencedAt := time.Now()
	_, err := a.db().State()
	t.Logf("fenced %v after the partition healed: %v", time.Since(healed).Round(time.Millisecond), err)
	if err == nil || !strings.Contains(err.Error(), "another writer") {
		t.Fatalf("the first daemon stopped with %v; want it to name another writer", err)
	}
	if v := metric(t, adm.HTTPAddr(), "litefs_fenced"); v != 1 {
		t.Fatalf("litefs_fenced %v on the fenced daemon", v)
	}
	resp, herr := http.Get("http://" + adm.HTTPAddr() + "/readyz")
	if herr != nil {
		t.Fatal(herr)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d on the fenced daemon", resp.StatusCode)
	}
	for _, r := range pa.Records() {
		if r.Start.After(healed) && s3test.IsObjectPut(r, ".ltx") {
			t.Fatalf("the fenced daemon sent %s %s after losing its lease", r.Method, r.Key)
		}
	}
	// The app on the fenced daemon still commits (locally).
	insertRows(t, adb, "a", 5)

	// The replica is the second's.
	insertRows(t, bdb, "b", 10)
	bPos := b.verify(bdb)
	checkChain(t, b.client())
	if a.db().Pos().TXID <= bPos.TXID {
		t.Fatalf("the fenced daemon staged up to %d, the second is at %d: the test wants the fenced one ahead", a.db().Pos().TXID, bPos.TXID)
	}

	// The second goes idle: it renews its lease only while uploading, so
	// the lease lapses. Then the fenced daemon is stopped cleanly (its pod
	// is restarted): a fenced daemon must still upload nothing.
	l := readLease(t, b.client())
	time.Sleep(time.Until(l.Expires) + time.Second)
	adb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serr := adm.Shutdown(ctx)
	a.env.dm = nil
	t.Logf("the fenced daemon's shutdown: %v", serr)
	var late []string
	for _, r := range pa.Records() {
		if r.Start.After(fencedAt) && (s3test.IsObjectPut(r, ".ltx") || s3test.IsObjectPut(r, "lock.json")) {
			late = append(late, fmt.Sprintf("%s %s %v -> %d", r.Method, r.Key, r.Header, r.Status))
		}
	}
	if len(late) > 0 {
		t.Errorf("the fenced daemon took the lapsed lease at shutdown (then released it): %s", strings.Join(late, "; "))
	}
	out := filepath.Join(t.TempDir(), "after.db")
	if _, err := replica.Restore(context.Background(), b.client(), replica.RestoreOptions{OutputPath: out}); err != nil {
		t.Fatalf("restore of the latest state after the fenced daemon's shutdown: %v", err)
	}
	checkRestored(t, out, bPos.Checksum, dump(t, bdb))

	// The second, the rightful writer, goes on replicating.
	insertRows(t, bdb, "b", 5)
	if err := b.db().Flush(context.Background()); err != nil {
		t.Errorf("the second daemon's next upload after the fenced one shut down: %v", err)
	}
	if st, err := b.db().State(); st != litefs.StateReplicating {
		t.Fatalf("the second daemon is %s after the fenced one shut down: %v", st, err)
	}
	b.verify(bdb)
}
