package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/checksum"

	"github.com/litefs-dev/litefs/staging"

	"github.com/litefs-dev/litefs/internal/daemon"
	"github.com/litefs-dev/litefs/internal/testenv"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/superfly/ltx"

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
	repExtra string // more [dbs.replica] keys
	logs     *testenv.LogBuffer
	httpAddr string        // the child's HTTP address (startProcess)
	done     chan struct{} // closed when the child exited
	cfgPath  string
}

func newS3Env(t *testing.T, srv *s3test.Server, path, syncInterval string) *s3env {
	t.Helper()
	return &s3env{env: newEnv(t, syncInterval), srv: srv, endpoint: srv.Endpoint, path: path, logs: &testenv.LogBuffer{}}
}

func (e *s3env) configText() string {
	ttl := e.repExtra
	if e.leaseTTL != "" {
		ttl += fmt.Sprintf("\nlease-ttl = %q", e.leaseTTL)
	}
	return testenv.Config{
		FUSEDir: e.mountDir, DataDir: e.dataDir, HTTPAddr: "127.0.0.1:0", HTTPExtra: e.httpExtra, DBExtra: e.extra,
		Replica: testenv.Replica{
			URL: fmt.Sprintf("s3://%s/%s", e.srv.Bucket, e.path), SyncInterval: e.syncInt,
			Endpoint: e.endpoint, Region: e.srv.Region, AccessKey: e.srv.AccessKey, SecretKey: e.srv.SecretKey,
			Extra: ttl,
		},
	}.TOML()
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
	e.httpAddr = testenv.FreeAddr(e.t)
	cfgPath := e.writeConfig(replaceHTTP(e.configText(), e.httpAddr))
	cmd := exec.Command(filepath.Join(testenv.Binaries(e.t), "litefs"), "mount", "-config", cfgPath)
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
	got, err := checksum.DatabaseChecksum(path)
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
