package file

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/litefs-dev/litefs/replica"
	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/durable"
)

var _ replica.ReplicaClient = (*Client)(nil)

// Client stores LTX files under a local directory.
type Client struct {
	dir string
}

// NewClient returns a client for the replica rooted at dir. The directory is
// created on the first write, so a fresh replica needs no setup.
func NewClient(dir string) *Client {
	return &Client{dir: dir}
}

// ParseURL checks a file:///absolute/dir replica URL and returns its
// directory, cleaned. It is the one place a file URL is checked.
func ParseURL(raw string) (dir string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("cannot parse %q; write file:///absolute/dir", raw)
	}
	switch {
	case u.Scheme != "file":
		return "", fmt.Errorf("%q is not a file URL; want file:///absolute/dir", raw)
	case u.Host != "":
		return "", fmt.Errorf("%q has a host (%q); write file:///absolute/dir, with three slashes", raw, u.Host)
	case u.Path == "" || !strings.HasPrefix(u.Path, "/"):
		return "", fmt.Errorf("%q has no absolute directory; write file:///absolute/dir", raw)
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%q has a query or fragment; write file:///absolute/dir", raw)
	}
	return filepath.Clean(u.Path), nil
}

// Type names the backend.
func (c *Client) Type() string { return "file" }

// Dir is the replica's root directory.
func (c *Client) Dir() string { return c.dir }

// CheckDir reports whether the replica's directory exists. Readers (restore,
// `litefs ltx`) call it first: to them a missing directory is most likely a
// mistyped path, which LTXFiles alone would list as an empty replica. The
// error names the directory and wraps fs.ErrNotExist when it is missing.
// Writers need not call it: the first write creates the directory.
func (c *Client) CheckDir() error {
	fi, err := os.Stat(c.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("replica directory %s does not exist: %w", c.dir, fs.ErrNotExist)
	case err != nil:
		return fmt.Errorf("replica directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("replica directory %s is not a directory", c.dir)
	}
	return nil
}

// LevelDir is the directory holding a level's files.
func (c *Client) LevelDir(level int) string {
	return filepath.Join(c.dir, "ltx", strconv.Itoa(level))
}

// Path is where a file of the given level and range lives.
func (c *Client) Path(level int, minTXID, maxTXID ltx.TXID) string {
	return filepath.Join(c.LevelDir(level), ltx.FormatFilename(minTXID, maxTXID))
}

func key(level int, minTXID, maxTXID ltx.TXID) string {
	return strconv.Itoa(level) + "/" + ltx.FormatFilename(minTXID, maxTXID)
}

// LTXFiles lists the level's files whose MinTXID >= seek, ascending.
func (c *Client) LTXFiles(ctx context.Context, level int, seek ltx.TXID) ([]*ltx.FileInfo, error) {
	if err := replica.CheckLevel(level); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list level %d: %w", level, err)
	}
	dir := c.LevelDir(level)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("list level %d: %w", level, err)
	}

	var infos []*ltx.FileInfo
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("list level %d: %w", level, err)
		}
		minTXID, maxTXID, err := ltx.ParseFilename(e.Name())
		if err != nil || minTXID == 0 || minTXID > maxTXID || minTXID < seek || !e.Type().IsRegular() {
			continue
		}
		info, err := readInfo(filepath.Join(dir, e.Name()), level, minTXID, maxTXID)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while we listed
		} else if err != nil {
			return nil, fmt.Errorf("list level %d: %w", level, err)
		}
		infos = append(infos, info)
	}
	slices.SortFunc(infos, func(a, b *ltx.FileInfo) int {
		return cmp.Or(cmp.Compare(a.MinTXID, b.MinTXID), cmp.Compare(a.MaxTXID, b.MaxTXID))
	})
	return infos, nil
}

