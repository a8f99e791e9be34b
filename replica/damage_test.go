package replica_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/replica/replicatest"
	"github.com/superfly/ltx"
)

// damagedLayout is the replica every damage test starts from; the target is
// 0:5-6, so TXID 4 is the last state before the damage.
var damagedLayout = []string{"9:1-3", "0:4-4", "0:5-6", "0:7-7", "0:8-8"}

const damagedKey = "0/0000000000000005-0000000000000006.ltx"

func TestRestoreDamagedObject(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte // nil deletes the object
	}{
		{"FlipPageByte", func(b []byte) []byte { b[ltx.HeaderSize+40] ^= 0xff; return b }},
		{"FlipMiddle", func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b }},
		{"FlipHeaderTXID", func(b []byte) []byte { b[23] ^= 0x01; return b }},
		{"FlipHeaderTimestamp", func(b []byte) []byte { b[39] ^= 0x01; return b }},
		{"FlipPreApplyChecksum", func(b []byte) []byte { b[47] ^= 0x01; return b }},
		{"FlipPostApplyChecksum", func(b []byte) []byte { b[len(b)-12] ^= 0x01; return b }},
		{"FlipFileChecksum", func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }},
		{"TruncateTrailer", func(b []byte) []byte { return b[:len(b)-ltx.TrailerSize] }},
		{"TruncateLastByte", func(b []byte) []byte { return b[:len(b)-1] }},
		{"TruncateToPages", func(b []byte) []byte { return b[:len(b)-30] }},
		{"TruncateHalf", func(b []byte) []byte { return b[:len(b)/2] }},
		{"TruncateInHeader", func(b []byte) []byte { return b[:50] }},
		{"Empty", func(b []byte) []byte { return b[:0] }},
		{"Appended", func(b []byte) []byte { return append(b, 0) }},
		{"Delete", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := syntheticChain(t, 512)
			c := newFileReplica(t)
			writeChain(t, c, ch, damagedLayout...)
			path := c.Path(0, 5, 6)
			if tc.damage == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, tc.damage(b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.damage == nil {
				// A deleted object is a gap Plan names before downloading.
				restoreFails(t, c, replica.RestoreOptions{}, "0/0000000000000004-0000000000000004.ltx", replica.ErrGap)
			} else {
				restoreFails(t, c, replica.RestoreOptions{}, damagedKey, nil)
				restoreFails(t, c, replica.RestoreOptions{TXID: 6}, damagedKey, nil)
			}
			restoreOK(t, c, ch, replica.RestoreOptions{TXID: 4}, 4)
		})
	}
}

// An object deleted between listing and download is named by the restore.
func TestRestoreObjectVanishes(t *testing.T) {
	ch := syntheticChain(t, 512)
	fc := newFileReplica(t)
	writeChain(t, fc, ch, damagedLayout...)
	c := &vanishingClient{Client: fc, level: 0, minTXID: 5, maxTXID: 6}
	restoreFails(t, c, replica.RestoreOptions{}, damagedKey, replica.ErrNotFound)
}

type vanishingClient struct {
	*file.Client
	level            int
	minTXID, maxTXID ltx.TXID
}

func (c *vanishingClient) LTXFiles(ctx context.Context, level int, seek ltx.TXID) ([]*ltx.FileInfo, error) {
	infos, err := c.Client.LTXFiles(ctx, level, seek)
	if err == nil && level == c.level {
		_ = os.Remove(c.Client.Path(c.level, c.minTXID, c.maxTXID))
	}
	return infos, err
}

func TestRestoreDamagedSnapshot(t *testing.T) {
	ch := syntheticChain(t, 512)
	c := newFileReplica(t)
	writeChain(t, c, ch, damagedLayout...)
	path := c.Path(replica.SnapshotLevel, 1, 3)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[ltx.HeaderSize+100] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	restoreFails(t, c, replica.RestoreOptions{}, "9/0000000000000001-0000000000000003.ltx", nil)
}

// Every single-bit flip anywhere in an object fails the restore by name, or
// (an LZ4 back-reference moved onto identical bytes) restores the exact
// database anyway: never a wrong database, never a panic. Low bits only, so
// a flipped length field asks for megabytes, not gigabytes.
func TestRestoreEveryBitFlip(t *testing.T) {
	ch := syntheticChain(t, 512)
	c := newFileReplica(t)
	writeChain(t, c, ch, damagedLayout...)
	path := c.Path(0, 5, 6)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := ch.Image(6)
	dir := t.TempDir()
	var failed, same int
	for i := range orig {
		if testing.Short() && i%7 != 0 {
			continue
		}
		b := bytes.Clone(orig)
		b[i] ^= 0x01
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "db")
		_, err := replica.Restore(context.Background(), c, replica.RestoreOptions{OutputPath: out, TXID: 6})
		if err != nil {
			failed++
			if !strings.Contains(err.Error(), damagedKey) {
				t.Errorf("flip at %d: err = %q does not name %s", i, err, damagedKey)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("flip at %d: failed restore left %d files", i, len(entries))
			}
			continue
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("flip at byte %d restored a wrong database", i)
		}
		same++
		if err := os.Remove(out); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d bytes: %d flips failed the restore, %d restored the exact database", len(orig), failed, same)
}

