package s3

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/replica"
)

// MetadataTimestamp is the user-metadata key holding the LTX header's
// timestamp (RFC3339Nano, UTC), as Litestream 0.5 writes it.
const MetadataTimestamp = "litestream-timestamp"

const (
	detailWorkers   = 16        // concurrent header/trailer reads in LTXFiles
	wholeReadMax    = 256 << 10 // objects up to this size are read whole (one GET)
	detailsCacheMax = 1_000_000 // entries (~100 B each) before the cache starts over
)

func (c *Client) levelPrefix(level int) string {
	return fmt.Sprintf("%s/%04x/", c.cfg.Path, level)
}

// Key returns the object key of an LTX file: <path>/<level %04x>/<min>-<max>.ltx.
func (c *Client) Key(level int, minTXID, maxTXID ltx.TXID) string {
	return c.levelPrefix(level) + ltx.FormatFilename(minTXID, maxTXID)
}

// details is what LTXFiles needs beyond a listing: the header's timestamp
// and the checksums. Objects are never overwritten, so they are cached by
// key, size and ETag.
type details struct {
	createdAt time.Time
	pre, post ltx.Checksum
}

type detailsKey struct {
	key, etag string
	size      int64
}

type detailsCache struct {
	mu sync.Mutex
	m  map[detailsKey]details
}

func (dc *detailsCache) get(k detailsKey) (details, bool) {
	if k.etag == "" {
		return details{}, false
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	d, ok := dc.m[k]
	return d, ok
}

func (dc *detailsCache) put(k detailsKey, d details) {
	if k.etag == "" {
		return
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.m == nil || len(dc.m) >= detailsCacheMax {
		dc.m = make(map[detailsKey]details)
	}
	dc.m[k] = d
}

type listed struct {
	info *ltx.FileInfo
	key  string
	etag string
}

// list returns the level's objects with MinTXID >= seek, ascending; CreatedAt
// is LastModified and the checksums are zero.
func (c *Client) list(ctx context.Context, level int, seek ltx.TXID) ([]listed, error) {
	if err := replica.CheckLevel(level); err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	prefix := c.levelPrefix(level)
	in := &s3.ListObjectsV2Input{Bucket: aws.String(c.cfg.Bucket), Prefix: aws.String(prefix)}
	if seek > 0 {
		// Every "<min>-<max>.ltx" with min >= seek sorts after "<seek>".
		in.StartAfter = aws.String(prefix + seek.String())
	}
	var a []listed
	p := s3.NewListObjectsV2Paginator(c.s3, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, c.wrap("list", prefix, err)
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			minTXID, maxTXID, err := ltx.ParseFilename(strings.TrimPrefix(key, prefix))
			if err != nil || minTXID == 0 || minTXID > maxTXID || minTXID < seek {
				continue
			}
			a = append(a, listed{
				info: &ltx.FileInfo{
					Level: level, MinTXID: minTXID, MaxTXID: maxTXID,
					Size:      aws.ToInt64(obj.Size),
					CreatedAt: aws.ToTime(obj.LastModified).UTC(),
				},
				key:  key,
				etag: normETag(aws.ToString(obj.ETag)),
			})
		}
	}
	// Fixed-width hex names sort by MinTXID; sort anyway in case a server
	// returns pages out of order.
	slices.SortStableFunc(a, func(x, y listed) int {
		return cmp.Or(cmp.Compare(x.info.MinTXID, y.info.MinTXID), cmp.Compare(x.info.MaxTXID, y.info.MaxTXID))
	})
	return a, nil
}

// LTXFileNames lists like LTXFiles from the listing alone: one request per
// 1000 objects, but CreatedAt is the upload time (LastModified) and the
// checksums are zero. For callers that need only names and sizes (the
// uploader's start-up position, retention by TXID).
func (c *Client) LTXFileNames(ctx context.Context, level int, seek ltx.TXID) ([]*ltx.FileInfo, error) {
	objs, err := c.list(ctx, level, seek)
	if err != nil {
		return nil, err
	}
	a := make([]*ltx.FileInfo, len(objs))
	for i, o := range objs {
		a[i] = o.info
	}
	return a, nil
}

// LTXFiles lists the level's files with MinTXID >= seek, ascending, with
// the header's timestamp as CreatedAt and the pre/post-apply checksums, as
// the ReplicaClient contract asks. A listing holds none of these, so each
// object this client has not seen before costs one GET (whole, up to
// 256 KiB) or two ranged GETs (header and trailer), 16 at a time; objects
// are immutable, so the results are cached for the client's life. A file
// that is not valid LTX is listed with its LastModified and zero checksums
// (restore then fails on it by name). A file deleted while listing is left
// out.
func (c *Client) LTXFiles(ctx context.Context, level int, seek ltx.TXID) ([]*ltx.FileInfo, error) {
	objs, err := c.list(ctx, level, seek)
	if err != nil {
		return nil, err
	}
	var todo []int
	for i, o := range objs {
		if d, ok := c.cache.get(detailsKey{o.key, o.etag, o.info.Size}); ok {
			apply(o.info, d)
		} else {
			todo = append(todo, i)
		}
	}

	gone := make([]bool, len(objs))
	var mu sync.Mutex
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(detailWorkers, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				o := objs[i]
				d, err := c.fetchDetails(ctx, o.key, o.info.Size)
				switch {
				case isNotFound(err):
					gone[i] = true
				case err != nil:
					mu.Lock()
					if firstErr == nil {
						firstErr = c.wrap("read header of", o.key, err)
					}
					mu.Unlock()
					cancel()
				default:
					apply(o.info, d)
					c.cache.put(detailsKey{o.key, o.etag, o.info.Size}, d)
				}
			}
		}()
	}
	for _, i := range todo {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3: list s3://%s/%s: %w", c.cfg.Bucket, c.levelPrefix(level), err)
	}

	a := make([]*ltx.FileInfo, 0, len(objs))
	for i, o := range objs {
		if !gone[i] {
			a = append(a, o.info)
		}
	}
	return a, nil
}

