package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/replicatest"
	lfs3 "github.com/litefs-dev/litefs/replica/s3"
)

// eachServer runs fn against gofakes3 and versitygw.
func eachServer(t *testing.T, fn func(t *testing.T, srv *s3test.Server)) {
	t.Run("gofakes3", func(t *testing.T) { fn(t, s3test.StartGoFakeS3(t)) })
	t.Run("versitygw", func(t *testing.T) { fn(t, s3test.StartVersityGW(t)) })
}

var snapshots sync.Map // seed -> []byte

// snapshot returns a full-database LTX file 1-txid of random (incompressible)
// pages, about pages*4 KiB, flagged NoChecksum as Litestream writes them
// (cheap to build under -race).
func snapshot(t *testing.T, seed uint64, pages int, txid ltx.TXID, ts time.Time) []byte {
	t.Helper()
	type key struct {
		seed  uint64
		pages int
		txid  ltx.TXID
		ts    int64
	}
	k := key{seed, pages, txid, ts.UnixMilli()}
	if b, ok := snapshots.Load(k); ok {
		return b.([]byte)
	}
	var seedKey [32]byte
	seedKey[0] = byte(seed)
	rng := rand.NewChaCha8(seedKey)
	var ps []replicatest.Page
	for pgno := uint32(1); pgno <= uint32(pages); pgno++ {
		data := make([]byte, 4096)
		_, _ = rng.Read(data)
		ps = append(ps, replicatest.Page{Pgno: pgno, Data: data})
	}
	hdr := ltx.Header{Flags: ltx.HeaderFlagNoChecksum, PageSize: 4096, Commit: uint32(pages),
		MinTXID: 1, MaxTXID: txid, Timestamp: ts.UnixMilli()}
	b, err := replicatest.EncodeLTX(hdr, ps, 0)
	if err != nil {
		t.Fatal(err)
	}
	snapshots.Store(k, b)
	return b
}

func wantInfo(t *testing.T, level int, b []byte) ltx.FileInfo {
	t.Helper()
	var hdr ltx.Header
	var tr ltx.Trailer
	if err := hdr.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if err := tr.UnmarshalBinary(b[len(b)-ltx.TrailerSize:]); err != nil {
		t.Fatal(err)
	}
	return ltx.FileInfo{Level: level, MinTXID: hdr.MinTXID, MaxTXID: hdr.MaxTXID, PreApplyChecksum: hdr.PreApplyChecksum,
		PostApplyChecksum: tr.PostApplyChecksum, Size: int64(len(b)), CreatedAt: time.UnixMilli(hdr.Timestamp).UTC()}
}

