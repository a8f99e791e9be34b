package replicatest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/superfly/ltx"
)

// Page is one database page of an LTX file.
type Page struct {
	Pgno uint32
	Data []byte
}

// EncodeLTX encodes a file with ltx.Encoder, so it is exactly what the
// uploader would write. Pages must ascend; a MinTXID-1 file must hold every
// page 1..Commit but the lock page. A zero hdr.Version means ltx.Version.
func EncodeLTX(hdr ltx.Header, pages []Page, postApply ltx.Checksum) ([]byte, error) {
	if hdr.Version == 0 {
		hdr.Version = ltx.Version
	}
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		return nil, err
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		return nil, fmt.Errorf("encode header: %w", err)
	}
	for _, p := range pages {
		if err := enc.EncodePage(ltx.PageHeader{Pgno: p.Pgno}, p.Data); err != nil {
			return nil, fmt.Errorf("encode page %d: %w", p.Pgno, err)
		}
	}
	enc.SetPostApplyChecksum(postApply)
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("close encoder: %w", err)
	}
	return buf.Bytes(), nil
}

// NewFile returns a small valid LTX file (one 512-byte page) for backend
// tests. Its bytes depend on the TXIDs and ts, so files differing in any of
// them differ; its checksums are well-formed but form no real chain.
func NewFile(tb testing.TB, minTXID, maxTXID ltx.TXID, ts time.Time) []byte {
	tb.Helper()
	b, err := newFile(minTXID, maxTXID, ts)
	if err != nil {
		tb.Fatalf("encode %s-%s: %v", minTXID, maxTXID, err)
	}
	return b
}

func newFile(minTXID, maxTXID ltx.TXID, ts time.Time) ([]byte, error) {
	const pageSize = 512
	data := make([]byte, pageSize)
	binary.BigEndian.PutUint64(data[0:], uint64(minTXID))
	binary.BigEndian.PutUint64(data[8:], uint64(maxTXID))
	binary.BigEndian.PutUint64(data[16:], uint64(ts.UnixMilli()))
	hdr := ltx.Header{
		PageSize:  pageSize,
		Commit:    1,
		MinTXID:   minTXID,
		MaxTXID:   maxTXID,
		Timestamp: ts.UnixMilli(),
	}
	post := ltx.ChecksumPage(1, data)
	if minTXID > 1 {
		hdr.PreApplyChecksum = ltx.ChecksumFlag | ltx.Checksum(minTXID)*0x9e3779b97f4a7c15
		post = ltx.ChecksumFlag | ltx.Checksum(maxTXID)*0x9e3779b97f4a7c15
	}
	return EncodeLTX(hdr, []Page{{Pgno: 1, Data: data}}, post)
}

// Chain is a database history, one transaction per TXID, from which
// consistent LTX files of any TXID range can be cut: pre-apply checksum =
// the state at MinTXID-1, post-apply = the state at MaxTXID. Pages a database
// grows past without writing read as zeros, as in litefs's rolling checksum.
type Chain struct {
	PageSize uint32
	// NoChecksum cuts files the way Litestream writes them: flag
	// HeaderFlagNoChecksum and no pre/post-apply checksums.
	NoChecksum bool

	txs []chainTx // index TXID-1
	cur [][]byte  // image after the last transaction
}

type chainTx struct {
	commit   uint32
	pages    map[uint32][]byte
	checksum ltx.Checksum
	ts       time.Time
}

// NewChain returns an empty history of a database with the given page size.
func NewChain(pageSize uint32) *Chain {
	return &Chain{PageSize: pageSize}
}

// TXID is the last transaction's ID (0 when empty).
func (c *Chain) TXID() ltx.TXID { return ltx.TXID(len(c.txs)) }

// Commit records one transaction that writes pages and leaves the database
// commit pages long, and returns its TXID.
func (c *Chain) Commit(ts time.Time, commit uint32, pages map[uint32][]byte) (ltx.TXID, error) {
	lock := ltx.LockPgno(c.PageSize)
	for pgno, data := range pages {
		switch {
		case pgno == 0 || pgno > commit:
			return 0, fmt.Errorf("page %d outside database of %d pages", pgno, commit)
		case pgno == lock:
			return 0, fmt.Errorf("page %d is the lock page", pgno)
		case uint32(len(data)) != c.PageSize:
			return 0, fmt.Errorf("page %d is %d bytes, not %d", pgno, len(data), c.PageSize)
		}
	}
	c.cur = resize(c.cur, commit, c.PageSize)
	copied := make(map[uint32][]byte, len(pages))
	for pgno, data := range pages {
		copied[pgno] = bytes.Clone(data)
		c.cur[pgno-1] = copied[pgno]
	}
	c.txs = append(c.txs, chainTx{commit: commit, pages: copied, checksum: imageChecksum(c.cur, c.PageSize), ts: ts})
	return c.TXID(), nil
}

