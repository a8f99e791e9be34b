package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/internal/testenv"
)

// TestWalkthrough plays docs/kubernetes.md's walkthrough (issue 6) with the
// commands the pod's containers run, as processes, against versitygw:
//
//	init container  restore -config F -if-db-not-exists -if-replica-exists -v FUSE/db
//	sidecar         litefs mount -config F
//	app             myapp -addr ADDR -db FUSE/db
//
// F is the ConfigMap's litefs.toml (deploy/base/configmap.yaml) with the
// paths moved to temp dirs and the Secret's variables (deploy/secret.yaml)
// in the environment. A "pod" is the three run in order on one data dir (the
// PVC); deleting the pod stops them, deleting the PVC wipes the data dir.
func TestWalkthrough(t *testing.T) {
	testenv.RequireFUSE(t)
	bin := testenv.Binaries(t)
	w := newWalkthrough(t, bin)
	begin := time.Now()
	lap := begin
	step := func(name string) {
		t.Logf("%s: %v", name, time.Since(lap).Round(time.Millisecond))
		lap = time.Now()
	}

	// 1. An empty volume and an empty replica: the init container does
	// nothing, litefs mounts and waits for the app to create the db.
	out := w.restore()
	w.requireLog(out, "restore", `msg="replica is empty; nothing to restore"`)
	if ents := w.dataDirEntries(); len(ents) != 0 {
		t.Fatalf("restore on an empty volume with an empty replica wrote %v", ents)
	}
	w.startPod()
	if n := w.visit(); n != 1 {
		t.Fatalf("first visit: got %d, want 1", n)
	}
	step("1. empty volume")

	// 2. Delete the pod: SIGTERM, same PVC. The restore is skipped.
	w.stopPod()
	out = w.restore()
	w.requireLog(out, "restore", `msg="database exists; nothing to restore" path=`+regexp.QuoteMeta(filepath.Join(w.dataDir, "db")))
	w.startPod()
	if n := w.visit(); n != 2 {
		t.Fatalf("visit after deleting the pod: got %d, want 2", n)
	}
	step("2. delete the pod")

	// 3. Delete the PVC and the pod: the restore rebuilds the db from S3.
	w.stopPod()
	w.wipe()
	out = w.restore()
	w.requireRestored(out)
	if n := w.restoredCount(); n != 2 {
		t.Fatalf("restored counter %d, want 2", n)
	}
	w.startPod()
	if n := w.visit(); n != 3 {
		t.Fatalf("visit after deleting the PVC: got %d, want 3", n)
	}
	w.integrityThroughMount()
	step("3. delete the PVC and the pod")

	// 4a. A crash: kill -9 of litefs and myapp, same PVC. Nothing
	// acknowledged is lost, not even the visits of the last sync-interval
	// (they are in the WAL or staged on the volume), and litefs takes its
	// own lease back at once: the owner is the volume id.
	durable, last := w.visits()
	w.kill9()
	t.Logf("4a. killed after visit %d (%d acknowledged more than one sync-interval earlier)", last, durable)
	start := time.Now()
	out = w.restore()
	w.requireLog(out, "restore", `msg="database exists; nothing to restore"`)
	w.startPod()
	w.requireLog(w.daemon.out.String(), "litefs", `msg="detached a dead FUSE mount`)
	n := w.visit()
	if n != last+1 {
		t.Errorf("visit after kill -9 on the same volume: got %d, want %d: acknowledged visits were lost", n, last+1)
	}
	// Fast: no wait for the lease the killed daemon held, which was its
	// own.
	w.waitCaughtUp(n, walkLeaseTTL/2-time.Since(start))
	restart := time.Since(start)
	id, err := os.ReadFile(filepath.Join(w.dataDir, ".litefs", "id"))
	if err != nil {
		t.Fatal(err)
	}
	w.requireLog(w.daemon.out.String(), "litefs", `msg="took the replica lease" .*owner=`+regexp.QuoteMeta(strings.TrimSpace(string(id))))
	if strings.Contains(w.daemon.out.String(), "is leased by") {
		t.Errorf("litefs restarted on the same volume waited for its own lease:\n%s", w.daemon.out)
	}
	t.Logf("4a. restart on the same volume, to the replica caught up: %v (lease-ttl %v)", restart.Round(time.Millisecond), walkLeaseTTL)
	step("4a. kill -9, same volume")

	// 4b. A crash and a lost volume: kill -9, wipe, restore from S3 with
	// everything stopped. Every visit acknowledged more than one
	// sync-interval before the kill is in the replica.
	durable, last = w.visits()
	w.kill9()
	w.wipe()
	out = w.restore()
	w.requireRestored(out)
	got := w.restoredCount()
	t.Logf("4b. killed after visit %d; %d acknowledged more than one sync-interval earlier; restored %d", last, durable, got)
	if got < durable || got > last {
		t.Errorf("restored counter %d after kill -9: want %d..%d (visits acknowledged more than %v before the kill were lost)", got, durable, last, walkSyncInterval)
	}
	// The new pod on the new volume: a new volume id, so it waits out the
	// dead writer's lease before uploading; the app is not held up.
	start = time.Now()
	w.startPod()
	if n := w.visit(); n != got+1 {
		t.Errorf("visit after restoring a killed pod's replica: got %d, want %d", n, got+1)
	}
	w.requireLogEventually("litefs", `is leased by`, 5*time.Second)
	if status, body, err := w.get("http://" + w.httpAddr + "/readyz"); err == nil {
		t.Logf("4b. /readyz while waiting for the dead writer's lease: %d %s", status, body)
	}
	w.waitCaughtUp(got+1, 2*walkLeaseTTL)
	w.waitHTTP(w.daemon, "http://"+w.httpAddr+"/readyz")
	t.Logf("4b. new volume: the replica caught up after the dead writer's lease, %v after start (lease-ttl %v)", time.Since(start).Round(time.Millisecond), walkLeaseTTL)
	w.stopPod()
	step("4b. kill -9, new volume")
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}

