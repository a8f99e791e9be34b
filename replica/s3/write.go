package s3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/replica"
)

// WriteLTXFile creates the object <path>/<level>/<min>-<max>.ltx from r,
// which must be an LTX file with those TXIDs (checked before anything is
// sent; the trailer before a multipart upload completes).
//
// Bodies up to the part size (16 MiB) go in one PUT from memory, so the
// SDK signs the payload and can resend it. Larger ones (snapshots) stream
// as a multipart upload holding one part in memory at a time; its
// completion carries the condition.
//
// With ConditionalWrites the create carries If-None-Match: *, and a 412 is
// resolved by comparing the existing object with what we sent: the same
// bytes (our own retried request whose reply was lost) is a success,
// different bytes wrap replica.ErrConflict. 409s (a concurrent conditional
// write) are retried with backoff. Without ConditionalWrites it is a plain
// PUT that overwrites.
func (c *Client) WriteLTXFile(ctx context.Context, level int, minTXID, maxTXID ltx.TXID, r io.Reader) (*ltx.FileInfo, error) {
	if err := replica.CheckRange(level, minTXID, maxTXID); err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	key := c.Key(level, minTXID, maxTXID)
	fail := func(format string, a ...any) error {
		return fmt.Errorf("s3: put s3://%s/%s: %w", c.cfg.Bucket, key, fmt.Errorf(format, a...))
	}
	if err := ctx.Err(); err != nil {
		return nil, fail("%w", err)
	}

	br := bufio.NewReaderSize(r, 64<<10)
	first, eof, err := readPart(br, c.partSize)
	if err != nil {
		return nil, fail("read body: %w", err)
	}
	hdr, err := checkHeader(first, minTXID, maxTXID)
	if err != nil {
		return nil, fail("%w", err)
	}
	createdAt := time.UnixMilli(hdr.Timestamp).UTC()
	meta := map[string]string{MetadataTimestamp: createdAt.Format(time.RFC3339Nano)}

	var size int64
	var tr ltx.Trailer
	var etag string
	if eof {
		if tr, err = checkTrailer(first, hdr); err != nil {
			return nil, fail("%w", err)
		}
		size = int64(len(first))
		etag, err = c.putSingle(ctx, key, first, meta)
	} else {
		size, tr, etag, err = c.putMultipart(ctx, key, first, br, meta, hdr)
	}
	if err != nil {
		return nil, err
	}

	d := details{createdAt: createdAt, pre: hdr.PreApplyChecksum, post: tr.PostApplyChecksum}
	c.cache.put(detailsKey{key, normETag(etag), size}, d)
	return &ltx.FileInfo{
		Level: level, MinTXID: minTXID, MaxTXID: maxTXID,
		PreApplyChecksum: d.pre, PostApplyChecksum: d.post,
		Size: size, CreatedAt: createdAt,
	}, nil
}

func checkHeader(b []byte, minTXID, maxTXID ltx.TXID) (ltx.Header, error) {
	var hdr ltx.Header
	if len(b) < ltx.HeaderSize+ltx.TrailerSize {
		return hdr, fmt.Errorf("not an LTX file: %d bytes", len(b))
	}
	if err := hdr.UnmarshalBinary(b[:ltx.HeaderSize]); err != nil {
		return hdr, fmt.Errorf("not an LTX file: %w", err)
	}
	if err := hdr.Validate(); err != nil {
		return hdr, fmt.Errorf("invalid LTX header: %w", err)
	}
	if hdr.MinTXID != minTXID || hdr.MaxTXID != maxTXID {
		return hdr, fmt.Errorf("LTX header holds TXIDs %s-%s, not %s-%s", hdr.MinTXID, hdr.MaxTXID, minTXID, maxTXID)
	}
	return hdr, nil
}

func checkTrailer(tail []byte, hdr ltx.Header) (ltx.Trailer, error) {
	var tr ltx.Trailer
	if len(tail) < ltx.TrailerSize {
		return tr, fmt.Errorf("LTX file too short")
	}
	if err := tr.UnmarshalBinary(tail[len(tail)-ltx.TrailerSize:]); err != nil {
		return tr, fmt.Errorf("read LTX trailer: %w", err)
	}
	if err := tr.Validate(hdr); err != nil {
		return tr, fmt.Errorf("invalid LTX trailer: %w", err)
	}
	return tr, nil
}

