package staging

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/vfs"
	"github.com/litefs-dev/litefs/internal/vfs/errorfs"
	"github.com/litefs-dev/litefs/wal"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// txn is transaction txid (> 1: TXID 1 is a snapshot in LTX): one page in
// a 3-page database.
func txn(txid ltx.TXID) (ltx.Header, ltx.Checksum, []wal.Page) {
	hdr := ltx.Header{Version: ltx.Version, PageSize: 1024, Commit: 3, MinTXID: txid, MaxTXID: txid,
		Timestamp: int64(txid), PreApplyChecksum: ltx.ChecksumFlag | ltx.Checksum(txid),
		WALOffset: 32 + int64(txid-1)*1048, WALSize: 1048, WALSalt1: 1, WALSalt2: 2}
	return hdr, ltx.ChecksumFlag | ltx.Checksum(txid+1), []wal.Page{{Pgno: uint32(txid%3) + 1, Data: page(byte(txid))}}
}

func appendTxn(t *testing.T, l *Log, txid ltx.TXID) Pos {
	t.Helper()
	p, err := l.Append(txn(txid))
	if err != nil {
		t.Fatalf("append %d: %v", txid, err)
	}
	return p
}

func open(t *testing.T, fsys vfs.FS, dir string) (*Log, Pos) {
	t.Helper()
	l, p, err := Open(fsys, dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, p
}

// A disk that fills up mid-record leaves half a record in the log: the
// append fails, the half record is cut at once, and the next append and a
// restart see whole records only.
func TestAppendENOSPCMidRecord(t *testing.T) {
	dir := t.TempDir()
	rule := &errorfs.Rule{Kind: errorfs.OpWrite, Suffix: "/log", Err: errorfs.ENOSPC, Times: 1}
	l, _ := open(t, errorfs.Wrap(vfs.Default, rule), dir)
	if _, err := l.Append(txn(11)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v, want ENOSPC", err)
	}
	if rule.Failed() != 1 {
		t.Fatalf("the injector failed %d writes", rule.Failed())
	}
	if fi, err := os.Stat(filepath.Join(dir, "log")); err != nil || fi.Size() != 0 {
		t.Fatalf("log after a failed append: %v, %d bytes (want the half record cut)", err, fi.Size())
	}
	want := appendTxn(t, l, 11)
	appendTxn(t, l, 12) // pending: written by Close
	want2 := appendTxn(t, l, 13)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, got := open(t, vfs.Default, dir)
	if got != want2 || want.TXID != 11 {
		t.Fatalf("reopened at %+v, want %+v", got, want2)
	}
}

// A crash mid-append leaves a torn tail; Open cuts it and keeps the rest.
func TestOpenCutsTornTail(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, vfs.Default, dir)
	want := appendTxn(t, l, 11)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "log")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	torn := appendLogRecord(nil, func() ltx.Header { h, _, _ := txn(12); return h }(), 0, nil)
	if err := os.WriteFile(path, append(good, torn[:len(torn)-3]...), 0o600); err != nil {
		t.Fatal(err)
	}
	_, got := open(t, vfs.Default, dir)
	if got != want {
		t.Fatalf("reopened at %+v, want %+v", got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != int64(len(good)) {
		t.Fatalf("log after repair: %v, %d bytes, want %d", err, fi.Size(), len(good))
	}
}

// A failed fsync is reported, and the records stay to be synced again.
func TestSyncFails(t *testing.T) {
	dir := t.TempDir()
	rule := &errorfs.Rule{Kind: errorfs.OpSync, Suffix: "/log", Err: syscall.EIO, Times: 1}
	l, _ := open(t, errorfs.Wrap(vfs.Default, rule), dir)
	appendTxn(t, l, 11)
	appendTxn(t, l, 12)
	if err := l.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync with a failing fsync: %v, want EIO", err)
	}
	if err := l.Sync(); err != nil {
		t.Fatalf("second sync: %v", err)
	}
	if rule.Failed() != 1 {
		t.Fatalf("the injector failed %d fsyncs, want 1 (the second sync must fsync again)", rule.Failed())
	}
}

