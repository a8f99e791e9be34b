package replica

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/superfly/ltx"
)

// ErrChecksumChain is returned (wrapped) when a file's pre-apply checksum is
// not the post-apply checksum of the state it applies to, or the restored
// database does not have the last file's post-apply checksum.
var ErrChecksumChain = errors.New("checksum chain broken")

// applier writes the pages of a plan's files, in order, into the temp file.
type applier struct {
	f        *os.File
	pageSize uint32
	commit   uint32 // database size in pages after the last file
	pos      ltx.Pos
	// posts maps each applied file's MaxTXID to its post-apply checksum (0
	// when it carries none), so a file overlapping the chain can still be
	// checked when it starts right after one of them.
	posts map[ltx.TXID]ltx.Checksum
}

func newApplier(f *os.File) *applier {
	return &applier{f: f, posts: make(map[ltx.TXID]ltx.Checksum)}
}

// apply decodes one file from r into the database. The decoder checks the
// file checksum only at the end, so a damaged file may already have written
// pages: the caller throws the temp file away on any error.
func (a *applier) apply(info *ltx.FileInfo, r *fileReader) (pages int, err error) {
	defer func() {
		// The ltx decoder trusts lengths inside the file; damaged input must
		// fail the restore, not crash it.
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed LTX file: %v", p)
		}
	}()

	dec := ltx.NewDecoder(r)
	if err := dec.DecodeHeader(); err != nil {
		return 0, fmt.Errorf("decode header: %w", err)
	}
	hdr := dec.Header()
	if err := a.checkHeader(info, hdr); err != nil {
		return 0, err
	}
	if hdr.IsSnapshot() {
		// A full-database file replaces everything, even a different page size.
		if err := a.f.Truncate(0); err != nil {
			return 0, fmt.Errorf("truncate: %w", err)
		}
		a.pageSize = hdr.PageSize
	}

	lock := hdr.LockPgno()
	data := make([]byte, hdr.PageSize)
	var prev uint32
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return pages, fmt.Errorf("decode page after %d: %w", prev, err)
		}
		switch {
		case ph.Pgno <= prev:
			return pages, fmt.Errorf("page %d after page %d: out of order", ph.Pgno, prev)
		case ph.Pgno > hdr.Commit:
			return pages, fmt.Errorf("page %d past the commit size of %d pages", ph.Pgno, hdr.Commit)
		case ph.Pgno == lock:
			return pages, fmt.Errorf("file holds the lock page %d", lock)
		case hdr.IsSnapshot() && ph.Pgno != nextPage(prev, lock):
			return pages, fmt.Errorf("full-database file lacks page %d", nextPage(prev, lock))
		}
		if _, err := a.f.WriteAt(data, int64(ph.Pgno-1)*int64(hdr.PageSize)); err != nil {
			return pages, fmt.Errorf("write page %d: %w", ph.Pgno, err)
		}
		prev = ph.Pgno
		pages++
	}
	if next := nextPage(prev, lock); hdr.IsSnapshot() && next <= hdr.Commit {
		return pages, fmt.Errorf("full-database file of %d pages ends at page %d", hdr.Commit, prev)
	}

	// Decoder.Close slices off the last 8 bytes of what remains, assuming
	// they are there; a truncated file must be an error instead.
	if info.Size > 0 && info.Size-r.n < ltx.TrailerSize {
		return pages, fmt.Errorf("file ends %d bytes after its pages: truncated", info.Size-r.n)
	}
	if err := dec.Close(); err != nil {
		return pages, fmt.Errorf("verify: %w", err)
	}
	trailer := dec.Trailer()

	// Truncating after every file, not only at the end, keeps a database
	// that shrank and later grew from resurrecting stale pages: the pages it
	// grows past without writing must read as zeros.
	if err := a.f.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
		return pages, fmt.Errorf("truncate to %d pages: %w", hdr.Commit, err)
	}
	a.commit = hdr.Commit
	a.pos = ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}
	a.posts[hdr.MaxTXID] = trailer.PostApplyChecksum
	return pages, nil
}

// checkHeader verifies that the file is the one named and continues the chain.
func (a *applier) checkHeader(info *ltx.FileInfo, hdr ltx.Header) error {
	if hdr.MinTXID != info.MinTXID || hdr.MaxTXID != info.MaxTXID {
		return fmt.Errorf("header holds TXIDs %s-%s, not the ones in its name", hdr.MinTXID, hdr.MaxTXID)
	}
	if hdr.MinTXID > a.pos.TXID+1 || hdr.MaxTXID <= a.pos.TXID {
		return fmt.Errorf("TXIDs %s-%s do not continue the restored state at TXID %s", hdr.MinTXID, hdr.MaxTXID, a.pos.TXID)
	}
	if !hdr.IsSnapshot() && hdr.PageSize != a.pageSize {
		return fmt.Errorf("page size %d differs from the database's %d", hdr.PageSize, a.pageSize)
	}
	if hdr.IsSnapshot() || hdr.NoChecksum() {
		return nil
	}
	// A file starting inside one already applied (overlap across levels)
	// has a pre-apply state we never saw; the final database checksum still
	// covers it.
	want, ok := a.posts[hdr.MinTXID-1]
	if ok && want != 0 && hdr.PreApplyChecksum != want {
		return fmt.Errorf("%w: pre-apply checksum %s differs from the post-apply checksum %s of TXID %s",
			ErrChecksumChain, hdr.PreApplyChecksum, want, hdr.MinTXID-1)
	}
	return nil
}

// nextPage is the page a full-database file holds after prev.
func nextPage(prev, lock uint32) uint32 {
	if prev+1 == lock {
		return prev + 2
	}
	return prev + 1
}
