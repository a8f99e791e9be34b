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

// Unwrap lets callers ask errors.Is(err, replica.ErrLeaseHeld): waiting is
// pointless for them when another writer owns the replica.
func (e *leaseWaitError) Unwrap() error { return replica.ErrLeaseHeld }

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
func (u *uploader) ensureLease(ctx context.Context) error {
	if u.leaser == nil {
		return nil
	}
	now := u.now()
	if u.lease != nil && now.Before(u.lease.Expires.Add(-u.leaseTTL/2)) {
		return nil
	}
	if u.lease != nil && !now.Before(u.lease.Expires) {
		// It lapsed while we were idle (no renewals without uploads): take
		// it again like a new writer, and fence only if someone wrote.
		u.lease = nil
	}
	if u.lease != nil {
		l, err := u.leaser.RenewLease(ctx, u.lease, u.leaseTTL, now)
		if errors.Is(err, replica.ErrLeaseLost) {
			u.lease = nil
			return fmt.Errorf("%w: lease on the replica was taken by another writer: %v", ErrFenced, err)
		} else if err != nil {
			if now.Before(u.lease.Expires.Add(-u.leaseMargin())) {
				return nil // still ours for a while; renew again next time
			}
			return fmt.Errorf("renew lease: %w", err)
		}
		u.lease = l
		return nil
	}
	if u.leasedBefore {
		// Ours lapsed: if another writer wrote meanwhile we are fenced, and
		// must not even touch the lock, which may be theirs to renew.
		if err := u.checkReplicaAfterLease(ctx); err != nil {
			return err
		}
	}
	// Another owner's lease counts as valid for a margin past its expiry:
	// its clock may be behind ours.
	l, err := u.leaser.AcquireLease(ctx, u.owner, u.leaseTTL, now.Add(-u.leaseMargin()))
	var held *replica.LeaseHeldError
	if errors.As(err, &held) {
		return &leaseWaitError{owner: held.Owner, expires: held.Expires.Add(u.leaseMargin())}
	} else if err != nil {
		return fmt.Errorf("acquire lease: %w", err)
	}
	u.lease = l
	u.logger.Info("took the replica lease", "owner", u.owner, "expires", l.Expires.UTC().Format(time.RFC3339))
	if err := u.checkReplicaAfterLease(ctx); err != nil {
		// Fenced after all: the lock is the other writer's to take back.
		_ = u.leaser.ReleaseLease(ctx, l)
		return err
	}
	return nil
}

// leaseMargin is the clock-skew allowance: uploads stop this long before
// the lease expires, and another owner's lease is honoured this long after.
func (u *uploader) leaseMargin() time.Duration { return u.leaseTTL / 6 }

// inLease reports whether an upload may start now.
func (u *uploader) inLease() bool {
	return u.leaser == nil || (u.lease != nil && u.now().Before(u.lease.Expires.Add(-u.leaseMargin())))
}

// releaseLease lets the next writer start at once after a clean shutdown.
func (u *uploader) releaseLease(ctx context.Context) error {
	if u.leaser == nil || u.lease == nil {
		return nil
	}
	err := u.leaser.ReleaseLease(ctx, u.lease)
	u.lease = nil
	if err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}
