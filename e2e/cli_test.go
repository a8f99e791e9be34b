package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/testenv"
)

// cliRun runs one of the built binaries (litefs or restore) in dir ("" =
// this process's) and returns its exit status and outputs.
func cliRun(t *testing.T, dir, bin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(testenv.Binaries(t), bin), args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	case err != nil:
		t.Fatalf("%s %q: %v", bin, args, err)
	}
	return 0, stdout.String(), stderr.String()
}

// cliConfig writes a config of one database under root whose replica is
// replicaDir, and returns its path.
func cliConfig(t *testing.T, root, replicaDir string) string {
	t.Helper()
	return testenv.Config{
		FUSEDir: filepath.Join(root, "mnt"), DataDir: filepath.Join(root, "data"),
		Replica: testenv.Replica{URL: "file://" + replicaDir},
	}.Write(t, filepath.Join(root, "litefs.toml"))
}

// Every command of both binaries answers -h and -help with its usage and
// exit status 0 (flag.ErrHelp used to be 2).
func TestCLIHelp(t *testing.T) {
	for _, c := range []struct {
		bin, cmd, want string
	}{
		{"litefs", "mount", "-exec"},
		{"litefs", "restore", "usage: litefs restore [flags] DB"},
		{"litefs", "ltx", "usage: litefs ltx [-json] [-config FILE] DB"},
		{"litefs", "status", "usage: litefs status [-json] [-config FILE] [-addr HOST:PORT]"},
		{"litefs", "version", "usage: litefs version"},
		{"restore", "", "usage: restore [flags] DB"},
	} {
		for _, h := range []string{"-h", "-help"} {
			args := []string{h}
			if c.cmd != "" {
				args = []string{c.cmd, h}
			}
			code, stdout, stderr := cliRun(t, "", c.bin, args...)
			if code != 0 || !strings.Contains(stdout+stderr, c.want) {
				t.Errorf("%s %q: exit %d, want 0 and %q\nstdout: %s\nstderr: %s", c.bin, args, code, c.want, stdout, stderr)
			}
		}
	}
	if code, stdout, _ := cliRun(t, "", "litefs", "-h"); code != 0 || !strings.Contains(stdout, "status ") || !strings.Contains(stdout, "ltx ") {
		t.Errorf("litefs -h: exit %d, %q", code, stdout)
	}
}

// An argument a command does not take is an error that names it, exit 2,
// and nothing runs.
func TestCLIExtraArgument(t *testing.T) {
	root := t.TempDir()
	cfg := cliConfig(t, root, filepath.Join(root, "replica"))
	db := filepath.Join(root, "mnt", "db")
	for _, c := range []struct {
		bin  string
		args []string
		want string
	}{
		{"litefs", []string{"ltx", "-config", cfg, db, "extra"}, `litefs ltx: unexpected argument "extra"`},
		{"litefs", []string{"version", "x"}, `litefs version: unexpected argument "x"`},
		{"litefs", []string{"status", "-config", cfg, "db"}, `litefs status: unexpected argument "db"`},
		{"litefs", []string{"mount", "-config", cfg, "myapp"}, `litefs mount: unexpected argument "myapp"`},
		{"litefs", []string{"restore", "-config", cfg, db, db + "2"}, "litefs restore: expected one argument (the database path, or a replica URL), got 2"},
		{"restore", []string{"-config", cfg, db, db + "2"}, "restore: expected one argument (the database path, or a replica URL), got 2"},
		{"restore", []string{"-o", filepath.Join(root, "out.db"), "-replica", "file://" + root, db}, `restore: unexpected argument "` + db + `"`},
	} {
		code, stdout, stderr := cliRun(t, "", c.bin, c.args...)
		if code != 2 || stdout != "" || !strings.HasPrefix(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want 2 and one line %q", c.bin, c.args, code, stdout, stderr, c.want)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "data")); len(ents) != 0 {
		t.Errorf("a refused command wrote %v", ents)
	}
}

// A file:// replica whose directory does not exist is an error naming it
// for restore and ltx (not an empty replica); restore -if-replica-exists
// makes it a success that writes nothing.
func TestCLIMissingReplicaDir(t *testing.T) {
	root := t.TempDir()
	missing := filepath.Join(root, "no-such-replica")
	cfg := cliConfig(t, root, missing)
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(root, "mnt", "db")
	want := "replica directory " + missing + " does not exist"
	for _, c := range []struct {
		bin  string
		args []string
	}{
		{"restore", []string{"-config", cfg, db}},
		{"litefs", []string{"restore", "-config", cfg, db}},
		{"restore", []string{"-o", filepath.Join(root, "out.db"), "file://" + missing}},
		{"litefs", []string{"ltx", "-config", cfg, db}},
		{"litefs", []string{"ltx", "-replica", "file://" + missing}},
	} {
		code, stdout, stderr := cliRun(t, "", c.bin, c.args...)
		if code != 1 || stdout != "" || !strings.Contains(stderr, want) {
			t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want 1 and %q", c.bin, c.args, code, stdout, stderr, want)
		}
	}
	code, _, stderr := cliRun(t, "", "restore", "-config", cfg, "-if-db-not-exists", "-if-replica-exists", "-v", db)
	if code != 0 || !strings.Contains(stderr, "replica directory does not exist; nothing to restore") {
		t.Errorf("restore -if-replica-exists: exit %d, %q", code, stderr)
	}
	for _, d := range []string{filepath.Join(root, "data"), root} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.Name() == "db" || e.Name() == "out.db" || e.Name() == "no-such-replica" {
				t.Errorf("%s holds %s after failed or skipped restores", d, e.Name())
			}
		}
	}
}