// readInfo reads only the header and trailer. A damaged file is still listed
// (with zero checksums and its mtime) rather than failing the listing: a
// restore to a point before the damage must still work, and one that needs
// the file fails on it by name when it decodes it.
func readInfo(path string, level int, minTXID, maxTXID ltx.TXID) (*ltx.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	info := &ltx.FileInfo{
		Level:     level,
		MinTXID:   minTXID,
		MaxTXID:   maxTXID,
		Size:      fi.Size(),
		CreatedAt: fi.ModTime().UTC(),
	}
	if fi.Size() < ltx.HeaderSize+ltx.TrailerSize {
		return info, nil
	}
	buf := make([]byte, ltx.HeaderSize)
	if _, err := f.ReadAt(buf, 0); err != nil {
		return nil, fmt.Errorf("read header of %s: %w", path, err)
	}
	var hdr ltx.Header
	if err := hdr.UnmarshalBinary(buf); err != nil || hdr.MinTXID != minTXID || hdr.MaxTXID != maxTXID {
		return info, nil
	}
	if _, err := f.ReadAt(buf[:ltx.TrailerSize], fi.Size()-ltx.TrailerSize); err != nil {
		return nil, fmt.Errorf("read trailer of %s: %w", path, err)
	}
	var trailer ltx.Trailer
	if err := trailer.UnmarshalBinary(buf[:ltx.TrailerSize]); err != nil {
		return info, nil
	}
	info.PreApplyChecksum = hdr.PreApplyChecksum
	info.PostApplyChecksum = trailer.PostApplyChecksum
	info.CreatedAt = time.UnixMilli(hdr.Timestamp).UTC()
	return info, nil
}

// OpenLTXFile reads size bytes from offset (size 0: to the end).
func (c *Client) OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, offset, size int64) (io.ReadCloser, error) {
	k := key(level, minTXID, maxTXID)
	if err := replica.CheckRange(level, minTXID, maxTXID); err != nil {
		return nil, fmt.Errorf("open %s: %w", k, err)
	}
	if offset < 0 || size < 0 {
		return nil, fmt.Errorf("open %s: invalid range offset=%d size=%d", k, offset, size)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %s: %w", k, err)
	}
	f, err := os.Open(c.Path(level, minTXID, maxTXID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open %s: %w", k, replica.ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("open %s: %w", k, err)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", k, err)
	}
	var r io.Reader = f
	if size > 0 {
		r = io.LimitReader(f, size)
	}
	return &readCloser{ctx: ctx, r: r, c: f}, nil
}

// readCloser stops reads once ctx is done, so a cancelled restore does not
// keep streaming a large snapshot.
type readCloser struct {
	ctx context.Context
	r   io.Reader
	c   io.Closer
}

func (r *readCloser) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func (r *readCloser) Close() error { return r.c.Close() }

// WriteLTXFile creates the file only if it does not already exist.
func (c *Client) WriteLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, r io.Reader) (*ltx.FileInfo, error) {
	k := key(level, minTXID, maxTXID)
	if err := replica.CheckRange(level, minTXID, maxTXID); err != nil {
		return nil, fmt.Errorf("write %s: %w", k, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("write %s: %w", k, err)
	}
	dir, err := c.mkLevelDir(level)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", k, err)
	}
	info, err := writeFile(ctx, dir, level, minTXID, maxTXID, r)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", k, err)
	}
	return info, nil
}

func writeFile(ctx context.Context, dir string, level int, minTXID, maxTXID ltx.TXID, r io.Reader) (*ltx.FileInfo, error) {
	name := ltx.FormatFilename(minTXID, maxTXID)
	// The leading dot keeps the temp name from matching the LTX pattern, so a
	// crash mid-write never leaves something a listing would return.
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return nil, err
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		_ = os.Remove(tmpName)
	}()

	var ends headTail
	out := durable.NewPacedWriter(tmp)
	n, err := io.Copy(io.MultiWriter(out, &ends), &readCloser{ctx: ctx, r: r, c: io.NopCloser(nil)})
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		return nil, err
	}
	hdr, trailer, err := ends.parse(n, minTXID, maxTXID)
	if err != nil {
		return nil, err
	}
	ts := time.UnixMilli(hdr.Timestamp)
	if err := os.Chtimes(tmp.Name(), ts, ts); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	tmp = nil

	info := &ltx.FileInfo{
		Level:             level,
		MinTXID:           minTXID,
		MaxTXID:           maxTXID,
		PreApplyChecksum:  hdr.PreApplyChecksum,
		PostApplyChecksum: trailer.PostApplyChecksum,
		Size:              n,
		CreatedAt:         ts.UTC(),
	}

	// A hard link fails when the name exists, which makes creation atomic
	// and exclusive without renameat2(RENAME_NOREPLACE).
	final := filepath.Join(dir, name)
	if err := os.Link(tmpName, final); errors.Is(err, fs.ErrExist) {
		same, err := sameContents(final, tmpName)
		if err != nil {
			return nil, err
		} else if !same {
			return nil, replica.ErrConflict
		}
		// A retry whose first attempt succeeded: make sure that attempt's
		// directory entry is durable before we report success again.
	} else if err != nil {
		return nil, err
	}
	if err := durable.SyncDir(dir); err != nil {
		return nil, err
	}
	return info, nil
}

