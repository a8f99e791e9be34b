package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/testenv"
	"github.com/litefs-dev/litefs/replica"
)

// runMount runs `litefs mount -config cfgPath` expecting it to refuse; it
// returns what it printed. A daemon that mounts instead is killed after 20 s
// (and the test fails on the nil error).
func runMount(t *testing.T, cfgPath string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(testenv.Binaries(t), "litefs"), "mount", "-config", cfgPath)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// A second `litefs mount` on the data dir of a running one is refused with
// the data dir and the first one's pid named, and the first keeps serving.
func TestSecondDaemonOnVolumeRefused(t *testing.T) {
	e := newEnv(t, "0s")
	first := e.startProcess()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (x)`)
	mustExec(t, db, `INSERT INTO t VALUES (1)`)

	other := *e
	other.mountDir = filepath.Join(e.root, "mnt2")
	other.replicaDir = filepath.Join(e.root, "replica2")
	cfg2 := filepath.Join(e.root, "second.toml")
	writeFile(t, cfg2, replaceHTTP(other.configText(), testenv.FreeAddr(t)))
	out, err := runMount(t, cfg2)
	if err == nil {
		t.Fatalf("second daemon on the same data dir started:\n%s", out)
	}
	for _, want := range []string{"data.dir " + e.dataDir + " is in use by another litefs", fmt.Sprintf("pid %d", first.Process.Pid)} {
		if !strings.Contains(out, want) {
			t.Fatalf("second daemon's error does not say %q:\n%s", want, out)
		}
	}
	if isMounted(other.mountDir) {
		t.Fatal("the refused daemon left a mount behind")
	}

	// The first still commits and replicates.
	mustExec(t, db, `INSERT INTO t VALUES (2)`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := filepath.Join(t.TempDir(), "restored.db")
		if _, err := replica.Restore(context.Background(), e.client(), replica.RestoreOptions{OutputPath: out}); err == nil &&
			queryInt(t, out, `SELECT count(*) FROM t`) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first daemon stopped replicating after the second was refused")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A fuse dir that holds a database (a Litestream user's app dir) is refused:
// the error names the file and the command that moves it onto the volume.
func TestFUSEDirWithDatabaseRefused(t *testing.T) {
	// The replica already holds the database (the order of the checks
	// matters: not "run restore first", but "move it").
	e := newEnv(t, "0s")
	e.start()
	live := e.open("_journal_mode=WAL")
	mustExec(t, live, `CREATE TABLE t (x)`)
	mustExec(t, live, `INSERT INTO t VALUES (1)`)
	e.flush()
	live.Close()
	e.stop()
	// Now the database sits in fuse.dir, as a Litestream user's does.
	if err := os.Rename(filepath.Join(e.dataDir, "db"), filepath.Join(e.mountDir, "db")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(e.root, "litefs.toml")
	writeFile(t, cfg, replaceHTTP(e.configText(), testenv.FreeAddr(t)))
	out, err := runMount(t, cfg)
	if err == nil {
		t.Fatalf("litefs mounted over a directory holding a database:\n%s", out)
	}
	for _, want := range []string{"fuse.dir " + e.mountDir + " holds files (db)", "mv " + e.mountDir + "/* " + e.dataDir + "/"} {
		if !strings.Contains(out, want) {
			t.Fatalf("error does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "run `litefs restore` first") {
		t.Fatalf("the hidden database was met with restore advice:\n%s", out)
	}
	if isMounted(e.mountDir) {
		t.Fatal("refused, yet mounted")
	}
	if _, err := os.Stat(filepath.Join(e.mountDir, "db")); err != nil {
		t.Fatalf("the database in fuse.dir is gone: %v", err)
	}
	// The suggested move works: the daemon then serves the same rows.
	for _, n := range []string{"db"} {
		if err := os.Rename(filepath.Join(e.mountDir, n), filepath.Join(e.dataDir, n)); err != nil {
			t.Fatal(err)
		}
	}
	e.startProcess()
	db := e.open("_journal_mode=WAL")
	if n := queryInt(t, db, `SELECT count(*) FROM t`); n != 1 {
		t.Fatalf("after the move the mount shows %d rows, want 1", n)
	}
}
