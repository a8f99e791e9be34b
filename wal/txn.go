package wal

import (
	"cmp"
	"encoding/binary"
	"slices"
)

// Page is one database page of a transaction.
type Page struct {
	Pgno   uint32
	Offset int64  // WAL offset of the frame holding this version (its 24-byte header)
	Data   []byte // owned by the tracker (or Scan); valid only during the callback
}

// Txn is one committed transaction.
type Txn struct {
	Salt1, Salt2 uint32
	PageSize     uint32
	Offset       int64  // WAL offset of the transaction's first frame
	Size         int64  // bytes of its frames, padding copies of the commit frame known at emission included
	Commit       uint32 // database size in pages after the commit
	Pages        []Page // the latest version of every page it wrote with Pgno <= Commit, ascending Pgno
}

// End is the WAL offset just past the transaction's frames.
func (t *Txn) End() int64 { return t.Offset + t.Size }

// Position is where the next transaction starts.
type Position struct {
	Salt1, Salt2 uint32
	PageSize     uint32
	Offset       int64
}

// pageSet turns the frames of one transaction into Txn.Pages, reusing its
// slices from one transaction to the next so a commit allocates nothing once
// warm.
type pageSet struct {
	refs  []pageRef
	pages []Page
}

type pageRef struct {
	pgno uint32
	seq  int // order in the transaction: a later frame of a page wins
	off  int64
	data []byte
}

func (s *pageSet) reset() { s.refs = s.refs[:0] }

func (s *pageSet) add(pgno uint32, off int64, data []byte) {
	s.refs = append(s.refs, pageRef{pgno: pgno, seq: len(s.refs), off: off, data: data})
}

// build returns the latest version of each page with pgno <= commit in
// ascending order; pages past commit were cut by the commit (VACUUM, auto-
// vacuum) and must not reach a replica.
func (s *pageSet) build(commit uint32) []Page {
	refs := s.refs
	if !slices.IsSortedFunc(refs, cmpRef) {
		slices.SortFunc(refs, cmpRef)
	}
	pages := s.pages[:0]
	for i, r := range refs {
		if r.pgno > commit {
			break
		}
		if i+1 < len(refs) && refs[i+1].pgno == r.pgno {
			continue
		}
		pages = append(pages, Page{Pgno: r.pgno, Offset: r.off, Data: r.data})
	}
	s.pages = pages
	return pages
}

// done drops the references to page buffers so that a buffer the tracker has
// since replaced is not kept alive by the reused slices.
func (s *pageSet) done() {
	clear(s.refs)
	clear(s.pages)
	s.refs, s.pages = s.refs[:0], s.pages[:0]
}

func cmpRef(a, b pageRef) int {
	if c := cmp.Compare(a.pgno, b.pgno); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// isPadding reports whether frame (header and page) repeats the commit frame
// (pgno, commit, data): SQLite pads a commit to a sector boundary with such
// copies, and folding them keeps one transaction per commit.
func isPadding(frame []byte, pgno, commit uint32, data []byte) bool {
	return binary.BigEndian.Uint32(frame[0:]) == pgno &&
		binary.BigEndian.Uint32(frame[4:]) == commit &&
		string(frame[FrameHeaderSize:]) == string(data)
}
