package checksum

import (
	"math/rand/v2"
	"testing"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/wal"
)

func TestPageSums(t *testing.T) {
	const pageSize = 512
	h := HasherFor(pageSize)
	lock := ltx.LockPgno(pageSize)
	r := rand.NewChaCha8([32]byte{9})
	// The model against a sparse image through grow, write, shrink, regrow,
	// across the lock page. Unwritten pages are zeros (TestPageHasher checks
	// PageChecksum of a zero page against ltx.ChecksumPage).
	written := map[uint32][]byte{}
	var commit uint32
	var s Sums
	s.Reset(pageSize)
	resize := func(n uint32) {
		for pgno := range written {
			if pgno > n {
				delete(written, pgno)
			}
		}
		commit = n
		s.Truncate(n)
	}
	write := func(pgno uint32) {
		p := randBytes(r, pageSize)
		written[pgno] = p
		s.Set(pgno, h.PageChecksum(pgno, h.Data(p)))
	}
	check := func(step string) {
		t.Helper()
		want := ltx.ChecksumFlag
		for pgno := uint32(1); pgno <= commit; pgno++ {
			switch p, ok := written[pgno]; {
			case pgno == lock:
			case ok:
				want ^= ltx.ChecksumPage(pgno, p)
			default:
				want ^= h.PageChecksum(pgno, 0)
			}
		}
		if got := s.Checksum(); got != ltx.ChecksumFlag|want {
			t.Fatalf("%s: Sums %s, image %s", step, got, ltx.ChecksumFlag|want)
		}
	}
	check("empty")
	resize(8)
	write(1)
	write(5)
	check("grown")
	resize(3)
	check("shrunk")
	resize(lock + 3)
	write(lock + 2)
	write(2)
	check("regrown past the lock page")
	resize(lock - 1)
	check("shrunk below the lock page")
	s.Reset(pageSize)
	commit, written = 0, map[uint32][]byte{}
	check("reset")
}

// Random grows, shrinks and writes against a dense model.
func TestPageSumsRandom(t *testing.T) {
	const pageSize = 4096
	h := HasherFor(pageSize)
	r := rand.New(rand.NewPCG(1, 2))
	var s Sums
	s.Reset(pageSize)
	var img []ltx.Checksum // by pgno-1: the page's checksum
	for step := range 2000 {
		switch op := r.IntN(10); {
		case op == 0:
			n := uint32(r.IntN(5000))
			for uint32(len(img)) < n {
				img = append(img, h.PageChecksum(uint32(len(img)+1), 0))
			}
			img = img[:n]
			s.Truncate(n)
		case len(img) > 0:
			pgno := uint32(r.IntN(len(img))) + 1
			sum := ltx.ChecksumFlag | ltx.Checksum(r.Uint64())
			img[pgno-1] = sum
			s.Set(pgno, sum)
		}
		want := ltx.ChecksumFlag
		for _, sum := range img {
			want ^= sum
		}
		if got := s.Checksum(); got != ltx.ChecksumFlag|want {
			t.Fatalf("step %d: %s, want %s", step, got, ltx.ChecksumFlag|want)
		}
	}
}

// denseModel is the rolling checksum the obvious way, as the root package
// kept it before Sums: one sum per page (0 for the lock page), pages grown
// past counted as zero pages, the checksum recomputed from every page.
type denseModel struct {
	pageSize uint32
	sums     []ltx.Checksum
	zero     map[uint32]ltx.Checksum
}

func (m *denseModel) zeroSum(pgno uint32) ltx.Checksum {
	if pgno == ltx.LockPgno(m.pageSize) {
		return 0
	}
	sum, ok := m.zero[pgno]
	if !ok {
		sum = ltx.ChecksumPage(pgno, make([]byte, m.pageSize))
		m.zero[pgno] = sum
	}
	return sum
}

func (m *denseModel) set(pgno uint32, sum ltx.Checksum) {
	if pgno == ltx.LockPgno(m.pageSize) {
		return
	}
	m.truncate(max(pgno, uint32(len(m.sums))))
	m.sums[pgno-1] = sum
}

