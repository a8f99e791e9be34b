package replica_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/litefs-dev/litefs/replica"
	"github.com/superfly/ltx"
)

func writeDB(t *testing.T, pages ...[]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	var b []byte
	for _, p := range pages {
		b = append(b, p...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// headerPage is page 1 with the page-size field set as SQLite stores it.
func headerPage(pageSize int) []byte {
	p := testPage(pageSize, 99)
	v := uint16(pageSize)
	if pageSize == 65536 {
		v = 1
	}
	binary.BigEndian.PutUint16(p[16:], v)
	return p
}

func TestDatabaseChecksum(t *testing.T) {
	for _, pageSize := range []int{512, 4096, 65536} {
		p1, p2 := headerPage(pageSize), testPage(pageSize, 7)
		want := ltx.ChecksumFlag | (ltx.ChecksumPage(1, p1) ^ ltx.ChecksumPage(2, p2))
		got, err := replica.DatabaseChecksum(writeDB(t, p1, p2))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("page size %d: checksum %s, want %s", pageSize, got, want)
		}
	}

	if got, err := replica.DatabaseChecksum(writeDB(t)); err != nil || got != ltx.ChecksumFlag {
		t.Errorf("empty database: %s, %v; want %s", got, err, ltx.ChecksumFlag)
	}
	for name, b := range map[string][]byte{
		"partial page":      headerPage(1024)[:1000],
		"bad page size":     make([]byte, 1024),
		"short header":      []byte("SQLite"),
		"not a page a size": append(headerPage(512), 1, 2, 3),
	} {
		if _, err := replica.DatabaseChecksum(writeDB(t, b)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := replica.DatabaseChecksum(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

// Split between workers, every page is counted exactly once whatever the
// page count.
func TestDatabaseChecksumParallel(t *testing.T) {
	defer replica.SetParallelChecksumBytes(0)()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8)) // eight workers on any machine
	const pageSize = 512
	for _, n := range []int{1, 2, 7, 8, 9, 17, 63, 100} {
		pages := [][]byte{headerPage(pageSize)}
		want := ltx.ChecksumPage(1, pages[0])
		for pgno := 2; pgno <= n; pgno++ {
			pages = append(pages, testPage(pageSize, uint64(pgno)))
			want ^= ltx.ChecksumPage(uint32(pgno), pages[pgno-1])
		}
		got, err := replica.DatabaseChecksum(writeDB(t, pages...))
		if err != nil {
			t.Fatal(err)
		}
		if got != ltx.ChecksumFlag|want {
			t.Errorf("%d pages: checksum %s, want %s", n, got, ltx.ChecksumFlag|want)
		}
	}
}

// The lock page (the one holding byte 1 GiB) is not part of the checksum:
// garbage there changes nothing, a change to the page after it does. A sparse
// file keeps this cheap on disk; it still reads 1 GiB a few times.
func TestDatabaseChecksumSkipsLockPage(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("reads a 1 GiB sparse file three times")
	}
	const pageSize = 65536
	lock := ltx.LockPgno(pageSize)
	path := writeDB(t, headerPage(pageSize))
	write := func(pgno uint32, data []byte) ltx.Checksum {
		t.Helper()
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(data, int64(pgno-1)*pageSize); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		chk, err := replica.DatabaseChecksum(path)
		if err != nil {
			t.Fatal(err)
		}
		return chk
	}
	base := write(lock+1, testPage(pageSize, 3))
	if got := write(lock, testPage(pageSize, 4)); got != base {
		t.Fatalf("lock page contents changed the checksum: %s, was %s", got, base)
	}
	if got := write(lock+1, testPage(pageSize, 5)); got == base {
		t.Fatal("the page after the lock page is not checksummed")
	}
}
