package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/replica/replicatest"
)

// fileReplica holds a snapshot 1-1 and a segment 2-3.
func fileReplica(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "replica")
	c := file.NewClient(dir)
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, f := range []struct {
		level    int
		min, max ltx.TXID
	}{{replica.SnapshotLevel, 1, 1}, {0, 2, 3}} {
		b := replicatest.NewFile(t, f.min, f.max, ts)
		if _, err := c.WriteLTXFile(context.Background(), f.level, f.min, f.max, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The text keeps its columns; -json holds the same rows.
func TestLTXOutput(t *testing.T) {
	dir := fileReplica(t)
	code, stdout, stderr := runCLI(t, "ltx", "-replica", "file://"+dir)
	if code != 0 || stderr != "" {
		t.Fatalf("litefs ltx: exit %d, %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "LEVEL  MIN               MAX               CREATED               SIZE") ||
		!strings.HasPrefix(lines[1], "0      0000000000000002  0000000000000003  2026-01-02T03:04:05Z  ") ||
		!strings.HasPrefix(lines[2], "9      0000000000000001  0000000000000001  2026-01-02T03:04:05Z  ") {
		t.Fatalf("litefs ltx printed:\n%s", stdout)
	}

	code, stdout, stderr = runCLI(t, "ltx", "-json", "-replica", "file://"+dir)
	if code != 0 || stderr != "" {
		t.Fatalf("litefs ltx -json: exit %d, %q", code, stderr)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("litefs ltx -json: %v\n%s", err, stdout)
	}
	if len(got) != 2 || got[0]["level"] != 0.0 || got[0]["min_txid"] != "0000000000000002" || got[0]["max_txid"] != "0000000000000003" ||
		got[0]["created"] != "2026-01-02T03:04:05Z" || got[0]["size"].(float64) <= 0 || got[1]["level"] != 9.0 {
		t.Fatalf("litefs ltx -json printed:\n%s", stdout)
	}

	// An empty replica is an empty array, not null.
	empty := t.TempDir()
	if code, stdout, _ := runCLI(t, "ltx", "-json", "-replica", "file://"+empty); code != 0 || stdout != "[]\n" {
		t.Errorf("empty replica, -json: exit %d, %q", code, stdout)
	}
}

// A missing file:// directory is an error naming it, not an empty replica.
func TestLTXMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo")
	code, stdout, stderr := runCLI(t, "ltx", "-replica", "file://"+dir)
	if want := "litefs ltx: replica directory " + dir + " does not exist: file does not exist: check the replica URL\n"; code != 1 || stdout != "" || stderr != want {
		t.Errorf("missing dir: exit %d, %q, %q; want 1, %q", code, stdout, stderr, want)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("litefs ltx created the directory")
	}
}

// A relative DB path (the FUSE path or the data-dir path) and a relative
// -config are taken from the working directory.
func TestLTXRelativePaths(t *testing.T) {
	dir := fileReplica(t)
	root := t.TempDir()
	cfg := "[fuse]\ndir = \"" + filepath.Join(root, "mnt") + "\"\n[data]\ndir = \"" + filepath.Join(root, "data") +
		"\"\n[[dbs]]\npath = \"" + filepath.Join(root, "mnt", "db") + "\"\n[dbs.replica]\nurl = \"file://" + dir + "\"\n"
	if err := os.WriteFile(filepath.Join(root, "litefs.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	for _, db := range []string{"mnt/db", "./data/db", "mnt/../mnt/db"} {
		code, stdout, stderr := runCLI(t, "ltx", "-config", "litefs.toml", db)
		if code != 0 || strings.Count(stdout, "\n") != 3 {
			t.Errorf("litefs ltx -config litefs.toml %s: exit %d, %q, %q", db, code, stdout, stderr)
		}
	}
	code, _, stderr := runCLI(t, "ltx", "-config", "litefs.toml", "db")
	if want := "litefs ltx: database " + filepath.Join(root, "db") + " is not in litefs.toml"; code != 1 || !strings.HasPrefix(stderr, want) {
		t.Errorf("a path outside the config: exit %d, %q; want %q", code, stderr, want)
	}
}