func (m *denseModel) truncate(commit uint32) {
	for uint32(len(m.sums)) < commit {
		m.sums = append(m.sums, m.zeroSum(uint32(len(m.sums)+1)))
	}
	m.sums = m.sums[:commit]
}

func (m *denseModel) checksum() ltx.Checksum {
	var x ltx.Checksum
	for _, sum := range m.sums {
		x ^= sum &^ ltx.ChecksumFlag
	}
	return ltx.ChecksumFlag | x
}

func (m *denseModel) clone() *denseModel {
	c := *m
	c.sums = append([]ltx.Checksum(nil), m.sums...)
	return &c
}

// Set, Truncate, Apply and Undo as the root package uses them, against the
// dense model: growth by Set as well as Truncate, the lock page ignored,
// and Undo restoring the state whole (later steps still agree), for valid
// page sizes and for sizes no valid header has (no fast path there).
func TestSumsRootSemantics(t *testing.T) {
	for _, pageSize := range []uint32{512, 4096, 1000, 3000} {
		r := rand.New(rand.NewPCG(uint64(pageSize), 5))
		m := &denseModel{pageSize: pageSize, zero: map[uint32]ltx.Checksum{}}
		s := New(pageSize)
		var u Undo
		page := func(pgno uint32) wal.Page {
			data := make([]byte, pageSize)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			return wal.Page{Pgno: pgno, Data: data}
		}
		for step := range 600 {
			op := r.IntN(6)
			switch op {
			case 0:
				n := uint32(r.IntN(300))
				m.truncate(n)
				s.Truncate(n)
			case 1:
				pgno := uint32(r.IntN(300)) + 1
				p := page(pgno)
				sum := s.PageSum(pgno, p.Data)
				m.set(pgno, sum)
				s.Set(pgno, sum)
			default: // a transaction, kept or undone
				commit := uint32(r.IntN(300)) + 1
				var pages []wal.Page
				for pgno := uint32(1); pgno <= commit; pgno += uint32(r.IntN(40)) + 1 {
					pages = append(pages, page(pgno))
				}
				before := m.clone()
				for _, p := range pages {
					m.set(p.Pgno, ltx.ChecksumPage(p.Pgno, p.Data))
				}
				m.truncate(commit)
				s.Apply(pages, commit, &u)
				if got, want := s.Checksum(), m.checksum(); got != want {
					t.Fatalf("page size %d step %d: applied %s, model %s", pageSize, step, got, want)
				}
				if op == 2 {
					s.Undo(&u)
					m = before
				}
			}
			if got, want := s.Checksum(), m.checksum(); got != want {
				t.Fatalf("page size %d step %d (op %d): %s, model %s", pageSize, step, op, got, want)
			}
			if s.Pages() != uint32(len(m.sums)) {
				t.Fatalf("page size %d step %d (op %d): %d pages, model %d", pageSize, step, op, s.Pages(), len(m.sums))
			}
		}
		if s.PageSize() != pageSize {
			t.Fatalf("PageSize %d, want %d", s.PageSize(), pageSize)
		}
	}
}

