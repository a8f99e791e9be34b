package replica_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/replica/replicatest"
)

// fuzzLayout is the replica FuzzRestoreLTX serves: a snapshot and four
// segments of fuzzChain.
var fuzzLayout = []struct {
	level    int
	min, max ltx.TXID
}{{replica.SnapshotLevel, 1, 3}, {0, 4, 4}, {0, 5, 6}, {0, 7, 7}, {0, 8, 8}}

// fuzzChain is syntheticChain's history (the same pages and commit sizes)
// and its files, built once.
var fuzzChain = sync.OnceValues(func() (*replicatest.Chain, [][]byte) {
	ch := replicatest.NewChain(512)
	seed := uint64(0)
	for _, tx := range []struct {
		commit uint32
		pgnos  []uint32
	}{
		{6, []uint32{1, 2, 3, 4, 5, 6}}, {6, []uint32{2, 3}}, {9, []uint32{1, 7, 8, 9}}, {9, []uint32{4}},
		{5, []uint32{1}}, {8, []uint32{6}}, {8, []uint32{2, 8}}, {8, []uint32{1, 5}},
	} {
		pages := map[uint32][]byte{}
		for _, pgno := range tx.pgnos {
			seed++
			pages[pgno] = testPage(512, seed)
		}
		if _, err := ch.Commit(commitTime(ch.TXID()+1), tx.commit, pages); err != nil {
			panic(err)
		}
	}
	var files [][]byte
	for _, l := range fuzzLayout {
		b, err := ch.File(l.min, l.max)
		if err != nil {
			panic(err)
		}
		files = append(files, b)
	}
	return ch, files
})

// FuzzRestoreLTX serves fuzzed LTX bytes from a file replica and restores:
// Restore never panics, and either produces a database whose checksum is
// the one it reports (for a mutated object of a real chain: exactly the
// chain's database, a damaged object can never yield another one) or fails
// with an error naming what it read, leaving neither the database nor its
// temp file behind.
//
// sel < 128 replaces object sel%5 of the chain with data; otherwise data is
// the replica's only object, named after its own header when it has one.
func FuzzRestoreLTX(f *testing.F) {
	_, files := fuzzChain()
	for i, b := range files {
		f.Add(uint8(i), b)
		flipped := bytes.Clone(b)
		flipped[len(flipped)/2] ^= 0x04
		f.Add(uint8(i), flipped)
		f.Add(uint8(i), b[:len(b)-ltx.TrailerSize])
		f.Add(uint8(i), b[:ltx.HeaderSize])
	}
	f.Add(uint8(200), files[0])
	f.Add(uint8(201), replicatest.NewFile(f, 1, 2, commitTime(2)))
	f.Add(uint8(202), []byte{})
	f.Add(uint8(203), []byte("LTX1"))

	f.Fuzz(func(t *testing.T, sel uint8, data []byte) {
		ch, files := fuzzChain()
		dir := t.TempDir()
		c := file.NewClient(filepath.Join(dir, "replica"))
		put := func(level int, min, max ltx.TXID, b []byte) {
			path := c.Path(level, min, max)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		chain := sel < 128
		if chain {
			for i, l := range fuzzLayout {
				b := files[i]
				if i == int(sel)%len(fuzzLayout) {
					b = data
				}
				put(l.level, l.min, l.max, b)
			}
		}
		var hdr ltx.Header
		pageSize := uint32(512)
		if !chain {
			level, min, max := replica.SnapshotLevel, ltx.TXID(1), ltx.TXID(1)
			if hdr.UnmarshalBinary(data) == nil && hdr.MinTXID > 0 && hdr.MinTXID <= hdr.MaxTXID {
				min, max = hdr.MinTXID, hdr.MaxTXID
				if min != 1 {
					level = 0
				}
			}
			put(level, min, max, data)
			pageSize = hdr.PageSize
		}

		outDir := filepath.Join(dir, "out")
		if err := os.Mkdir(outDir, 0o755); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(outDir, "db")
		pos, err := replica.Restore(context.Background(), c, replica.RestoreOptions{OutputPath: out, Parallelism: 2})
		if err != nil {
			if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
				t.Fatalf("failed restore (%v) left %s", err, entries[0].Name())
			}
			if msg := err.Error(); !strings.Contains(msg, ".ltx") && !strings.Contains(msg, "plan restore") {
				t.Fatalf("restore error names no object: %v", err)
			}
			return
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !ltx.IsValidPageSize(pageSize) || len(got)%int(pageSize) != 0 {
			t.Fatalf("restored %d bytes, not whole pages of %d bytes", len(got), pageSize)
		}
		if sum := fuzzChecksum(got, pageSize); sum != pos.PostApplyChecksum {
			t.Fatalf("restored database has checksum %s, the restore reported %s", sum, pos.PostApplyChecksum)
		}
		if !chain {
			return
		}
		if pos.TXID != ch.TXID() || !bytes.Equal(got, ch.Image(pos.TXID)) {
			t.Fatalf("object %d replaced by %d bytes: the restore succeeded with a database (TXID %s, %d bytes) that is not the chain's state at TXID %s: %s",
				int(sel)%len(fuzzLayout), len(data), pos.TXID, len(got), ch.TXID(), fmt.Sprint(pos))
		}
	})
}

// fuzzChecksum is the rolling checksum of a database image (the pages need
// not be SQLite's: no header is read).
func fuzzChecksum(b []byte, pageSize uint32) ltx.Checksum {
	var sum ltx.Checksum
	lock := ltx.LockPgno(pageSize)
	for i := 0; i+int(pageSize) <= len(b); i += int(pageSize) {
		if pgno := uint32(i/int(pageSize)) + 1; pgno != lock {
			sum ^= ltx.ChecksumPage(pgno, b[i:i+int(pageSize)])
		}
	}
	return ltx.ChecksumFlag | sum
}
