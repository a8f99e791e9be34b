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
	url := "file://" + filepath.Join(t.TempDir(), "replica")
	out := filepath.Join(t.TempDir(), "db")
	if code, stderr := runCmd(t, "-o", out, url); code != 1 || !strings.Contains(stderr, "replica is empty: nothing to restore") {
		t.Errorf("empty replica: exit %d, %q", code, stderr)
	}
	if code, stderr := runCmd(t, "-if-replica-exists", "-o", out, url); code != 0 || stderr != "" {
		t.Errorf("empty replica, -if-replica-exists: exit %d, %q", code, stderr)
	}
}