const (
	walkSyncInterval = 200 * time.Millisecond
	walkLeaseTTL     = 10 * time.Second
)

// walkthrough is one StatefulSet pod: a data dir (the PVC), a FUSE dir (the
// emptyDir), the config and the environment from the Secret, and the
// processes of the current pod.
type walkthrough struct {
	t       *testing.T
	bin     string
	s3      *s3test.Server
	root    string
	fuseDir string
	dataDir string
	cfgPath string
	env     []string
	client  *http.Client

	mu    sync.Mutex
	procs []*walkProc // every process run, for the failure log

	daemon, app *walkProc
	httpAddr    string // litefs' /readyz, /metrics
	appAddr     string
}

func newWalkthrough(t *testing.T, bin string) *walkthrough {
	t.Helper()
	root := t.TempDir()
	w := &walkthrough{t: t, bin: bin, root: root,
		fuseDir: filepath.Join(root, "fuse"), dataDir: filepath.Join(root, "data"),
		cfgPath: filepath.Join(root, "litefs.toml"),
		client:  &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}},
	}
	for _, d := range []string{w.fuseDir, w.dataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Cleanups run last-registered first: these two run after every
	// process is gone.
	t.Cleanup(func() {
		if isMountPoint(w.fuseDir) {
			if err := syscall.Unmount(w.fuseDir, syscall.MNT_DETACH); err != nil {
				t.Errorf("detach %s: %v", w.fuseDir, err)
			}
		}
	})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, p := range w.procs {
			t.Logf("--- %s (%s) ---\n%s", p.name, strings.Join(p.cmd.Args, " "), p.out)
		}
	})
	w.s3 = s3test.StartVersityGW(t)
	w.env = w.secretEnv()
	return w
}

