package staging

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/vfs"
)

func TestRecordSizeMatchesAppend(t *testing.T) {
	l, _ := open(t, vfs.Default, t.TempDir())
	before := l.Bytes()
	hdr, post, pages := txn(2)
	appendTxn(t, l, 2)
	if got, want := l.Bytes()-before, RecordSize(hdr.PageSize, len(pages)); got != want {
		t.Fatalf("a record of %d page(s) added %d bytes, RecordSize says %d (post %v)", len(pages), got, want, post)
	}
}

// The marker survives a reopen, keeps the earliest gap start, tolerates a
// torn file (still "a snapshot is needed") and goes with ClearOverflow.
func TestOverflowMarker(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, vfs.Default, dir)
	if _, ok, err := l.ReadOverflow(); err != nil || ok {
		t.Fatalf("fresh staging: marker %v, %v", ok, err)
	}
	if err := l.MarkOverflow(Overflow{GapFrom: 10}); err != nil {
		t.Fatal(err)
	}
	if err := l.MarkOverflow(Overflow{GapFrom: 20}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l, _ = open(t, vfs.Default, dir)
	if o, ok, err := l.ReadOverflow(); err != nil || !ok || o.GapFrom != 10 {
		t.Fatalf("after reopen: %+v %v %v, want GapFrom 10", o, ok, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "overflow"), []byte(`{"gapF`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := l.ReadOverflow(); err != nil || !ok {
		t.Fatalf("torn marker: %v %v, want it still to say a snapshot is needed", ok, err)
	}
	if err := l.ClearOverflow(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := l.ReadOverflow(); ok {
		t.Fatal("marker still there after ClearOverflow")
	}
	if err := l.ClearOverflow(); err != nil {
		t.Fatalf("clearing twice: %v", err)
	}
}

// An object Discard dropped while it was being uploaded is removed once
// more by the uploader: Bytes must not go below zero.
func TestRemoveAfterDiscard(t *testing.T) {
	l, _ := open(t, vfs.Default, t.TempDir())
	for txid := 2; txid < 5; txid++ {
		appendTxn(t, l, ltx.TXID(txid))
	}
	if _, err := l.Freeze(); err != nil {
		t.Fatal(err)
	}
	ff, err := l.Frozen()
	if err != nil || len(ff) != 1 {
		t.Fatalf("frozen %v %v", ff, err)
	}
	if err := l.Discard(); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(ff[0]); err != nil {
		t.Fatal(err)
	}
	if n := l.Bytes(); n != 0 {
		t.Fatalf("Bytes = %d after Discard and Remove, want 0", n)
	}
}
