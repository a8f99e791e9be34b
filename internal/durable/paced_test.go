package durable

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestPacedWriterContents: odd-sized writes across several chunks and the
// buffer's edges come out byte for byte.
func TestPacedWriterContents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := make([]byte, 2*PacedChunk+12345)
	for i := range want {
		want[i] = byte(rand.IntN(256))
	}
	w := NewPacedWriter(f)
	for rest := want; len(rest) > 0; {
		n := min(len(rest), 1+rand.IntN(3<<20))
		if m, err := w.Write(rest[:n]); err != nil || m != n {
			t.Fatalf("Write: %d of %d, %v", m, n, err)
		}
		rest = rest[n:]
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.synced == 0 || w.written-w.synced >= PacedChunk {
		t.Errorf("durable up to %d of %d bytes: more than a chunk was left unsynced", w.synced, w.written)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("file differs from what was written (%d vs %d bytes)", len(got), len(want))
	}
}

// TestPacedWriterError: a write the file refuses is reported, at the latest
// by Flush.
func TestPacedWriterError(t *testing.T) {
	f, err := os.Open(filepath.Join(t.TempDir(), "."))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewPacedWriter(f) // a directory: every write fails
	_, werr := w.Write(make([]byte, 3<<20))
	if ferr := w.Flush(); werr == nil && ferr == nil {
		t.Fatal("writing to a directory succeeded")
	}
}

func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	if err := SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("SyncDir of a missing directory succeeded")
	}
}