// secretEnv is the environment deploy/secret.yaml gives the restore and
// litefs containers (envFrom), filled in for versitygw. A key the test
// cannot fill fails it: the config may refer to it.
func (w *walkthrough) secretEnv() []string {
	w.t.Helper()
	values := map[string]string{
		"LITEFS_ACCESS_KEY_ID":     w.s3.AccessKey,
		"LITEFS_SECRET_ACCESS_KEY": w.s3.SecretKey,
		"S3_BUCKET":                w.s3.Bucket,
		"S3_ENDPOINT":              w.s3.Endpoint,
		"S3_REGION":                w.s3.Region,
	}
	b, err := os.ReadFile("../deploy/secret.yaml")
	if err != nil {
		w.t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		// Nothing from the test's own environment may stand in for the
		// Secret.
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "AWS_") && !strings.HasPrefix(k, "LITEFS_") &&
			!strings.HasPrefix(k, "LITESTREAM_") && !strings.HasPrefix(k, "S3_") {
			env = append(env, kv)
		}
	}
	keys := yamlMapKeys(w.t, b, "stringData")
	for _, k := range keys {
		v, ok := values[k]
		if !ok {
			w.t.Fatalf("deploy/secret.yaml sets %s: teach the walkthrough test its value", k)
		}
		env = append(env, k+"="+v)
	}
	if len(keys) == 0 {
		w.t.Fatal("deploy/secret.yaml: no stringData keys")
	}
	return env
}

// yamlMapKeys returns the keys of the block mapping under the line "name:"
// (a two-space-indented map, as the Secret is written).
func yamlMapKeys(t *testing.T, b []byte, name string) []string {
	t.Helper()
	var keys []string
	in := false
	keyRe := regexp.MustCompile(`^  ([A-Za-z_][A-Za-z0-9_]*):`)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if !strings.HasPrefix(line, " ") {
			in = strings.TrimSpace(line) == name+":"
			continue
		}
		if m := keyRe.FindStringSubmatch(line); in && m != nil {
			keys = append(keys, m[1])
		}
	}
	return keys
}

// shippedConfig returns the ConfigMap's litefs.toml.
func shippedConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../deploy/base/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	start := -1
	keyIndent := 0
	for i, l := range lines {
		if strings.TrimSpace(l) == "litefs.toml: |" {
			start, keyIndent = i+1, len(l)-len(strings.TrimLeft(l, " "))
			break
		}
	}
	if start < 0 {
		t.Fatal(`deploy/base/configmap.yaml: no "litefs.toml: |" block`)
	}
	var out []string
	indent := -1
	for _, l := range lines[start:] {
		if strings.TrimSpace(l) == "" {
			out = append(out, "")
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " "))
		if n <= keyIndent {
			break
		}
		if indent < 0 {
			indent = n
		}
		if n < indent {
			t.Fatalf("deploy/base/configmap.yaml: litefs.toml block: bad indentation: %q", l)
		}
		out = append(out, l[indent:])
	}
	return strings.Join(out, "\n") + "\n"
}

// writeConfig writes the shipped litefs.toml with the pod's paths moved to
// temp dirs, litefs' HTTP server on a free loopback port, and the test's
// sync-interval and lease-ttl.
func (w *walkthrough) writeConfig() {
	w.t.Helper()
	text := shippedConfig(w.t)
	w.httpAddr = testenv.FreeAddr(w.t)
	for _, r := range []struct{ old, new string }{
		{`addr = ":9090"`, fmt.Sprintf("addr = %q", w.httpAddr)},
		{`dir = "/var/lib/myapp"`, fmt.Sprintf("dir = %q", w.fuseDir)},
		{`dir = "/var/lib/litefs"`, fmt.Sprintf("dir = %q", w.dataDir)},
		{`path = "/var/lib/myapp/db"`, fmt.Sprintf("path = %q", filepath.Join(w.fuseDir, "db"))},
	} {
		if strings.Count(text, r.old) != 1 {
			w.t.Fatalf("the ConfigMap's litefs.toml no longer has exactly one %s:\n%s", r.old, text)
		}
		text = strings.Replace(text, r.old, r.new, 1)
	}
	var lastTable string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "[") {
			lastTable = l
		}
	}
	if lastTable != "[dbs.replica]" {
		w.t.Fatalf("the ConfigMap's litefs.toml ends in table %s, want [dbs.replica]", lastTable)
	}
	text += fmt.Sprintf("sync-interval = %q\nlease-ttl = %q\n", walkSyncInterval.String(), walkLeaseTTL.String())
	if err := os.WriteFile(w.cfgPath, []byte(text), 0o644); err != nil {
		w.t.Fatal(err)
	}
}
