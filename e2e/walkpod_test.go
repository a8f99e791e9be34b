package e2e

import (
	"bufio"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/litefs-dev/litefs/internal/testenv"
)

// walkProc is a child process with its output captured.
type walkProc struct {
	name  string
	cmd   *exec.Cmd
	out   *testenv.LogBuffer
	done  chan struct{}
	state *os.ProcessState
	err   error
}

func (w *walkthrough) start(name string, args ...string) *walkProc {
	w.t.Helper()
	p := &walkProc{name: name, out: &testenv.LogBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(w.bin, args[0]), args[1:]...)
	p.cmd.Env = w.env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Dies with the test binary even if no cleanup runs.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		w.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	w.mu.Lock()
	w.procs = append(w.procs, p)
	w.mu.Unlock()
	w.t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *walkProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its status (-1 for a
// signal).
func (w *walkthrough) wait(p *walkProc, timeout time.Duration) int {
	w.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		w.t.Fatalf("%s did not exit within %v", p.name, timeout)
	}
	return p.state.ExitCode()
}

// restore runs the init container's command and returns its log.
func (w *walkthrough) restore() string {
	w.t.Helper()
	w.writeConfig()
	p := w.start("restore", "restore", "-config", w.cfgPath, "-if-db-not-exists", "-if-replica-exists", "-v", filepath.Join(w.fuseDir, "db"))
	if code := w.wait(p, 30*time.Second); code != 0 {
		w.t.Fatalf("restore exited %d:\n%s", code, p.out)
	}
	out := p.out.String()
	for _, e := range w.dataDirEntries() {
		if strings.Contains(e, "tmp") {
			w.t.Errorf("restore left %s in the data dir", e)
		}
	}
	return out
}

// startPod starts the sidecar, waits for its startup probe (/readyz), then
// starts the app and waits for its probe (/healthz).
func (w *walkthrough) startPod() {
	w.t.Helper()
	w.daemon = w.start("litefs", "litefs", "mount", "-config", w.cfgPath)
	w.waitHTTP(w.daemon, "http://"+w.httpAddr+"/readyz")
	w.appAddr = testenv.FreeAddr(w.t)
	w.app = w.start("myapp", "myapp", "-addr", w.appAddr, "-db", filepath.Join(w.fuseDir, "db"))
	w.waitHTTP(w.app, "http://"+w.appAddr+"/healthz")
}

func (w *walkthrough) waitHTTP(p *walkProc, url string) {
	w.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body, err := w.get(url)
		if err == nil && status == http.StatusOK {
			return
		}
		if p.exited() {
			w.t.Fatalf("%s exited (%v) before %s answered 200:\n%s", p.name, p.err, url, p.out)
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: no 200 from %s within 30s: %d %q %v", p.name, url, status, body, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *walkthrough) get(url string) (int, string, error) {
	resp, err := w.client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// visit is `curl localhost:8080`: the counter after this visit.
func (w *walkthrough) visit() int {
	w.t.Helper()
	status, body, err := w.get("http://" + w.appAddr + "/")
	if err != nil || status != http.StatusOK {
		w.t.Fatalf("GET /: %d %q %v", status, body, err)
	}
	n, err := strconv.Atoi(body)
	if err != nil {
		w.t.Fatalf("GET /: body %q is not a count", body)
	}
	// The probes' endpoint reads it without counting a visit.
	if status, hb, err := w.get("http://" + w.appAddr + "/healthz"); err != nil || status != http.StatusOK || hb != body {
		w.t.Fatalf("GET /healthz after a visit returning %s: %d %q %v", body, status, hb, err)
	}
	return n
}

// visits makes visits, waits more than a sync-interval, and makes more:
// durable is the last visit acknowledged more than one sync-interval before
// the caller's kill, last the last visit.
func (w *walkthrough) visits() (durable, last int) {
	w.t.Helper()
	for range 5 {
		durable = w.visit()
	}
	time.Sleep(5 * walkSyncInterval)
	for range 3 {
		last = w.visit()
	}
	return durable, last
}

// stopPod is `kubectl delete pod`: SIGTERM to the app, then to the sidecar
// (a native sidecar stops after the app); both must exit 0, and litefs
// must leave no mount.
func (w *walkthrough) stopPod() {
	w.t.Helper()
	for _, p := range []*walkProc{w.app, w.daemon} {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			w.t.Fatalf("SIGTERM %s: %v", p.name, err)
		}
		if code := w.wait(p, 40*time.Second); code != 0 {
			w.t.Fatalf("%s exited %d after SIGTERM (%v):\n%s", p.name, code, p.err, p.out)
		}
	}
	w.requireLog(w.daemon.out.String(), "litefs", `msg="shut down cleanly"`)
	if isMountPoint(w.fuseDir) {
		w.t.Fatalf("litefs exited after SIGTERM but %s is still mounted", w.fuseDir)
	}
	w.daemon, w.app = nil, nil
}

// kill9 kills the app and the sidecar with SIGKILL and leaves the dead
// mount behind, as a crashed pod does.
func (w *walkthrough) kill9() {
	w.t.Helper()
	for _, p := range []*walkProc{w.app, w.daemon} {
		if err := p.cmd.Process.Kill(); err != nil {
			w.t.Fatalf("kill -9 %s: %v", p.name, err)
		}
	}
	for _, p := range []*walkProc{w.app, w.daemon} {
		w.wait(p, 10*time.Second)
	}
	if _, err := os.Stat(w.fuseDir); !errors.Is(err, syscall.ENOTCONN) {
		w.t.Fatalf("after kill -9 of litefs, stat %s: %v; want a dead mount (ENOTCONN)", w.fuseDir, err)
	}
	w.daemon, w.app = nil, nil
}

// wipe is deleting the PVC: a new, empty volume.
func (w *walkthrough) wipe() {
	w.t.Helper()
	if err := os.RemoveAll(w.dataDir); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Mkdir(w.dataDir, 0o755); err != nil {
		w.t.Fatal(err)
	}
}

func (w *walkthrough) dataDirEntries() []string {
	w.t.Helper()
	ents, err := os.ReadDir(w.dataDir)
	if err != nil {
		w.t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// requireRestored asserts the restore log the guide shows: the plan, the
// snapshot, each segment, the rename into place, the result.
func (w *walkthrough) requireRestored(out string) {
	w.t.Helper()
	db := regexp.QuoteMeta(filepath.Join(w.dataDir, "db"))
	w.requireLog(out, "restore", `msg="restore plan" replica=s3 files=\d+ `)
	w.requireLog(out, "restore", `msg="snapshot applied" key=9/[0-9a-f]{16}-[0-9a-f]{16}\.ltx pages=\d+ `)
	w.requireLog(out, "restore", `msg=applied key=0/[0-9a-f]{16}-[0-9a-f]{16}\.ltx pages=\d+ `)
	w.requireLog(out, "restore", `msg=renamed from=\S+ to=`+db+` txid=[0-9a-f]{16} `)
	w.requireLog(out, "restore", `msg="restore complete" path=`+db+` `)
	if _, err := os.Stat(filepath.Join(w.dataDir, "db")); err != nil {
		w.t.Fatalf("restore logged success but: %v", err)
	}
}

func (w *walkthrough) requireLog(out, name, re string) {
	w.t.Helper()
	if !regexp.MustCompile(re).MatchString(out) {
		w.t.Fatalf("%s's log has no line matching %s:\n%s", name, re, out)
	}
}

func (w *walkthrough) requireLogEventually(name, re string, timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for !regexp.MustCompile(re).MatchString(w.daemon.out.String()) {
		if time.Now().After(deadline) {
			w.t.Fatalf("%s's log has no line matching %s after %v:\n%s", name, re, timeout, w.daemon.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restoredCount reads the counter from a copy of the restored database
// (the volume itself stays as the restore left it) and checks its
// integrity.
func (w *walkthrough) restoredCount() int {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join(w.dataDir, "db"))
	if err != nil {
		w.t.Fatal(err)
	}
	cp := filepath.Join(w.t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, b, 0o644); err != nil {
		w.t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+cp)
	if err != nil {
		w.t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		w.t.Fatalf("restored database: integrity_check %q %v", res, err)
	}
	var n int
	if err := db.QueryRow("SELECT n FROM counter WHERE id = 1").Scan(&n); err != nil {
		w.t.Fatalf("restored database: read the counter: %v", err)
	}
	return n
}

// integrityThroughMount runs PRAGMA integrity_check on the database the
// app sees, through the mount.
func (w *walkthrough) integrityThroughMount() {
	w.t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(w.fuseDir, "db")+"?_busy_timeout=10000")
	if err != nil {
		w.t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		w.t.Fatalf("integrity_check through the mount: %q %v", res, err)
	}
}

// waitCaughtUp waits until litefs reports the replica at the database's
// TXID, with the counter at count (the app is idle meanwhile).
func (w *walkthrough) waitCaughtUp(count int, timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := w.metrics()
		if db, rep := m[`litefs_db_txid{db="db"}`], m[`litefs_replica_txid{db="db"}`]; db > 0 && db == rep {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the replica did not catch up within %v (counter %d): db_txid %v replica_txid %v", timeout, count,
				m[`litefs_db_txid{db="db"}`], m[`litefs_replica_txid{db="db"}`])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *walkthrough) metrics() map[string]float64 {
	w.t.Helper()
	status, body, err := w.get("http://" + w.httpAddr + "/metrics")
	if err != nil || status != http.StatusOK {
		w.t.Fatalf("GET /metrics: %d %v", status, err)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// isMountPoint reports whether dir is a mount point.
func isMountPoint(dir string) bool {
	b, err := os.ReadFile("/walkProc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}
