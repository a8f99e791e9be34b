package checksum

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/superfly/ltx"
)

// testPage is deterministic and differs by seed.
func testPage(pageSize int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	b := make([]byte, pageSize)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

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

// sqlitePage is headerPage with SQLite's magic, as ReadDBHeader wants it.
func sqlitePage(pageSize int) []byte {
	p := headerPage(pageSize)
	copy(p, "SQLite format 3\x00")
	return p
}

func TestDatabaseChecksum(t *testing.T) {
	for _, pageSize := range []int{512, 4096, 65536} {
		p1, p2 := headerPage(pageSize), testPage(pageSize, 7)
		want := ltx.ChecksumFlag | (ltx.ChecksumPage(1, p1) ^ ltx.ChecksumPage(2, p2))
		got, err := DatabaseChecksum(writeDB(t, p1, p2))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("page size %d: checksum %s, want %s", pageSize, got, want)
		}
	}

	if got, err := DatabaseChecksum(writeDB(t)); err != nil || got != ltx.ChecksumFlag {
		t.Errorf("empty database: %s, %v; want %s", got, err, ltx.ChecksumFlag)
	}
	for name, b := range map[string][]byte{
		"partial page":      headerPage(1024)[:1000],
		"bad page size":     make([]byte, 1024),
		"short header":      []byte("SQLite"),
		"not a page a size": append(headerPage(512), 1, 2, 3),
	} {
		if _, err := DatabaseChecksum(writeDB(t, b)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := DatabaseChecksum(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

// Split between workers, every page is counted exactly once whatever the
// page count.
func TestDatabaseChecksumParallel(t *testing.T) {
	defer func(old int64) { parallelChecksumBytes = old }(parallelChecksumBytes)
	parallelChecksumBytes = 0
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8)) // eight workers on any machine
	const pageSize = 512
	for _, n := range []int{1, 2, 7, 8, 9, 17, 63, 100} {
		pages := [][]byte{headerPage(pageSize)}
		want := ltx.ChecksumPage(1, pages[0])
		for pgno := 2; pgno <= n; pgno++ {
			pages = append(pages, testPage(pageSize, uint64(pgno)))
			want ^= ltx.ChecksumPage(uint32(pgno), pages[pgno-1])
		}
		got, err := DatabaseChecksum(writeDB(t, pages...))
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
		chk, err := DatabaseChecksum(path)
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

func TestReadDBHeader(t *testing.T) {
	for _, pageSize := range []int{512, 4096, 65536} {
		got, ok, err := ReadDBHeader(writeDB(t, sqlitePage(pageSize)))
		if err != nil || !ok || got != uint32(pageSize) {
			t.Errorf("page size %d: %d, %v, %v", pageSize, got, ok, err)
		}
	}
	// Missing or empty: nothing to read yet, not an error.
	for name, path := range map[string]string{
		"missing": filepath.Join(t.TempDir(), "missing"),
		"empty":   writeDB(t),
	} {
		if got, ok, err := ReadDBHeader(path); err != nil || ok || got != 0 {
			t.Errorf("%s: %d, %v, %v; want 0, false, nil", name, got, ok, err)
		}
	}
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"short header": {sqlitePage(512)[:99], "read database header of"},
		"no magic":     {headerPage(512), "is not a SQLite database (bad header)"},
	} {
		if _, ok, err := ReadDBHeader(writeDB(t, tc.b)); err == nil || ok || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, %v; want an error saying %q", name, ok, err, tc.want)
		}
	}
	// The field is taken as it is: checking it is the caller's business.
	p := sqlitePage(512)
	binary.BigEndian.PutUint16(p[16:], 1000)
	if got, ok, err := ReadDBHeader(writeDB(t, p)); err != nil || !ok || got != 1000 {
		t.Errorf("page size field 1000: %d, %v, %v", got, ok, err)
	}
}

// SumFile's sums are the file's checksum and its page count, and stay
// usable for the commits that follow.
func TestSumFile(t *testing.T) {
	for _, pageSize := range []int{512, 4096} {
		pages := [][]byte{sqlitePage(pageSize)}
		for pgno := 2; pgno <= 5; pgno++ {
			pages = append(pages, testPage(pageSize, uint64(pgno)))
		}
		path := writeDB(t, pages...)
		s, err := SumFile(path, uint32(pageSize))
		if err != nil {
			t.Fatal(err)
		}
		want, err := DatabaseChecksum(path)
		if err != nil {
			t.Fatal(err)
		}
		if s.Checksum() != want || s.Pages() != 5 || s.PageSize() != uint32(pageSize) {
			t.Fatalf("page size %d: %s, %d pages of %d bytes; want %s, 5 of %d", pageSize, s.Checksum(), s.Pages(), s.PageSize(), want, pageSize)
		}
		s.Truncate(2)
		if want := ltx.ChecksumFlag | (ltx.ChecksumPage(1, pages[0]) ^ ltx.ChecksumPage(2, pages[1])); s.Checksum() != want {
			t.Fatalf("page size %d truncated to 2 pages: %s, not %s", pageSize, s.Checksum(), want)
		}
	}
	if s, err := SumFile(writeDB(t), 512); err != nil || s.Checksum() != ltx.ChecksumFlag || s.Pages() != 0 {
		t.Fatalf("empty file: %v, %v", s, err)
	}
	if _, err := SumFile(writeDB(t, sqlitePage(512), []byte("x")), 512); err == nil || !strings.Contains(err.Error(), "size is not a multiple of the page size 512") {
		t.Fatalf("partial page: %v", err)
	}
	if _, err := SumFile(filepath.Join(t.TempDir(), "missing"), 512); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v, want not-exist", err)
	}
}