func readAll(t *testing.T, c *lfs3.Client, level int, minTXID, maxTXID ltx.TXID) []byte {
	t.Helper()
	rc, err := c.OpenLTXFile(context.Background(), level, minTXID, maxTXID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A client that did not write the files (another process, a restore) lists
// the header timestamp and the checksums too, from the objects themselves;
// objects that are not LTX are listed with their upload time, names that
// are not LTX names are skipped.
func TestListDetailsFreshClient(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *s3test.Server) {
		ctx := context.Background()
		w := srv.Client(t, "db")
		ts := time.Date(2020, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
		small := replicatest.NewFile(t, 2, 3, ts)
		big := snapshot(t, 1, 100, 3, ts.Add(time.Second)) // > 256 KiB: ranged reads
		for _, f := range []struct {
			level int
			b     []byte
		}{{0, small}, {replica.SnapshotLevel, big}} {
			var hdr ltx.Header
			_ = hdr.UnmarshalBinary(f.b)
			if _, err := w.WriteLTXFile(ctx, f.level, hdr.MinTXID, hdr.MaxTXID, bytes.NewReader(f.b)); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range []string{"db/0000/0000000000000004-0000000000000004.ltx", "db/0000/junk.ltx", "db/0000/0000000000000005-0000000000000005.ltx.tmp"} {
			if _, err := w.SDK().PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String(k), Body: bytes.NewReader([]byte("not ltx"))}); err != nil {
				t.Fatal(err)
			}
		}

		r := srv.Client(t, "db")
		infos, err := r.LTXFiles(ctx, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != 2 {
			t.Fatalf("listed %d files, want 2", len(infos))
		}
		if got, want := *infos[0], wantInfo(t, 0, small); got != want {
			t.Errorf("level 0: %+v, want %+v", got, want)
		}
		if in := infos[1]; in.MinTXID != 4 || in.PreApplyChecksum != 0 || in.CreatedAt.Year() < 2024 {
			t.Errorf("non-LTX object listed as %+v", in)
		}
		infos, err = r.LTXFiles(ctx, replica.SnapshotLevel, 0)
		if err != nil || len(infos) != 1 {
			t.Fatalf("level 9: %v, %v", infos, err)
		}
		if got, want := *infos[0], wantInfo(t, replica.SnapshotLevel, big); got != want {
			t.Errorf("level 9: %+v, want %+v", got, want)
		}
		// The metadata Litestream selects by.
		st, err := r.FileTimestamp(ctx, replica.SnapshotLevel, 1, 3)
		if err != nil || !st.Equal(ts.Add(time.Second)) {
			t.Errorf("FileTimestamp = %s, %v; want %s", st, err, ts.Add(time.Second))
		}
		names, err := r.LTXFileNames(ctx, 0, 3)
		if err != nil || len(names) != 1 || names[0].MinTXID != 4 {
			t.Errorf("LTXFileNames(seek 3) = %v, %v", names, err)
		}
	})
}

func TestConditionalWrites(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *s3test.Server) {
		ctx := context.Background()
		c := srv.Client(t, "db")
		b := replicatest.NewFile(t, 1, 2, time.Now())
		if _, err := c.WriteLTXFile(ctx, 0, 1, 2, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		// Another client (a restarted daemon) retries the same upload.
		info, err := srv.Client(t, "db").WriteLTXFile(ctx, 0, 1, 2, bytes.NewReader(b))
		if err != nil {
			t.Fatalf("same bytes again: %v", err)
		}
		if *info != wantInfo(t, 0, b) {
			t.Errorf("info = %+v", info)
		}
		other := replicatest.NewFile(t, 1, 2, time.Now().Add(time.Hour))
		if _, err := c.WriteLTXFile(ctx, 0, 1, 2, bytes.NewReader(other)); !errors.Is(err, replica.ErrConflict) {
			t.Fatalf("different bytes: err = %v, want ErrConflict", err)
		}
		if !bytes.Equal(readAll(t, c, 0, 1, 2), b) {
			t.Fatal("conflicting write replaced the object")
		}

		// Conditional writes off: a plain PUT that overwrites.
		cfg := srv.Config("db")
		cfg.ConditionalWrites = false
		plain, err := lfs3.NewClient(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := plain.WriteLTXFile(ctx, 0, 1, 2, bytes.NewReader(other)); err != nil {
			t.Fatalf("unconditional overwrite: %v", err)
		}
		if !bytes.Equal(readAll(t, c, 0, 1, 2), other) {
			t.Fatal("unconditional write did not overwrite")
		}
	})
}

func TestRejectsBadLTX(t *testing.T) {
	srv := s3test.StartGoFakeS3(t)
	c := srv.Client(t, "db")
	ctx := context.Background()
	b := replicatest.NewFile(t, 1, 2, time.Now())
	for name, tc := range map[string]struct {
		body     []byte
		min, max ltx.TXID
	}{
		"not ltx":       {[]byte("hello, world, this is not an LTX file at all..................................................................................."), 1, 2},
		"wrong txids":   {b, 1, 3},
		"truncated":     {b[:len(b)-3], 1, 2},
		"bad range":     {b, 3, 2},
		"zero min txid": {b, 0, 2},
	} {
		if _, err := c.WriteLTXFile(ctx, 0, tc.min, tc.max, bytes.NewReader(tc.body)); err == nil {
			t.Errorf("%s: write succeeded", name)
		}
	}
	if infos, err := c.LTXFileNames(ctx, 0, 0); err != nil || len(infos) != 0 {
		t.Fatalf("after rejected writes: %v, %v", infos, err)
	}
}

// Bodies past the part size go as multipart uploads, with the same
// create-if-absent semantics. (versitygw only: in-process gofakes3 takes
// ten seconds for it under -race.)
func TestMultipart(t *testing.T) {
	func(t *testing.T, srv *s3test.Server) {
		ctx := context.Background()
		c := srv.Client(t, "db")
		lfs3.SetPartSize(c, 5<<20)
		ts := time.Date(2022, 5, 6, 7, 8, 9, 10_000_000, time.UTC)
		b := snapshot(t, 7, 3000, 9, ts) // ~12 MiB: 3 parts
		if len(b) <= 10<<20 {
			t.Fatalf("snapshot is only %d bytes", len(b))
		}
		info, err := c.WriteLTXFile(ctx, replica.SnapshotLevel, 1, 9, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if *info != wantInfo(t, replica.SnapshotLevel, b) {
			t.Errorf("info = %+v", info)
		}
		if !bytes.Equal(readAll(t, c, replica.SnapshotLevel, 1, 9), b) {
			t.Fatal("read back differs")
		}

		// The same with CRC32 part checksums, as the SDK sends them to AWS.
		crc := srv.Client(t, "crc")
		lfs3.SetPartSize(crc, 5<<20)
		lfs3.SetPartCRC(crc, true)
		if _, err := crc.WriteLTXFile(ctx, replica.SnapshotLevel, 1, 9, bytes.NewReader(b)); err != nil {
			t.Fatalf("multipart with CRC32 part checksums: %v", err)
		}
		if !bytes.Equal(readAll(t, crc, replica.SnapshotLevel, 1, 9), b) {
			t.Fatal("read back differs (CRC32 parts)")
		}

		// A retry from a fresh client (no cached state): the same bytes pass,
		// different ones conflict, and neither uploads parts.
		c2 := srv.Client(t, "db")
		lfs3.SetPartSize(c2, 5<<20)
		if _, err := c2.WriteLTXFile(ctx, replica.SnapshotLevel, 1, 9, bytes.NewReader(b)); err != nil {
			t.Fatalf("same bytes again: %v", err)
		}
		other := snapshot(t, 8, 3000, 9, ts)
		if _, err := c2.WriteLTXFile(ctx, replica.SnapshotLevel, 1, 9, bytes.NewReader(other)); !errors.Is(err, replica.ErrConflict) {
			t.Fatalf("different bytes: err = %v, want ErrConflict", err)
		}
		infos, err := c2.LTXFiles(ctx, replica.SnapshotLevel, 0)
		if err != nil || len(infos) != 1 || *infos[0] != wantInfo(t, replica.SnapshotLevel, b) {
			t.Fatalf("list = %v, %v", infos, err)
		}
		if st, err := c2.FileTimestamp(ctx, replica.SnapshotLevel, 1, 9); err != nil || !st.Equal(ts) {
			t.Fatalf("FileTimestamp = %s, %v", st, err)
		}
		// No upload is left behind.
		ups, err := c.SDK().ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: aws.String(srv.Bucket)})
		if err != nil {
			t.Fatal(err)
		}
		if len(ups.Uploads) != 0 {
			t.Fatalf("%d multipart uploads left", len(ups.Uploads))
		}
	}(t, s3test.StartVersityGW(t))
}