// Relative paths work everywhere: -config, the DB argument (its FUSE or
// data-dir path), -o, taken from the working directory. litefs ltx -json
// lists what the text lists.
func TestCLIRelativePathsAndLTXJSON(t *testing.T) {
	e := newEnv(t, "0s")
	writeFile(t, filepath.Join(e.root, "litefs.toml"), e.configText())
	e.start()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (x)`)
	mustExec(t, db, `INSERT INTO t VALUES (1)`)
	pos := e.flush()
	db.Close()
	e.stop()

	// From the root: relative -config, FUSE path and data-dir path.
	code, text, stderr := cliRun(t, e.root, "litefs", "ltx", "-config", "litefs.toml", "mnt/db")
	if code != 0 || !strings.HasPrefix(text, "LEVEL  MIN ") || !strings.Contains(text, pos.TXID.String()) {
		t.Fatalf("litefs ltx -config litefs.toml mnt/db: exit %d, %q\n%s", code, stderr, text)
	}
	code, stdout, stderr := cliRun(t, filepath.Join(e.root, "data"), "litefs", "ltx", "-json", "-config", "../litefs.toml", "db")
	if code != 0 {
		t.Fatalf("litefs ltx -json (from data/): exit %d, %q", code, stderr)
	}
	var files []struct {
		Level   int       `json:"level"`
		MinTXID ltx.TXID  `json:"min_txid"`
		MaxTXID ltx.TXID  `json:"max_txid"`
		Created time.Time `json:"created"`
		Size    int64     `json:"size"`
	}
	if err := json.Unmarshal([]byte(stdout), &files); err != nil {
		t.Fatalf("litefs ltx -json: %v\n%s", err, stdout)
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")[1:]
	if len(files) == 0 || len(files) != len(lines) {
		t.Fatalf("-json lists %d files, the text %d:\n%s\n%s", len(files), len(lines), stdout, text)
	}
	var top ltx.TXID
	for i, f := range files {
		if f := strings.Fields(lines[i]); len(f) != 5 {
			t.Fatalf("text line %q", lines[i])
		}
		want := strings.Join([]string{strconv.Itoa(f.Level), f.MinTXID.String(), f.MaxTXID.String(), f.Created.Format(time.RFC3339Nano), strconv.FormatInt(f.Size, 10)}, " ")
		if got := strings.Join(strings.Fields(lines[i]), " "); got != want || f.Size <= 0 || f.Created.IsZero() {
			t.Errorf("file %d: -json %+v, text %q", i, f, lines[i])
		}
		top = max(top, f.MaxTXID)
	}
	if top != pos.TXID {
		t.Errorf("-json's newest TXID %s, flushed %s", top, pos.TXID)
	}

	// restore with a relative -o and DB, from inside the data dir's parent.
	out := filepath.Join(e.root, "copies", "r.db")
	if err := os.Mkdir(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		bin  string
		args []string
	}{
		{"restore", []string{"-config", "../litefs.toml", "-o", "r.db", "../mnt/db"}},
		{"litefs", []string{"restore", "-config", "./../litefs.toml", "-o", "./r2.db", "../data/db"}},
	} {
		code, _, stderr := cliRun(t, filepath.Dir(out), c.bin, c.args...)
		if code != 0 || stderr != "" {
			t.Fatalf("%s %q: exit %d, %q", c.bin, c.args, code, stderr)
		}
		name := []string{"r.db", "r2.db"}[i]
		if n := queryInt(t, filepath.Join(filepath.Dir(out), name), `SELECT count(*) FROM t`); n != 1 {
			t.Fatalf("%s: %d rows, want 1", name, n)
		}
	}
	// A relative path that is not in the config says so, absolute.
	code, _, stderr = cliRun(t, e.root, "litefs", "ltx", "-config", "litefs.toml", "db")
	if code != 1 || !strings.Contains(stderr, "database "+filepath.Join(e.root, "db")+" is not in litefs.toml") {
		t.Errorf("litefs ltx db (outside the config): exit %d, %q", code, stderr)
	}
}

// litefs status asks the running daemon: aligned columns under a header,
// or a JSON array, per database; the config's [http] addr or -addr finds
// it; no daemon at the address is a clear error, exit 1.
func TestCLIStatus(t *testing.T) {
	e := newEnv(t, "0s")
	e.startProcess()
	cfg := filepath.Join(e.root, "litefs.toml")
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (x)`)
	mustExec(t, db, `INSERT INTO t VALUES (1)`)

	type dbStatus struct {
		Name        string   `json:"name"`
		Path        string   `json:"path"`
		State       string   `json:"state"`
		TXID        ltx.TXID `json:"txid"`
		ReplicaTXID ltx.TXID `json:"replica_txid"`
		LagSeconds  float64  `json:"lag_seconds"`
		StagedBytes int64    `json:"staged_bytes"`
	}
	var got []dbStatus
	waitFor(t, 10*time.Second, "the replica to catch up", func() bool {
		code, stdout, stderr := cliRun(t, "", "litefs", "status", "-json", "-config", cfg)
		if code != 0 {
			t.Fatalf("litefs status -json: exit %d, %q", code, stderr)
		}
		got = nil
		if err := json.Unmarshal([]byte(stdout), &got); err != nil || len(got) != 1 {
			t.Fatalf("litefs status -json: %v\n%s", err, stdout)
		}
		// The replica TXID moves just before lag and staging drop.
		return got[0].TXID > 1 && got[0].ReplicaTXID == got[0].TXID && got[0].LagSeconds == 0 && got[0].StagedBytes == 0
	})
	s := got[0]
	if s.Name != "db" || s.Path != filepath.Join(e.dataDir, "db") || s.State != "replicating" {
		t.Fatalf("status: %+v", s)
	}
	if m := metric(t, e.procAddr, "litefs_db_txid"); ltx.TXID(m) != s.TXID {
		t.Errorf("status TXID %s, litefs_db_txid %v", s.TXID, m)
	}

	// The text, by the config's address (relative -config) and by -addr,
	// here with the port only as ":PORT" is written in a config.
	_, port, _ := strings.Cut(e.procAddr, ":")
	for _, args := range [][]string{{"status", "-config", "litefs.toml"}, {"status", "-addr", ":" + port}} {
		code, stdout, stderr := cliRun(t, e.root, "litefs", args...)
		lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
		if code != 0 || stderr != "" || len(lines) != 2 {
			t.Fatalf("litefs %q: exit %d, %q\n%s", args, code, stderr, stdout)
		}
		if h := strings.Fields(lines[0]); strings.Join(h, " ") != "NAME PATH STATE TXID REPLICA_TXID LAG STAGED_BYTES" {
			t.Fatalf("header %q", lines[0])
		}
		want := []string{"db", filepath.Join(e.dataDir, "db"), "replicating", s.TXID.String(), s.TXID.String(), "0s", "0"}
		if f := strings.Fields(lines[1]); strings.Join(f, " ") != strings.Join(want, " ") {
			t.Fatalf("row %q, want %q", lines[1], want)
		}
		if strings.Index(lines[0], "STATE") != strings.Index(lines[1], "replicating") {
			t.Fatalf("columns not aligned:\n%s", stdout)
		}
	}

	nobody := testenv.FreeAddr(t)
	code, stdout, stderr := cliRun(t, "", "litefs", "status", "-addr", nobody)
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "litefs status: no litefs daemon answers at "+nobody+": is it running?") {
		t.Errorf("no daemon: exit %d, %q, %q", code, stdout, stderr)
	}
}
