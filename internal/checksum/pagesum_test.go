package checksum

import (
	"crypto/rand"
	"testing"

	"github.com/superfly/ltx"
)

// The commit path's page checksum is ltx's, at small and large page numbers.
func TestPageSumMatchesLTX(t *testing.T) {
	s := New(4096)
	page := make([]byte, 4096)
	rand.Read(page)
	for _, pgno := range []uint32{1, 2, 255, 1 << 20} {
		if got, want := s.PageSum(pgno, page), ltx.ChecksumPage(pgno, page); got != want {
			t.Fatalf("page %d: %s, ltx says %s", pgno, got, want)
		}
	}
}
