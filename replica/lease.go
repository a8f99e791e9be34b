package replica

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Leases fence writers: one writer per replica path. A writer uploads only
// inside its lease (minus a margin for clock skew), takes it again after it
// lapses only if nobody wrote meanwhile, and releases it on a clean stop so
// the next writer starts at once.

// Lease errors; test with errors.Is.
var (
	// ErrLeaseHeld: another owner holds an unexpired lease. The error is a
	// *LeaseHeldError naming the owner and expiry.
	ErrLeaseHeld = errors.New("replica lease held by another writer")

	// ErrLeaseLost: the lease changed since we last wrote it (taken over
	// after it expired, or deleted by hand). Stop uploading.
	ErrLeaseLost = errors.New("replica lease lost")
)

// LeaseHeldError is returned by AcquireLease while another owner's lease is
// valid. It wraps ErrLeaseHeld.
type LeaseHeldError struct {
	Owner   string
	Expires time.Time
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("%v: owner %q until %s", ErrLeaseHeld, e.Owner, e.Expires.UTC().Format(time.RFC3339))
}

func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// Lease is a held lease: its owner, expiry and the backend's token for the
// next conditional write (an S3 ETag).
type Lease struct {
	Owner   string
	Expires time.Time
	Token   string
}

// Leaser takes, renews and releases the lease on one replica path. now is
// the caller's clock: expiry is compared with it, not with the server's.
type Leaser interface {
	// AcquireLease takes the lease for owner until now+ttl, or returns a
	// *LeaseHeldError while another owner's lease is valid.
	AcquireLease(ctx context.Context, owner string, ttl time.Duration, now time.Time) (*Lease, error)
	// RenewLease extends l; an error wrapping ErrLeaseLost when it changed.
	RenewLease(ctx context.Context, l *Lease, ttl time.Duration, now time.Time) (*Lease, error)
	// ReleaseLease frees l; an error wrapping ErrLeaseLost when it changed.
	ReleaseLease(ctx context.Context, l *Lease) error
}

// LeaserOf returns the client's Leaser: nil for a backend with no leases
// (a file replica, one writer by construction of its path), an error for
// one that could fence but is configured not to.
func LeaserOf(c ReplicaClient) (Leaser, error) {
	if l, ok := c.(interface{ Leaser() (Leaser, error) }); ok {
		return l.Leaser()
	}
	return nil, nil
}
