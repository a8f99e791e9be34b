package restorecmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/replica/replicatest"
)

// runCmd runs the command as the standalone binary would.
func runCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	code := Run(context.Background(), "restore", args, &stderr)
	return code, stderr.String()
}

// oneFileReplica is a file replica URL holding one snapshot, TXID 1.
func oneFileReplica(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "replica")
	ch := replicatest.NewChain(512)
	if _, err := ch.Commit(time.Unix(1700000000, 0), 2, map[uint32][]byte{1: make([]byte, 512), 2: bytes.Repeat([]byte{7}, 512)}); err != nil {
		t.Fatal(err)
	}
	b, err := ch.File(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := file.NewClient(dir).WriteLTXFile(context.Background(), 0, 1, 1, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return "file://" + dir
}

// The checks on the output path, in the command's words: the directory
// (Restore's check, worded here), the database already there (the
// command's own, for -if-db-not-exists), and anything else at the path
// (Restore's).
func TestOutputChecks(t *testing.T) {
	url := oneFileReplica(t)

	missing := filepath.Join(t.TempDir(), "volume", "db")
	code, stderr := runCmd(t, "-o", missing, url)
	if want := "restore: directory " + filepath.Dir(missing) + " does not exist: is the volume mounted there?\n"; code != 1 || stderr != want {
		t.Errorf("missing directory: exit %d, %q; want 1, %q", code, stderr, want)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stderr = runCmd(t, "-o", filepath.Join(notDir, "db"), url)
	if want := "restore: directory " + notDir + " does not exist: is the volume mounted there?\n"; code != 1 || stderr != want {
		t.Errorf("directory is a file: exit %d, %q; want 1, %q", code, stderr, want)
	}

	existing := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(existing, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stderr = runCmd(t, "-o", existing, url)
	if want := "restore: database " + existing + " already exists: remove it first, or pass -if-db-not-exists\n"; code != 1 || stderr != want {
		t.Errorf("existing database: exit %d, %q; want 1, %q", code, stderr, want)
	}
	if code, stderr = runCmd(t, "-if-db-not-exists", "-o", existing, url); code != 0 || stderr != "" {
		t.Errorf("existing database, -if-db-not-exists: exit %d, %q; want 0", code, stderr)
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Fatal("existing database was modified")
	}

	// A dangling symlink is no database to keep, and nothing to replace.
	dangling := filepath.Join(t.TempDir(), "db")
	if err := os.Symlink(filepath.Join(t.TempDir(), "gone"), dangling); err != nil {
		t.Fatal(err)
	}
	code, stderr = runCmd(t, "-if-db-not-exists", "-o", dangling, url)
	if want := "restore: " + dangling + " already exists: refusing to replace a database\n"; code != 1 || stderr != want {
		t.Errorf("dangling symlink: exit %d, %q; want 1, %q", code, stderr, want)
	}

	out := filepath.Join(t.TempDir(), "db")
	if code, stderr = runCmd(t, "-o", out, url); code != 0 || stderr != "" {
		t.Fatalf("restore: exit %d, %q", code, stderr)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() != 2*512 {
		t.Fatalf("restored database: %v, %v", fi, err)
	}
}

func TestEmptyReplica(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "replica")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	url := "file://" + dir
	out := filepath.Join(t.TempDir(), "db")
	if code, stderr := runCmd(t, "-o", out, url); code != 1 || !strings.Contains(stderr, "replica is empty: nothing to restore") {
		t.Errorf("empty replica: exit %d, %q", code, stderr)
	}
	if code, stderr := runCmd(t, "-if-replica-exists", "-o", out, url); code != 0 || stderr != "" {
		t.Errorf("empty replica, -if-replica-exists: exit %d, %q", code, stderr)
	}
}

// A file replica whose directory does not exist is an error naming it (a
// mistyped path, not an empty replica); -if-replica-exists makes it a
// success that writes nothing.
func TestMissingReplicaDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "no-such-replica")
	out := filepath.Join(t.TempDir(), "db")
	code, stderr := runCmd(t, "-o", out, "file://"+dir)
	if want := "restore: replica directory " + dir + " does not exist: file does not exist: check the replica URL (pass -if-replica-exists to make a missing replica a success)\n"; code != 1 || stderr != want {
		t.Errorf("missing replica directory: exit %d, %q; want 1, %q", code, stderr, want)
	}
	code, stderr = runCmd(t, "-if-replica-exists", "-v", "-o", out, "file://"+dir)
	if code != 0 || !strings.Contains(stderr, `msg="replica directory does not exist; nothing to restore" dir=`+dir) {
		t.Errorf("missing replica directory, -if-replica-exists: exit %d, %q", code, stderr)
	}
	if _, err := os.Lstat(out); err == nil {
		t.Error("-if-replica-exists with no replica wrote the database")
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("restore created the replica directory")
	}
}

// Mistakes in the command line exit 2 with one line saying what is wrong;
// -h prints the usage and exits 0.
func TestUsage(t *testing.T) {
	url := oneFileReplica(t)
	out := filepath.Join(t.TempDir(), "db")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"/mnt/a", "/mnt/b"}, "restore: expected one argument (the database path, or a replica URL), got 2: /mnt/a /mnt/b (run 'restore -h' for the usage)\n"},
		{[]string{"-o", out, "-replica", url, "/mnt/db"}, "restore: unexpected argument \"/mnt/db\": with -replica URL, give -o OUT and no database path (run 'restore -h' for the usage)\n"},
		{[]string{"-o", out, "-replica", url, url}, "restore: give the replica URL once: -replica URL or as the argument (run 'restore -h' for the usage)\n"},
		{[]string{url}, "restore: -o OUT is required with a replica URL (run 'restore -h' for the usage)\n"},
		{nil, "restore: give the database path (DB), or -o OUT with -replica URL (run 'restore -h' for the usage)\n"},
		{[]string{"-txid", "x", "-o", out, url}, `restore: -txid "x": write 16 hex digits (0000000000000042) or a decimal number (66) (run 'restore -h' for the usage)` + "\n"},
		{[]string{"-txid", "1", "-timestamp", "2026-01-02T15:04:05Z", "-o", out, url}, "restore: give -txid or -timestamp, not both (run 'restore -h' for the usage)\n"},
	} {
		if code, stderr := runCmd(t, tc.args...); code != 2 || stderr != tc.want {
			t.Errorf("restore %q: exit %d, %q; want 2, %q", tc.args, code, stderr, tc.want)
		}
	}
	code, stderr := runCmd(t, "-no-such-flag")
	if code != 2 || !strings.HasPrefix(stderr, "flag provided but not defined: -no-such-flag\nusage: restore") || strings.Count(stderr, "no-such-flag") != 1 {
		t.Errorf("unknown flag: exit %d, %q", code, stderr)
	}
	for _, h := range []string{"-h", "-help", "--help"} {
		if code, stderr := runCmd(t, h); code != 0 || !strings.HasPrefix(stderr, "usage: restore [flags] DB") || !strings.Contains(stderr, "-if-replica-exists") {
			t.Errorf("restore %s: exit %d, %q", h, code, stderr)
		}
	}
	if _, err := os.Lstat(out); err == nil {
		t.Error("a usage error wrote the database")
	}
}