func apply(info *ltx.FileInfo, d details) {
	if !d.createdAt.IsZero() {
		info.CreatedAt = d.createdAt
	}
	info.PreApplyChecksum, info.PostApplyChecksum = d.pre, d.post
}

// fetchDetails reads an object's header and trailer. Errors are raw SDK
// errors (isNotFound applies).
func (c *Client) fetchDetails(ctx context.Context, key string, size int64) (details, error) {
	var d details
	get := func(rng string, w io.Writer) (map[string]string, error) {
		in := &s3.GetObjectInput{Bucket: aws.String(c.cfg.Bucket), Key: aws.String(key)}
		if rng != "" {
			in.Range = aws.String(rng)
		}
		out, err := c.s3.GetObject(ctx, in)
		if err != nil {
			return nil, err
		}
		defer out.Body.Close()
		_, err = io.Copy(w, out.Body)
		return out.Metadata, err
	}

	var ht headTail
	var meta map[string]string
	var err error
	if size <= wholeReadMax || size < ltx.HeaderSize+ltx.TrailerSize {
		meta, err = get("", &ht)
	} else {
		var tail bytes.Buffer
		if meta, err = get(fmt.Sprintf("bytes=0-%d", ltx.HeaderSize-1), &ht); err == nil {
			_, err = get(fmt.Sprintf("bytes=%d-%d", size-ltx.TrailerSize, size-1), &tail)
			ht.tail = tail.Bytes()
		}
	}
	if err != nil {
		return d, err
	}
	if hdr, tr, err := ht.parse(); err == nil {
		d.createdAt = time.UnixMilli(hdr.Timestamp).UTC()
		d.pre, d.post = hdr.PreApplyChecksum, tr.PostApplyChecksum
	} else if v, ok := lookupMeta(meta, MetadataTimestamp); ok {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			d.createdAt = t.UTC()
		}
	}
	return d, nil
}

