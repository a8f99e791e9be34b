package file_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/replica/replicatest"
)

func TestConformance(t *testing.T) {
	replicatest.Run(t, func(t *testing.T) replica.ReplicaClient {
		return file.NewClient(filepath.Join(t.TempDir(), "replica"))
	})
}

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	c := file.NewClient(dir)
	ts := time.Date(2024, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	b := replicatest.NewFile(t, 0x1a, 0x2b, ts)
	if _, err := c.WriteLTXFile(context.Background(), replica.SnapshotLevel, 0x1a, 0x2b, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	// Litestream 0.5 reads exactly this path, and selects -timestamp by mtime.
	path := filepath.Join(dir, "ltx", "9", "000000000000001a-000000000000002b.ltx")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(ts) {
		t.Errorf("mtime = %s, want %s", fi.ModTime(), ts)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("stored bytes differ (err %v)", err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("level dir holds %d entries, want only the object (temp file left behind?)", len(entries))
	}
}

func TestListIgnoresOtherNames(t *testing.T) {
	dir := t.TempDir()
	c := file.NewClient(dir)
	ctx := context.Background()
	b := replicatest.NewFile(t, 1, 2, time.UnixMilli(1e12))
	if _, err := c.WriteLTXFile(ctx, 0, 1, 2, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	level := c.LevelDir(0)
	for _, name := range []string{
		".0000000000000003-0000000000000003.ltx.tmp-123", // a crashed write's temp file
		"0000000000000003-0000000000000003.ltx.tmp",
		"0000000000000003-0000000000000003.LTX",
		"000000000000000A-000000000000000A.ltx", // upper case is not ours
		"0000000000000005-0000000000000004.ltx", // range backwards
		"0000000000000000-0000000000000004.ltx", // TXID 0 does not exist
		"notes.txt",
	} {
		if err := os.WriteFile(filepath.Join(level, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(level, "0000000000000007-0000000000000007.ltx"), 0o755); err != nil {
		t.Fatal(err)
	}
	infos, err := c.LTXFiles(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].MinTXID != 1 || infos[0].MaxTXID != 2 {
		t.Fatalf("listed %v, want only 1-2", infos)
	}
}

// A damaged object must not break listings: a restore to a point before it
// still needs the others.
func TestListDamagedFile(t *testing.T) {
	c := file.NewClient(t.TempDir())
	ctx := context.Background()
	b := replicatest.NewFile(t, 1, 1, time.UnixMilli(1e12))
	if _, err := c.WriteLTXFile(ctx, 0, 1, 1, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Path(0, 2, 2), []byte("LTX1 short"), 0o644); err != nil {
		t.Fatal(err)
	}
	infos, err := c.LTXFiles(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[1].MinTXID != 2 || infos[1].Size != 10 || infos[1].PostApplyChecksum != 0 {
		t.Fatalf("listed %+v", infos)
	}
}

func TestWriteRejectsMislabelledFile(t *testing.T) {
	c := file.NewClient(t.TempDir())
	ctx := context.Background()
	b := replicatest.NewFile(t, 1, 2, time.UnixMilli(1e12))
	if _, err := c.WriteLTXFile(ctx, 0, 1, 3, bytes.NewReader(b)); err == nil {
		t.Fatal("wrote a 1-2 file under the name 1-3")
	}
	if _, err := c.WriteLTXFile(ctx, 0, 1, 2, bytes.NewReader([]byte("not an ltx file"))); err == nil {
		t.Fatal("wrote garbage")
	}
	if _, err := c.WriteLTXFile(ctx, 10, 1, 2, bytes.NewReader(b)); err == nil {
		t.Fatal("wrote level 10")
	}
	if _, err := c.OpenLTXFile(ctx, 0, 1, 3, 0, 0); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	infos, err := c.LTXFiles(ctx, 0, 0)
	if err != nil || len(infos) != 0 {
		t.Fatalf("listed %v, %v", infos, err)
	}
}

// Racing writers of the same name: exactly one set of bytes wins and every
// loser sees ErrConflict, never a replaced object.
func TestConcurrentCreate(t *testing.T) {
	c := file.NewClient(t.TempDir())
	ctx := context.Background()
	const n = 8
	errs := make(chan error, n)
	files := make([][]byte, n)
	for i := range files {
		files[i] = replicatest.NewFile(t, 1, 1, time.UnixMilli(1e12+int64(i)))
	}
	for i := range n {
		go func() {
			_, err := c.WriteLTXFile(ctx, 0, 1, 1, bytes.NewReader(files[i]))
			errs <- err
		}()
	}
	var ok int
	for range n {
		if err := <-errs; err == nil {
			ok++
		} else if !errors.Is(err, replica.ErrConflict) {
			t.Fatalf("err = %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d writers succeeded, want 1", ok)
	}
	got, err := os.ReadFile(c.Path(0, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	var match int
	for _, b := range files {
		if bytes.Equal(got, b) {
			match++
		}
	}
	if match != 1 {
		t.Fatal("stored object is none of the written files")
	}
}

// CheckDir tells a missing directory (named, fs.ErrNotExist) from an empty
// replica; listing a missing directory stays an empty result, and the first
// write still creates it.
func TestCheckDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "replica")
	c := file.NewClient(dir)
	err := c.CheckDir()
	if !errors.Is(err, fs.ErrNotExist) || err.Error() != "replica directory "+dir+" does not exist: file does not exist" {
		t.Fatalf("missing directory: err = %v, want fs.ErrNotExist naming %s", err, dir)
	}
	if infos, err := c.LTXFiles(context.Background(), 0, 0); err != nil || len(infos) != 0 {
		t.Fatalf("listing a missing directory: %v, %v; want empty", infos, err)
	}
	b := replicatest.NewFile(t, 1, 1, time.Now())
	if _, err := c.WriteLTXFile(context.Background(), 0, 1, 1, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckDir(); err != nil {
		t.Fatalf("after a write: %v", err)
	}

	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := file.NewClient(notDir).CheckDir(); err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), notDir+" is not a directory") {
		t.Fatalf("a file as the directory: err = %v", err)
	}
}