// The lock page of 64 KiB pages is page 16385: Set ignores it (the
// database does not even grow to it), growth and shrinking across it skip
// it, and Undo of a transaction that shrank past it brings the pages back.
func TestSumsLockPage(t *testing.T) {
	const pageSize = 65536
	lock := ltx.LockPgno(pageSize)
	m := &denseModel{pageSize: pageSize, zero: map[uint32]ltx.Checksum{}}
	h := HasherFor(pageSize)
	zero := h.Data(make([]byte, pageSize))
	for pgno := uint32(1); pgno <= lock+10; pgno++ { // ltx.ChecksumPage of 1 GiB is slow
		m.zero[pgno] = h.PageChecksum(pgno, zero)
	}
	s := New(pageSize)
	check := func(step string) {
		t.Helper()
		if got, want := s.Checksum(), m.checksum(); got != want {
			t.Fatalf("%s: %s, model %s", step, got, want)
		}
		if s.Pages() != uint32(len(m.sums)) {
			t.Fatalf("%s: %d pages, model %d", step, s.Pages(), len(m.sums))
		}
	}
	sum := func(pgno uint32) ltx.Checksum { return ltx.ChecksumFlag | ltx.Checksum(pgno)*0x9e3779b97f4a7c15 }
	s.Set(3, sum(3))
	m.set(3, sum(3))
	s.Set(lock, sum(lock))
	m.set(lock, sum(lock))
	check("the lock page set past the end")
	if s.Pages() != 3 {
		t.Fatalf("setting the lock page grew the database to %d pages", s.Pages())
	}
	s.Set(lock+2, sum(lock+2))
	m.set(lock+2, sum(lock+2))
	check("grown past the lock page by Set")
	var u Undo
	s.Apply([]wal.Page{{Pgno: 2, Data: make([]byte, pageSize)}}, lock-1, &u)
	before := m.clone()
	m.set(2, ltx.ChecksumPage(2, make([]byte, pageSize)))
	m.truncate(lock - 1)
	check("shrunk below the lock page by Apply")
	s.Undo(&u)
	m = before
	check("undone")
	s.Truncate(lock + 5)
	m.truncate(lock + 5)
	check("grown by Truncate")
}

// PageSum is ltx.ChecksumPage for pages of the page size and for any other
// length.
func TestPageSum(t *testing.T) {
	r := rand.NewChaCha8([32]byte{10})
	for _, pageSize := range []uint32{512, 4096, 65536, 1000} {
		s := New(pageSize)
		for _, n := range []int{int(pageSize), 0, 100, int(pageSize) + 32} {
			data := randBytes(r, n)
			for _, pgno := range []uint32{1, 2, 255, 1 << 20} {
				if got, want := s.PageSum(pgno, data), ltx.ChecksumPage(pgno, data); got != want {
					t.Fatalf("page size %d, %d bytes, page %d: %s, ltx says %s", pageSize, n, pgno, got, want)
				}
			}
		}
	}
}

// The zero value is an empty database without a page size.
func TestSumsZero(t *testing.T) {
	var s Sums
	if s.Checksum() != ltx.ChecksumFlag || s.Pages() != 0 || s.PageSize() != 0 {
		t.Fatalf("zero Sums: %s, %d pages of %d bytes", s.Checksum(), s.Pages(), s.PageSize())
	}
	if New(512).Checksum() != ltx.ChecksumFlag {
		t.Fatal("new Sums is not the empty database's checksum")
	}
}

// A transaction may write a page and drop it in the same Apply (a page past
// its commit size): Undo still brings back what the page held before.
func TestSumsUndoPageWrittenThenTruncated(t *testing.T) {
	const pageSize = 512
	s := New(pageSize)
	for pgno := uint32(1); pgno <= 20; pgno++ {
		s.Set(pgno, ltx.ChecksumFlag|ltx.Checksum(pgno))
	}
	want := s.Checksum()
	var u Undo
	s.Apply([]wal.Page{{Pgno: 3, Data: make([]byte, pageSize)}, {Pgno: 10, Data: make([]byte, pageSize)}}, 5, &u)
	s.Undo(&u)
	if got := s.Checksum(); got != want || s.Pages() != 20 {
		t.Fatalf("undone: %s with %d pages, want %s with 20", got, s.Pages(), want)
	}
	// What Undo restored is what later changes start from.
	s.Truncate(9)
	m := New(pageSize)
	for pgno := uint32(1); pgno <= 9; pgno++ {
		m.Set(pgno, ltx.ChecksumFlag|ltx.Checksum(pgno))
	}
	if s.Checksum() != m.Checksum() {
		t.Fatalf("after undo and shrink: %s, want %s", s.Checksum(), m.Checksum())
	}
}