// headTail keeps the first HeaderSize and the last TrailerSize bytes
// written to it.
type headTail struct {
	head, tail []byte
}

func (h *headTail) Write(p []byte) (int, error) {
	if room := ltx.HeaderSize - len(h.head); room > 0 {
		h.head = append(h.head, p[:min(room, len(p))]...)
	}
	h.tail = append(h.tail, p[max(0, len(p)-ltx.TrailerSize):]...)
	h.tail = h.tail[max(0, len(h.tail)-ltx.TrailerSize):]
	return len(p), nil
}

func (h *headTail) parse() (ltx.Header, ltx.Trailer, error) {
	var hdr ltx.Header
	var tr ltx.Trailer
	if err := hdr.UnmarshalBinary(h.head); err != nil {
		return hdr, tr, err
	}
	if len(h.tail) < ltx.TrailerSize {
		return hdr, tr, io.ErrShortBuffer
	}
	err := tr.UnmarshalBinary(h.tail)
	return hdr, tr, err
}

// FileTimestamp returns the commit time of an LTX file from its
// litestream-timestamp metadata with one HEAD (else its LastModified).
func (c *Client) FileTimestamp(ctx context.Context, level int, minTXID, maxTXID ltx.TXID) (time.Time, error) {
	if err := replica.CheckLevel(level); err != nil {
		return time.Time{}, fmt.Errorf("s3: %w", err)
	}
	key := c.Key(level, minTXID, maxTXID)
	out, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(c.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		return time.Time{}, c.wrap("head", key, err)
	}
	if v, ok := lookupMeta(out.Metadata, MetadataTimestamp); ok {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return t.UTC(), nil
		}
	}
	return aws.ToTime(out.LastModified).UTC(), nil
}

func lookupMeta(m map[string]string, key string) (string, bool) {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

// OpenLTXFile reads size bytes from offset (size 0: to the end). A missing
// object wraps replica.ErrNotFound; an offset at or past the end reads
// nothing. Cancelling ctx aborts reads from the returned body.
func (c *Client) OpenLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, offset, size int64) (io.ReadCloser, error) {
	if err := replica.CheckLevel(level); err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	if offset < 0 || size < 0 {
		return nil, fmt.Errorf("s3: invalid range offset=%d size=%d", offset, size)
	}
	key := c.Key(level, minTXID, maxTXID)
	in := &s3.GetObjectInput{Bucket: aws.String(c.cfg.Bucket), Key: aws.String(key)}
	switch {
	case size > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+size-1))
	case offset > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := c.s3.GetObject(ctx, in)
	if err != nil {
		if _, status := errInfo(err); status == http.StatusRequestedRangeNotSatisfiable {
			// The object exists (else 404) and is shorter than offset.
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		return nil, c.wrap("get", key, err)
	}
	return out.Body, nil
}

// DeleteLTXFiles removes the objects, up to 1000 per request. Missing ones
// are not an error.
func (c *Client) DeleteLTXFiles(ctx context.Context, a []*ltx.FileInfo) error {
	for len(a) > 0 {
		n := min(len(a), deleteBatchSize)
		objs := make([]types.ObjectIdentifier, 0, n)
		for _, info := range a[:n] {
			if err := replica.CheckLevel(info.Level); err != nil {
				return fmt.Errorf("s3: %w", err)
			}
			objs = append(objs, types.ObjectIdentifier{Key: aws.String(c.Key(info.Level, info.MinTXID, info.MaxTXID))})
		}
		out, err := c.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(c.cfg.Bucket),
			Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return c.wrap("delete", aws.ToString(objs[0].Key)+" (batch)", err)
		}
		var errs []error
		for _, e := range out.Errors {
			if aws.ToString(e.Code) == "NoSuchKey" {
				continue
			}
			errs = append(errs, fmt.Errorf("s3: delete s3://%s/%s: %s: %s",
				c.cfg.Bucket, aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message)))
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		a = a[n:]
	}
	return nil
}