// A relative DB path is taken from the working directory before it is
// matched against the config, as are a relative -o and a relative -config.
func TestRelativePaths(t *testing.T) {
	url := oneFileReplica(t)
	root := t.TempDir()
	fuseDir, dataDir := filepath.Join(root, "mnt"), filepath.Join(root, "data")
	for _, d := range []string{fuseDir, dataDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := "[fuse]\ndir = \"" + fuseDir + "\"\n[data]\ndir = \"" + dataDir + "\"\n[[dbs]]\npath = \"" + filepath.Join(fuseDir, "db") + "\"\n[dbs.replica]\nurl = \"" + url + "\"\n"
	if err := os.WriteFile(filepath.Join(root, "litefs.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(fuseDir)
	if code, stderr := runCmd(t, "-config", "../litefs.toml", "db"); code != 0 || stderr != "" {
		t.Fatalf("restore -config ../litefs.toml db: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "db")); err != nil {
		t.Fatalf("not restored to data.dir: %v", err)
	}
	// The data-dir path, relative, finds the database too; -o relative.
	t.Chdir(root)
	if code, stderr := runCmd(t, "-config", "litefs.toml", "-o", "copy.db", "data/db"); code != 0 || stderr != "" {
		t.Fatalf("restore -o copy.db data/db: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(root, "copy.db")); err != nil {
		t.Fatalf("-o copy.db: %v", err)
	}
	code, stderr := runCmd(t, "-config", "litefs.toml", "-o", "copy.db", "mnt/db")
	if want := "restore: database " + filepath.Join(root, "copy.db") + " already exists: remove it first, or pass -if-db-not-exists\n"; code != 1 || stderr != want {
		t.Errorf("relative -o that exists: exit %d, %q; want the absolute path in %q", code, stderr, want)
	}
	code, stderr = runCmd(t, "-config", "litefs.toml", "other/db")
	if want := "database " + filepath.Join(root, "other/db") + " is not in litefs.toml"; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("relative path outside the config: exit %d, %q; want %q", code, stderr, want)
	}
}