// Probes the server itself: CompleteMultipartUpload must honour
// If-None-Match, or snapshots are not fenced.
func TestVersityGWCompleteIfNoneMatch(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	cl := srv.Client(t, "db").SDK()
	ctx := context.Background()
	key := aws.String("db/probe")
	if _, err := cl.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String(srv.Bucket), Key: key, Body: bytes.NewReader([]byte("x"))}); err != nil {
		t.Fatal(err)
	}
	up, err := cl.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: aws.String(srv.Bucket), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	part, err := cl.UploadPart(ctx, &awss3.UploadPartInput{Bucket: aws.String(srv.Bucket), Key: key, UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("y"))})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{Bucket: aws.String(srv.Bucket), Key: key, UploadId: up.UploadId,
		IfNoneMatch:     aws.String("*"),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: part.ETag, PartNumber: aws.Int32(1)}}}})
	if err == nil {
		t.Fatal("CompleteMultipartUpload with If-None-Match over an existing object succeeded")
	}
	t.Logf("versitygw: %v", err)
}

func TestDeleteManyBatches(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	c := srv.Client(t, "db")
	ctx := context.Background()
	var infos []*ltx.FileInfo
	for txid := ltx.TXID(1); txid <= 2100; txid++ { // three DeleteObjects requests
		infos = append(infos, &ltx.FileInfo{Level: 1, MinTXID: txid, MaxTXID: txid})
	}
	for _, txid := range []ltx.TXID{1, 1500, 2100} {
		b := replicatest.NewFile(t, txid, txid, time.Now())
		if _, err := c.WriteLTXFile(ctx, 1, txid, txid, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteLTXFiles(ctx, infos); err != nil {
		t.Fatal(err)
	}
	if left, err := c.LTXFiles(ctx, 1, 0); err != nil || len(left) != 0 {
		t.Fatalf("left %v, %v", left, err)
	}
}