// CommitImage records a transaction that turns the database into img: it
// writes every page that changed and every page past the previous end.
func (c *Chain) CommitImage(ts time.Time, img []byte) (ltx.TXID, error) {
	if len(img)%int(c.PageSize) != 0 {
		return 0, fmt.Errorf("image of %d bytes is not a whole number of %d-byte pages", len(img), c.PageSize)
	}
	commit := uint32(len(img) / int(c.PageSize))
	lock := ltx.LockPgno(c.PageSize)
	pages := make(map[uint32][]byte)
	for pgno := uint32(1); pgno <= commit; pgno++ {
		data := img[int64(pgno-1)*int64(c.PageSize):][:c.PageSize]
		if pgno == lock {
			if !bytes.Equal(data, make([]byte, c.PageSize)) {
				return 0, fmt.Errorf("lock page %d is not zero", pgno)
			}
			continue
		}
		if int(pgno) > len(c.cur) || !bytes.Equal(c.cur[pgno-1], data) {
			pages[pgno] = data
		}
	}
	return c.Commit(ts, commit, pages)
}

// Image is the database file after txid.
func (c *Chain) Image(txid ltx.TXID) []byte {
	img := c.image(txid)
	out := make([]byte, 0, len(img)*int(c.PageSize))
	for _, p := range img {
		out = append(out, p...)
	}
	return out
}

func (c *Chain) image(txid ltx.TXID) [][]byte {
	var img [][]byte
	for _, tx := range c.txs[:txid] {
		img = resize(img, tx.commit, c.PageSize)
		for pgno, data := range tx.pages {
			img[pgno-1] = data
		}
	}
	return img
}

// Checksum is the rolling database checksum after txid.
func (c *Chain) Checksum(txid ltx.TXID) ltx.Checksum {
	if txid == 0 {
		return 0
	}
	return c.txs[txid-1].checksum
}

// Time is txid's commit time.
func (c *Chain) Time(txid ltx.TXID) time.Time { return c.txs[txid-1].ts }

// Header is the header of the file holding minTXID..maxTXID.
func (c *Chain) Header(minTXID, maxTXID ltx.TXID) ltx.Header {
	hdr := ltx.Header{
		Version:   ltx.Version,
		PageSize:  c.PageSize,
		Commit:    c.txs[maxTXID-1].commit,
		MinTXID:   minTXID,
		MaxTXID:   maxTXID,
		Timestamp: c.Time(maxTXID).UnixMilli(),
	}
	if c.NoChecksum {
		hdr.Flags = ltx.HeaderFlagNoChecksum
	} else if minTXID > 1 {
		hdr.PreApplyChecksum = c.Checksum(minTXID - 1)
	}
	return hdr
}

// PostApplyChecksum is what the trailer of a file ending at maxTXID holds.
func (c *Chain) PostApplyChecksum(maxTXID ltx.TXID) ltx.Checksum {
	if c.NoChecksum {
		return 0
	}
	return c.Checksum(maxTXID)
}

// Pages are the pages of the file holding minTXID..maxTXID: every page for
// a file starting at TXID 1, else every page written in the range plus any
// page whose content differs between the two ends (a page truncated and
// regrown unwritten inside the range must come back as zeros).
func (c *Chain) Pages(minTXID, maxTXID ltx.TXID) []Page {
	after := c.image(maxTXID)
	lock := ltx.LockPgno(c.PageSize)
	set := make(map[uint32]bool)
	if minTXID == 1 {
		for pgno := uint32(1); pgno <= uint32(len(after)); pgno++ {
			set[pgno] = true
		}
	} else {
		before := resize(c.image(minTXID-1), uint32(len(after)), c.PageSize)
		for pgno := range after {
			if !bytes.Equal(before[pgno], after[pgno]) {
				set[uint32(pgno+1)] = true
			}
		}
		for _, tx := range c.txs[minTXID-1 : maxTXID] {
			for pgno := range tx.pages {
				set[pgno] = true
			}
		}
	}
	var pages []Page
	for _, pgno := range slices.Sorted(maps.Keys(set)) {
		if pgno != lock && pgno <= uint32(len(after)) {
			pages = append(pages, Page{Pgno: pgno, Data: after[pgno-1]})
		}
	}
	return pages
}

// File encodes the LTX file holding minTXID..maxTXID.
func (c *Chain) File(minTXID, maxTXID ltx.TXID) ([]byte, error) {
	if minTXID == 0 || minTXID > maxTXID || maxTXID > c.TXID() {
		return nil, fmt.Errorf("no transactions %s-%s in a chain of %d", minTXID, maxTXID, c.TXID())
	}
	return EncodeLTX(c.Header(minTXID, maxTXID), c.Pages(minTXID, maxTXID), c.PostApplyChecksum(maxTXID))
}

// resize truncates or zero-extends img to commit pages.
func resize(img [][]byte, commit uint32, pageSize uint32) [][]byte {
	if uint32(len(img)) >= commit {
		return img[:commit:commit]
	}
	for uint32(len(img)) < commit {
		img = append(img, make([]byte, pageSize))
	}
	return img
}

func imageChecksum(img [][]byte, pageSize uint32) ltx.Checksum {
	lock := ltx.LockPgno(pageSize)
	h := ltx.NewHasher()
	chk := ltx.ChecksumFlag
	for i, data := range img {
		if pgno := uint32(i + 1); pgno != lock {
			chk ^= ltx.ChecksumPageWithHasher(h, pgno, data)
		}
	}
	return ltx.ChecksumFlag | chk
}
