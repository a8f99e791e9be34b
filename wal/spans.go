package wal

import "sort"

// span is a half-open byte range [lo, hi).
type span struct{ lo, hi int64 }

// spans records which bytes of the tracker's window have been written since
// the window started, so a frame is judged only once every byte of it is
// known. Kept sorted, disjoint and merged: SQLite appends, so in practice
// this is one span, and every operation is O(1) on that path.
type spans []span

func (c *spans) add(lo, hi int64) {
	s := *c
	if lo >= hi {
		return
	}
	n := len(s)
	if n == 0 || lo > s[n-1].hi {
		*c = append(s, span{lo, hi})
		return
	}
	if lo >= s[n-1].lo {
		s[n-1].hi = max(s[n-1].hi, hi)
		return
	}
	i := sort.Search(n, func(k int) bool { return s[k].hi >= lo })
	j := sort.Search(n, func(k int) bool { return s[k].lo > hi })
	if i == j {
		s = append(s, span{})
		copy(s[i+1:], s[i:])
		s[i] = span{lo, hi}
		*c = s
		return
	}
	s[i] = span{min(lo, s[i].lo), max(hi, s[j-1].hi)}
	*c = append(s[:i+1], s[j:]...)
}

// covers reports whether every byte of [lo, hi) was written.
func (c spans) covers(lo, hi int64) bool {
	i := sort.Search(len(c), func(k int) bool { return c[k].hi >= hi })
	return i < len(c) && c[i].lo <= lo
}

// shift moves the origin n bytes forward, forgetting what lies before it.
func (c *spans) shift(n int64) {
	s := (*c)[:0]
	for _, r := range *c {
		if r.hi <= n {
			continue
		}
		s = append(s, span{max(r.lo-n, 0), r.hi - n})
	}
	*c = s
}

// clip forgets everything at or past n.
func (c *spans) clip(n int64) {
	s := (*c)[:0]
	for _, r := range *c {
		if r.lo >= n {
			break
		}
		s = append(s, span{r.lo, min(r.hi, n)})
	}
	*c = s
}