// readPart reads up to n bytes; eof reports that nothing follows them.
func readPart(br *bufio.Reader, n int64) (b []byte, eof bool, err error) {
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, br, n); err != nil {
		if err == io.EOF {
			return buf.Bytes(), true, nil
		}
		return nil, false, err
	}
	if _, err := br.Peek(1); err == io.EOF {
		return buf.Bytes(), true, nil
	} else if err != nil {
		return nil, false, err
	}
	return buf.Bytes(), false, nil
}

func (c *Client) putSingle(ctx context.Context, key string, body []byte, meta map[string]string) (string, error) {
	sum := md5.Sum(body)
	var etag string
	err := retryConflicts(ctx, func() error {
		in := &s3.PutObjectInput{
			Bucket:        aws.String(c.cfg.Bucket),
			Key:           aws.String(key),
			Body:          bytes.NewReader(body), // seekable: signed, and the SDK can resend it
			ContentLength: aws.Int64(int64(len(body))),
			ContentMD5:    aws.String(base64.StdEncoding.EncodeToString(sum[:])),
			ContentType:   aws.String("application/octet-stream"),
			Metadata:      meta,
		}
		if c.cfg.ConditionalWrites {
			in.IfNoneMatch = aws.String("*")
		}
		out, err := c.s3.PutObject(ctx, in)
		if err == nil {
			etag = aws.ToString(out.ETag)
		}
		return err
	})
	if err == nil {
		return etag, nil
	}
	if c.cfg.ConditionalWrites && isPreconditionFailed(err) {
		return c.resolveExisting(ctx, key, &digest{size: int64(len(body)), whole: sum[:]})
	}
	return "", c.wrap("put", key, err)
}

// digest identifies the bytes we sent, to recognise them in an existing
// object: a single-part ETag is the body's MD5, a multipart ETag the MD5 of
// the parts' MD5s and "-<parts>".
type digest struct {
	size     int64
	whole    []byte   // MD5 of the whole body
	partMD5s [][]byte // one per part when sent as multipart
}

func (d *digest) etags() []string {
	a := []string{hex.EncodeToString(d.whole)}
	if len(d.partMD5s) > 0 {
		h := md5.New()
		for _, p := range d.partMD5s {
			h.Write(p)
		}
		a = append(a, fmt.Sprintf("%x-%d", h.Sum(nil), len(d.partMD5s)))
	}
	return a
}

func normETag(s string) string {
	return strings.ToLower(strings.Trim(strings.TrimPrefix(s, "W/"), `"`))
}

// resolveExisting decides, after a 412, whether the object at key holds the
// bytes of d, and returns its ETag if so.
func (c *Client) resolveExisting(ctx context.Context, key string, d *digest) (string, error) {
	head, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(c.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		return "", c.wrap("head after 412 on", key, err)
	}
	conflict := func(why string) error {
		return fmt.Errorf("s3: put s3://%s/%s: %s (another writer on this replica path?): %w", c.cfg.Bucket, key, why, replica.ErrConflict)
	}
	if n := aws.ToInt64(head.ContentLength); n != d.size {
		return "", conflict(fmt.Sprintf("exists with %d bytes, we sent %d", n, d.size))
	}
	etag := aws.ToString(head.ETag)
	for _, e := range d.etags() {
		if normETag(etag) == e {
			return etag, nil
		}
	}
	// The ETag is no MD5 we can predict (SSE-KMS, other part sizes, the
	// server's own scheme): compare the bytes.
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		return "", c.wrap("get after 412 on", key, err)
	}
	defer out.Body.Close()
	h := md5.New()
	if _, err := io.Copy(h, out.Body); err != nil {
		return "", c.wrap("get after 412 on", key, err)
	}
	if !bytes.Equal(h.Sum(nil), d.whole) {
		return "", conflict("exists with different contents")
	}
	return etag, nil
}

