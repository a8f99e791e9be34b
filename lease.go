package litefs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/staging"

	"github.com/litefs-dev/litefs/internal/durable"
)

// leaseWaitError: another owner's lease is valid; retry after it expires.
type leaseWaitError struct {
	owner   string
	expires time.Time
}

func (e *leaseWaitError) Error() string {
	return fmt.Sprintf("replica is leased by %s until %s: another litefs is writing it; waiting for the lease to be released or to expire",
		e.owner, e.expires.UTC().Format(time.RFC3339))
}

// VolumeID returns the owner id kept on the volume (<data dir>/.litefs/id),
// creating it: a daemon restarted on the same volume takes its own lease
// back at once, another volume waits out the TTL.
func VolumeID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, staging.DirName, "id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create volume id: %w", err)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	id := host + "-" + hex.EncodeToString(b[:])
	if err := os.WriteFile(path+".tmp", []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write volume id: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return "", fmt.Errorf("write volume id: %w", err)
	}
	return id, durable.SyncDir(filepath.Dir(path))
}

// ensureLease makes sure we hold the lease for at least half its TTL before
// an upload. It sends nothing while nothing needs uploading: callers only
// call it with an object in hand. Called from the uploader goroutine only.
func (d *DB) ensureLease(ctx context.Context) error {
	if d.leaser == nil {
		return nil
	}
	now := d.now()
	if d.lease != nil && now.Before(d.lease.Expires.Add(-d.leaseTTL/2)) {
		return nil
	}
	if d.lease != nil && !now.Before(d.lease.Expires) {
		// It lapsed while we were idle (no renewals without uploads): take
		// it again like a new writer, and fence only if someone wrote.
		d.lease = nil
	}
	if d.lease != nil {
		l, err := d.leaser.RenewLease(ctx, d.lease, d.leaseTTL, now)
		if errors.Is(err, replica.ErrLeaseLost) {
			d.lease = nil
			return fmt.Errorf("%w: lease on the replica was taken by another writer: %v", ErrFenced, err)
		} else if err != nil {
			if now.Before(d.lease.Expires.Add(-d.leaseMargin())) {
				return nil // still ours for a while; renew again next time
			}
			return fmt.Errorf("renew lease: %w", err)
		}
		d.lease = l
		return nil
	}
	if d.leasedBefore {
		// Ours lapsed: if another writer wrote meanwhile we are fenced, and
		// must not even touch the lock, which may be theirs to renew.
		if err := d.checkReplicaAfterLease(ctx); err != nil {
			return err
		}
	}
	// Another owner's lease counts as valid for a margin past its expiry:
	// its clock may be behind ours.
	l, err := d.leaser.AcquireLease(ctx, d.owner, d.leaseTTL, now.Add(-d.leaseMargin()))
	var held *replica.LeaseHeldError
	if errors.As(err, &held) {
		return &leaseWaitError{owner: held.Owner, expires: held.Expires.Add(d.leaseMargin())}
	} else if err != nil {
		return fmt.Errorf("acquire lease: %w", err)
	}
	d.lease = l
	d.logger.Info("took the replica lease", "owner", d.owner, "expires", l.Expires.UTC().Format(time.RFC3339))
	if err := d.checkReplicaAfterLease(ctx); err != nil {
		// Fenced after all: the lock is the other writer's to take back.
		_ = d.leaser.ReleaseLease(ctx, l)
		return err
	}
	return nil
}

// leaseMargin is the clock-skew allowance: uploads stop this long before
// the lease expires, and another owner's lease is honoured this long after.
func (d *DB) leaseMargin() time.Duration { return d.leaseTTL / 6 }

// inLease reports whether an upload may start now.
func (d *DB) inLease() bool {
	return d.leaser == nil || (d.lease != nil && d.now().Before(d.lease.Expires.Add(-d.leaseMargin())))
}

// releaseLease lets the next writer start at once after a clean shutdown.
func (d *DB) releaseLease(ctx context.Context) error {
	if d.leaser == nil || d.lease == nil {
		return nil
	}
	err := d.leaser.ReleaseLease(ctx, d.lease)
	d.lease = nil
	if err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}
