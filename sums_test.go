package litefs

import (
	"crypto/rand"
	"testing"

	"github.com/superfly/ltx"
)

func TestPageSumMatchesLTX(t *testing.T) {
	s := newPageSums(4096)
	page := make([]byte, 4096)
	rand.Read(page)
	for _, pgno := range []uint32{1, 2, 255, 1 << 20} {
		if got, want := s.pageSum(pgno, page), ltx.ChecksumPage(pgno, page); got != want {
			t.Fatalf("page %d: %s, ltx says %s", pgno, got, want)
		}
	}
}