// putMultipart uploads first and the rest of br as parts, checks the LTX
// trailer, and completes the upload with If-None-Match.
func (c *Client) putMultipart(ctx context.Context, key string, first []byte, br *bufio.Reader, meta map[string]string, hdr ltx.Header) (int64, ltx.Trailer, string, error) {
	var tr ltx.Trailer
	bucket := aws.String(c.cfg.Bucket)
	badTrailer := func(err error) error {
		return fmt.Errorf("s3: put s3://%s/%s: %w", c.cfg.Bucket, key, err)
	}
	if c.cfg.ConditionalWrites {
		// Don't send GiBs only to learn that the object exists.
		_, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: aws.String(key)})
		if err == nil {
			d, tail, err := c.eachPart(key, first, br, func(int32, []byte, []byte) error { return nil })
			if err != nil {
				return 0, tr, "", err
			}
			if tr, err = checkTrailer(tail, hdr); err != nil {
				return 0, tr, "", badTrailer(err)
			}
			etag, err := c.resolveExisting(ctx, key, d)
			return d.size, tr, etag, err
		} else if !isNotFound(err) {
			return 0, tr, "", c.wrap("head", key, err)
		}
	}

	var algo types.ChecksumAlgorithm
	if c.partCRC {
		algo = types.ChecksumAlgorithmCrc32
	}
	create, err := c.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: bucket, Key: aws.String(key), Metadata: meta,
		ContentType: aws.String("application/octet-stream"), ChecksumAlgorithm: algo,
	})
	if err != nil {
		return 0, tr, "", c.wrap("create multipart upload", key, err)
	}
	uploadID := create.UploadId
	completed := false
	defer func() {
		if completed {
			return
		}
		// Abort even when ctx is done, so parts do not linger (and bill).
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = c.s3.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: bucket, Key: aws.String(key), UploadId: uploadID})
	}()

	var parts []types.CompletedPart
	d, tail, err := c.eachPart(key, first, br, func(n int32, part, sum []byte) error {
		out, err := c.s3.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: bucket, Key: aws.String(key), UploadId: uploadID, PartNumber: aws.Int32(n),
			Body: bytes.NewReader(part), ContentLength: aws.Int64(int64(len(part))),
			ContentMD5:        aws.String(base64.StdEncoding.EncodeToString(sum)),
			ChecksumAlgorithm: algo,
		})
		if err != nil {
			return c.wrap(fmt.Sprintf("upload part %d of", n), key, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n), ChecksumCRC32: out.ChecksumCRC32})
		return nil
	})
	if err != nil {
		return 0, tr, "", err
	}
	if tr, err = checkTrailer(tail, hdr); err != nil {
		return 0, tr, "", badTrailer(err)
	}

	var etag string
	err = retryConflicts(ctx, func() error {
		in := &s3.CompleteMultipartUploadInput{
			Bucket: bucket, Key: aws.String(key), UploadId: uploadID,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		}
		if c.cfg.ConditionalWrites {
			in.IfNoneMatch = aws.String("*")
		}
		out, err := c.s3.CompleteMultipartUpload(ctx, in)
		if err == nil {
			etag = aws.ToString(out.ETag)
		}
		return err
	})
	switch {
	case err == nil:
		completed = true
		return d.size, tr, etag, nil
	case c.cfg.ConditionalWrites && isPreconditionFailed(err):
		etag, err := c.resolveExisting(ctx, key, d)
		return d.size, tr, etag, err
	case isNoSuchUpload(err):
		// A resent Complete whose first attempt succeeded finds no upload.
		if etag, rerr := c.resolveExisting(ctx, key, d); rerr == nil {
			completed = true
			return d.size, tr, etag, nil
		}
	}
	return 0, tr, "", c.wrap("complete multipart upload", key, err)
}

func isNoSuchUpload(err error) bool {
	code, _ := errInfo(err)
	return code == "NoSuchUpload"
}

// partSizeFor grows the part size every 1000 parts, so 10000 parts hold
// terabytes while small uploads keep small parts.
func partSizeFor(base int64, n int32) int64 {
	s := base << ((n - 1) / 1000)
	return min(max(s, minPartSize), 5<<30)
}

// eachPart calls fn with each part (first, then the rest of br in growing
// part sizes) and its MD5, and returns the digest and the last bytes.
func (c *Client) eachPart(key string, first []byte, br *bufio.Reader, fn func(n int32, part, sum []byte) error) (*digest, []byte, error) {
	d := &digest{}
	whole := md5.New()
	var ht headTail
	part, eof := first, false
	for n := int32(1); len(part) > 0; n++ {
		if n > 10000 {
			return nil, nil, fmt.Errorf("s3: put s3://%s/%s: body needs more than 10000 parts", c.cfg.Bucket, key)
		}
		sum := md5.Sum(part)
		if err := fn(n, part, sum[:]); err != nil {
			return nil, nil, err
		}
		d.partMD5s = append(d.partMD5s, sum[:])
		d.size += int64(len(part))
		whole.Write(part)
		ht.Write(part)
		if eof {
			break
		}
		var err error
		if part, eof, err = readPart(br, partSizeFor(c.partSize, n+1)); err != nil {
			return nil, nil, fmt.Errorf("s3: put s3://%s/%s: read body: %w", c.cfg.Bucket, key, err)
		}
	}
	d.whole = whole.Sum(nil)
	return d, ht.tail, nil
}
