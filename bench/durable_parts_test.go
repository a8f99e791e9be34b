package bench

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	lfs3 "github.com/litefs-dev/litefs/replica/s3"

	"github.com/litefs-dev/litefs/internal/vfs"
	"github.com/litefs-dev/litefs/replica/replicatest"
	"github.com/litefs-dev/litefs/staging"
	"github.com/litefs-dev/litefs/wal"
	"github.com/superfly/ltx"
)

// The building blocks BenchmarkDurable times on their own, beside the
// durable commits: a PUT of the object a commit uploads, and a freeze.

// newPutObject returns a builder of the object a 1-row commit uploads: one
// 4 KiB table page, part full, at level 0.
func newPutObject() func(txid ltx.TXID) []byte {
	page := make([]byte, 4096)
	page[0] = 0x0d // a table leaf page
	rng := rand.New(rand.NewPCG(1, 2))
	for i := len(page) - 1536; i < len(page); i++ { // ~1.6 KiB compressed, as the commits' objects
		page[i] = byte(rng.Uint32())
	}
	return func(txid ltx.TXID) []byte {
		hdr := ltx.Header{PageSize: 4096, Commit: 2, MinTXID: txid, MaxTXID: txid,
			Timestamp: time.Now().UnixMilli(), PreApplyChecksum: ltx.ChecksumFlag | ltx.Checksum(txid)}
		obj, err := replicatest.EncodeLTX(hdr, []replicatest.Page{{Pgno: 2, Data: page}}, ltx.ChecksumFlag|ltx.Checksum(txid+1))
		if err != nil {
			panic(err)
		}
		return obj
	}
}

// putter PUTs objects of increasing TXIDs under its own replica path.
type putter struct {
	c    *lfs3.Client
	obj  func(ltx.TXID) []byte
	txid ltx.TXID
}

func (p *putter) put() (time.Duration, error) {
	p.txid++
	body := p.obj(p.txid)
	start := time.Now()
	_, err := p.c.WriteLTXFile(context.Background(), 0, p.txid, p.txid, bytes.NewReader(body))
	return time.Since(start), err
}

// parallel runs op n times in each of k goroutines (g is the goroutine)
// and returns every latency and the time until the last one finished.
func parallel(b *testing.B, wd *watchdog, k, n int, op func(g int) (time.Duration, error)) (latencies, time.Duration) {
	out := make([]latencies, k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < k; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				d, err := op(g)
				if err != nil {
					errs[g] = err
					return
				}
				out[g] = append(out[g], d)
				wd.tick()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return slices.Concat(out...), el
}

// freezer freezes one 1-page record at a time in a staging log of its own.
type freezer struct {
	l      *staging.Log
	txid   ltx.TXID
	page   []byte
	cycles latencies // freeze and the rest of the cycle's local work
}

func newFreezer(b *testing.B) *freezer {
	l, _, err := staging.Open(vfs.Default, filepath.Join(b.TempDir(), "staging"), quiet)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return &freezer{l: l, txid: 1, page: make([]byte, 4096)}
}

func (f *freezer) freeze() (time.Duration, error) {
	f.txid++
	t := f.txid
	hdr := ltx.Header{Version: ltx.Version, PageSize: 4096, Commit: 2, MinTXID: t, MaxTXID: t,
		Timestamp: time.Now().UnixMilli(), PreApplyChecksum: ltx.ChecksumFlag | ltx.Checksum(t),
		WALOffset: 32, WALSize: 4120, WALSalt1: 1, WALSalt2: 2}
	if _, err := f.l.Append(hdr, ltx.ChecksumFlag|ltx.Checksum(t+1), []wal.Page{{Pgno: 2, Offset: 32, Data: f.page}}); err != nil {
		return 0, err
	}
	start := time.Now()
	pos, err := f.l.Freeze()
	if err != nil {
		return 0, err
	}
	d := time.Since(start)
	// The rest of an upload cycle's local work, as uploader.Flush and
	// upload do it (the PUT left out): list, read the trailer and the
	// object, remove it (closing it after), write the position.
	files, err := f.l.Frozen()
	if err != nil {
		return 0, err
	}
	for _, fr := range files {
		if _, err := f.l.PostApply(fr); err != nil {
			return 0, err
		}
		r, err := f.l.Open(fr)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, r)
		if err == nil {
			err = f.l.Remove(fr)
		}
		r.Close()
		if err != nil {
			return 0, err
		}
	}
	if err := f.l.WritePos(pos, false); err != nil {
		return 0, err
	}
	f.cycles = append(f.cycles, time.Since(start))
	return d, nil
}