// headTail keeps the first HeaderSize and last TrailerSize bytes written, so
// the header and trailer are known without re-reading the file.
type headTail struct {
	head []byte
	tail [ltx.TrailerSize]byte
	n    int // bytes of tail filled, up to TrailerSize
}

func (h *headTail) Write(p []byte) (int, error) {
	if room := ltx.HeaderSize - len(h.head); room > 0 {
		h.head = append(h.head, p[:min(room, len(p))]...)
	}
	if len(p) >= ltx.TrailerSize {
		copy(h.tail[:], p[len(p)-ltx.TrailerSize:])
		h.n = ltx.TrailerSize
		return len(p), nil
	}
	// Shift the kept tail left to make room for the short write.
	keep := min(h.n, ltx.TrailerSize-len(p))
	copy(h.tail[:keep], h.tail[h.n-keep:h.n])
	copy(h.tail[keep:], p)
	h.n = keep + len(p)
	return len(p), nil
}

func (h *headTail) parse(size int64, minTXID, maxTXID ltx.TXID) (ltx.Header, ltx.Trailer, error) {
	var hdr ltx.Header
	var trailer ltx.Trailer
	if size < ltx.HeaderSize+ltx.TrailerSize {
		return hdr, trailer, fmt.Errorf("not an LTX file: %d bytes", size)
	}
	if err := hdr.UnmarshalBinary(h.head); err != nil {
		return hdr, trailer, fmt.Errorf("not an LTX file: %w", err)
	}
	if err := hdr.Validate(); err != nil {
		return hdr, trailer, fmt.Errorf("invalid LTX header: %w", err)
	}
	if hdr.MinTXID != minTXID || hdr.MaxTXID != maxTXID {
		return hdr, trailer, fmt.Errorf("LTX header holds TXIDs %s-%s, not %s-%s", hdr.MinTXID, hdr.MaxTXID, minTXID, maxTXID)
	}
	if err := trailer.UnmarshalBinary(h.tail[:h.n]); err != nil {
		return hdr, trailer, fmt.Errorf("read LTX trailer: %w", err)
	}
	if err := trailer.Validate(hdr); err != nil {
		return hdr, trailer, fmt.Errorf("invalid LTX trailer: %w", err)
	}
	return hdr, trailer, nil
}

// mkLevelDir creates the level directory and makes each directory it creates
// durable in its parent, so an fsynced object cannot vanish with its directory.
func (c *Client) mkLevelDir(level int) (string, error) {
	dir := c.LevelDir(level)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, d := range missing {
		if err := durable.SyncDir(filepath.Dir(d)); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func sameContents(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	sa, err := fa.Stat()
	if err != nil {
		return false, err
	}
	sb, err := fb.Stat()
	if err != nil {
		return false, err
	}
	if sa.Size() != sb.Size() {
		return false, nil
	}
	bufA, bufB := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, errA := io.ReadFull(fa, bufA)
		nb, errB := io.ReadFull(fb, bufB)
		if !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		if errA == io.EOF || errA == io.ErrUnexpectedEOF {
			return errB == io.EOF || errB == io.ErrUnexpectedEOF, nil
		} else if errA != nil {
			return false, errA
		} else if errB != nil {
			return false, errB
		}
	}
}

// DeleteLTXFiles removes the files; missing ones are not an error.
func (c *Client) DeleteLTXFiles(ctx context.Context, a []*ltx.FileInfo) error {
	dirs := make(map[string]bool)
	for _, info := range a {
		k := key(info.Level, info.MinTXID, info.MaxTXID)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("delete %s: %w", k, err)
		}
		if err := replica.CheckRange(info.Level, info.MinTXID, info.MaxTXID); err != nil {
			return fmt.Errorf("delete %s: %w", k, err)
		}
		err := os.Remove(c.Path(info.Level, info.MinTXID, info.MaxTXID))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", k, err)
		}
		if err == nil {
			dirs[c.LevelDir(info.Level)] = true
		}
	}
	// Retention relies on deletions being durable only loosely (a resurrected
	// old file is harmless), but syncing is cheap and keeps listings honest
	// after a crash.
	for dir := range dirs {
		if err := durable.SyncDir(dir); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
	}
	return nil
}