func TestRestoreChainBreak(t *testing.T) {
	ch := syntheticChain(t, 512)
	encode := func(minTXID, maxTXID ltx.TXID, edit func(*ltx.Header, *ltx.Checksum)) []byte {
		hdr, post := ch.Header(minTXID, maxTXID), ch.PostApplyChecksum(maxTXID)
		edit(&hdr, &post)
		b, err := replicatest.EncodeLTX(hdr, ch.Pages(minTXID, maxTXID), post)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	put := func(c replica.ReplicaClient, level int, minTXID, maxTXID ltx.TXID, b []byte) {
		if _, err := c.WriteLTXFile(context.Background(), level, minTXID, maxTXID, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	const flip = ltx.Checksum(0x10)

	t.Run("PreApply", func(t *testing.T) {
		c := newFileReplica(t)
		writeChain(t, c, ch, "9:1-3", "0:4-4", "0:6-8")
		put(c, 0, 5, 5, encode(5, 5, func(h *ltx.Header, _ *ltx.Checksum) { h.PreApplyChecksum ^= flip }))
		restoreFails(t, c, replica.RestoreOptions{}, "0/0000000000000005-0000000000000005.ltx", replica.ErrChecksumChain)
		restoreOK(t, c, ch, replica.RestoreOptions{TXID: 4}, 4)
	})
	t.Run("PostApplyMiddle", func(t *testing.T) {
		// The next file's pre-apply checksum gives it away.
		c := newFileReplica(t)
		writeChain(t, c, ch, "9:1-3", "0:4-4", "0:6-8")
		put(c, 0, 5, 5, encode(5, 5, func(_ *ltx.Header, post *ltx.Checksum) { *post ^= flip }))
		restoreFails(t, c, replica.RestoreOptions{}, "0/0000000000000006-0000000000000008.ltx", replica.ErrChecksumChain)
	})
	t.Run("PostApplyLast", func(t *testing.T) {
		c := newFileReplica(t)
		writeChain(t, c, ch, "9:1-3", "0:4-7")
		put(c, 0, 8, 8, encode(8, 8, func(_ *ltx.Header, post *ltx.Checksum) { *post ^= flip }))
		restoreFails(t, c, replica.RestoreOptions{}, "0/0000000000000008-0000000000000008.ltx", replica.ErrChecksumChain)
		restoreOK(t, c, ch, replica.RestoreOptions{TXID: 7}, 7)
	})
	t.Run("WrongPages", func(t *testing.T) {
		// Checksums all consistent, pages not: the final database check.
		c := newFileReplica(t)
		writeChain(t, c, ch, "9:1-3", "0:4-4", "0:5-5")
		pages := ch.Pages(8, 8)
		pages[0].Data = bytes.Clone(pages[0].Data)
		pages[0].Data[7] ^= 1
		b, err := replicatest.EncodeLTX(ch.Header(6, 8), mergePages(ch.Pages(6, 8), pages), ch.PostApplyChecksum(8))
		if err != nil {
			t.Fatal(err)
		}
		put(c, 0, 6, 8, b)
		restoreFails(t, c, replica.RestoreOptions{}, "0/0000000000000006-0000000000000008.ltx", replica.ErrChecksumChain)
	})
	t.Run("MislabelledObject", func(t *testing.T) {
		// A file stored under another file's name (a bad copy by hand).
		c := newFileReplica(t)
		writeChain(t, c, ch, "9:1-3", "0:4-4", "0:5-8")
		b, err := ch.File(6, 8)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c.Path(0, 5, 8), b, 0o644); err != nil {
			t.Fatal(err)
		}
		restoreFails(t, c, replica.RestoreOptions{}, "0/0000000000000005-0000000000000008.ltx", nil)
	})
}

// mergePages replaces pages of a with those of b by page number.
func mergePages(a, b []replicatest.Page) []replicatest.Page {
	out := append([]replicatest.Page(nil), a...)
	for _, p := range b {
		for i := range out {
			if out[i].Pgno == p.Pgno {
				out[i] = p
			}
		}
	}
	return out
}

func TestRestoreErrorsNameObjects(t *testing.T) {
	// A failing backend read is named too, and not retried forever.
	ch := syntheticChain(t, 512)
	fc := newFileReplica(t)
	writeChain(t, fc, ch, damagedLayout...)
	c := &countingClient{ReplicaClient: &failingClient{Client: fc}}
	restoreFails(t, c, replica.RestoreOptions{}, damagedKey, errInjected)
	if n := c.opens.Load(); n > 20 {
		t.Errorf("%d reads for a restore of 5 files", n)
	}
}

var errInjected = errors.New("injected backend failure")

type failingClient struct{ *file.Client }

func (c *failingClient) OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, offset, size int64) (io.ReadCloser, error) {
	if level == 0 && minTXID == 5 {
		return nil, errInjected
	}
	return c.Client.OpenLTXFile(ctx, level, minTXID, maxTXID, offset, size)
}
