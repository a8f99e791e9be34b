package litefs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/replica"
)

// Retry backoff bounds for failed uploads.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// Run uploads staged segments until ctx ends. With a sync interval it waits
// that long after the first new segment so one object carries the whole
// window; with 0 it uploads as soon as the previous upload returned. An idle
// database sends nothing.
func (d *DB) Run(ctx context.Context) {
	backoff := time.Duration(0)
	pending := d.hasStaged()
	for {
		if !pending {
			select {
			case <-ctx.Done():
				return
			case <-d.notify:
			}
		}
		wait := d.syncInterval
		if backoff > 0 {
			wait = backoff
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		err := d.Flush(ctx)
		switch {
		case err == nil:
			backoff, pending = 0, false
		case ctx.Err() != nil:
			return
		case errors.Is(err, replica.ErrConflict):
			d.mu.Lock()
			d.stop(fmt.Errorf("%w: another writer owns replica of %s: %v", errFenced, d.name, err))
			d.mu.Unlock()
			return
		default:
			d.Metrics.UploadErr.Add(1)
			backoff = nextBackoff(backoff)
			d.logger.Warn("upload failed; will retry (the app is not affected, staging holds the data)", "err", err, "retry_in", backoff)
			pending = true
		}
	}
}

// nextBackoff doubles up to maxBackoff, with jitter so that many daemons
// recovering from one outage do not retry in lockstep.
func nextBackoff(b time.Duration) time.Duration {
	if b == 0 {
		b = minBackoff
	} else {
		b *= 2
	}
	if b > maxBackoff {
		b = maxBackoff
	}
	return b/2 + rand.N(b/2+1)
}

func (d *DB) hasStaged() bool { return d.stage.bytes() > 0 }

// Flush freezes what is staged and uploads every frozen object in TXID
// order. A frozen object is deleted only after the replica confirmed it.
func (d *DB) Flush(ctx context.Context) error {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	if err := d.stage.freeze(); err != nil {
		return err
	}
	files, err := d.stage.frozen()
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := d.upload(ctx, f); err != nil {
			return err
		}
	}
	if len(files) > 0 {
		if d.stage.bytes() == 0 {
			d.Metrics.OldestUnsentAt.Store(0)
		}
		d.mu.Lock()
		pos := d.pos
		d.mu.Unlock()
		if pos.TXID == d.ReplicaPos().TXID {
			// Keep the WAL position on disk once staging is empty: start-up
			// needs it to find commits a crash left only in the WAL.
			if err := d.writePos(pos, false); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *DB) upload(ctx context.Context, f frozenFile) error {
	key := fmt.Sprintf("level %d %s", f.Level, ltx.FormatFilename(f.Min, f.Max))
	if f.Level == 0 && f.Max <= d.ReplicaPos().TXID {
		// Already there: a previous run uploaded it and died before deleting it.
		return d.stage.remove(f)
	}
	post, err := readPostApply(f.Path)
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	r, err := os.Open(f.Path)
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	defer r.Close()
	start := d.now()
	if _, err := d.client.WriteLTXFile(ctx, f.Level, f.Min, f.Max, r); err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	d.Metrics.UploadOK.Add(1)
	d.Metrics.UploadedBytes.Add(uint64(f.Size))
	d.Metrics.LastUploadNanos.Store(int64(d.now().Sub(start)))
	d.repMu.Lock()
	if f.Max > d.replicaPos.TXID {
		d.replicaPos = Pos{TXID: f.Max, Checksum: post}
	}
	d.repMu.Unlock()
	d.logger.Debug("uploaded", "object", key, "bytes", f.Size)
	return d.stage.remove(f)
}

// Close makes staging and the position durable. The uploader must have
// stopped.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.stage.sync()
	if werr := d.writePos(d.pos, true); err == nil {
		err = werr
	}
	if cerr := d.stage.close(); err == nil {
		err = cerr
	}
	return err
}