// A rename that fails leaves the log as it was; the next freeze succeeds
// and writes the batch's last position before the sealed log goes.
func TestFreezeRenameFails(t *testing.T) {
	dir := t.TempDir()
	rule := &errorfs.Rule{Kind: errorfs.OpRename, Suffix: "/log", Err: syscall.EIO, Times: 1}
	l, _ := open(t, errorfs.Wrap(vfs.Default, rule), dir)
	appendTxn(t, l, 11)
	want := appendTxn(t, l, 12)
	if _, err := l.Freeze(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("freeze with a failing rename: %v", err)
	}
	if ff, _ := l.Frozen(); len(ff) != 0 {
		t.Fatalf("frozen after a failed seal: %+v", ff)
	}
	got, err := l.Freeze()
	if err != nil || got != want {
		t.Fatalf("freeze: %+v, %v, want %+v", got, err, want)
	}
	checkFrozen(t, l, [][2]ltx.TXID{{11, 12}}, want.Checksum)
	if p, err := l.ReadPos(); err != nil || p != want {
		t.Fatalf("pos file %+v, %v, want %+v", p, err, want)
	}
	if l.Bytes() == 0 {
		t.Fatal("Bytes counts no frozen object")
	}
}

// A full disk while the frozen object is written leaves the sealed log;
// the next freeze finishes it first, and so does a restart.
func TestFreezeObjectENOSPC(t *testing.T) {
	for _, restart := range []bool{false, true} {
		dir := t.TempDir()
		rule := &errorfs.Rule{Kind: errorfs.OpWrite, Suffix: ".ltx.tmp", Err: errorfs.ENOSPC, Times: 1}
		l, _ := open(t, errorfs.Wrap(vfs.Default, rule), dir)
		appendTxn(t, l, 11)
		if _, err := l.Freeze(); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("freeze on a full disk: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "sealed")); err != nil {
			t.Fatalf("sealed log gone after a failed freeze: %v", err)
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, "frozen")); len(ents) != 0 {
			t.Fatalf("a failed freeze left %s", ents[0].Name())
		}
		last := appendTxn(t, l, 12)
		if restart {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			var p Pos
			l, p = open(t, vfs.Default, dir)
			if p != last {
				t.Fatalf("reopened at %+v, want %+v", p, last)
			}
			checkFrozen(t, l, [][2]ltx.TXID{{11, 11}}, ltx.ChecksumFlag|12)
		}
		if got, err := l.Freeze(); err != nil || got != last {
			t.Fatalf("freeze after space returned: %+v, %v", got, err)
		}
		checkFrozen(t, l, [][2]ltx.TXID{{11, 11}, {12, 12}}, last.Checksum)
	}
}

// checkFrozen wants exactly these ranges, at level 0, the last one ending
// with post.
func checkFrozen(t *testing.T, l *Log, want [][2]ltx.TXID, post ltx.Checksum) {
	t.Helper()
	ff, err := l.Frozen()
	if err != nil {
		t.Fatal(err)
	}
	if len(ff) != len(want) {
		t.Fatalf("frozen %+v, want ranges %v", ff, want)
	}
	for i, f := range ff {
		if f.Level != 0 || f.Min != want[i][0] || f.Max != want[i][1] {
			t.Fatalf("frozen %+v, want ranges %v", ff, want)
		}
	}
	if got, err := l.PostApply(ff[len(ff)-1]); err != nil || got != post {
		t.Fatalf("post-apply %s, %v, want %s", got, err, post)
	}
}

// WritePos never moves the file back, and a durable write of the same
// position is not skipped after a routine one.
func TestWritePosMonotonic(t *testing.T) {
	dir := t.TempDir()
	var syncs int
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpSync && filepath.Base(op.Path) == "pos.tmp" {
			syncs++
		}
		return nil
	})
	l, _ := open(t, errorfs.Wrap(vfs.Default, inj), dir)
	for _, w := range []struct {
		txid    ltx.TXID
		durable bool
	}{{5, false}, {4, true}, {5, true}, {5, true}, {5, false}} {
		if err := l.WritePos(Pos{TXID: w.txid}, w.durable); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := l.ReadPos(); err != nil || p.TXID != 5 {
		t.Fatalf("pos %+v, %v", p, err)
	}
	if syncs != 1 {
		t.Fatalf("%d durable pos writes, want 1", syncs)
	}
}
