package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/litefs-dev/litefs/replica"
)

// ErrNoConditionalWrites: leases need conditional writes, which the
// config turned off. Nothing fences a second writer then.
var ErrNoConditionalWrites = errors.New("leases need conditional writes (conditional-writes = false): fencing is off")

// Leaser is the client as a replica.Leaser, or ErrNoConditionalWrites when
// conditional writes are off.
func (c *Client) Leaser() (replica.Leaser, error) {
	if !c.cfg.ConditionalWrites {
		return nil, ErrNoConditionalWrites
	}
	return c, nil
}

// leaseDoc is lock.json.
type leaseDoc struct {
	Owner    string    `json:"owner"`
	Expires  time.Time `json:"expires"`
	Released bool      `json:"released,omitempty"`
}

func (d leaseDoc) same(o leaseDoc) bool {
	return d.Owner == o.Owner && d.Released == o.Released && d.Expires.Equal(o.Expires)
}

func (d leaseDoc) free(owner string, now time.Time) bool {
	return d.Released || d.Owner == owner || !now.Before(d.Expires)
}

// LeaseKey is the lock object's key: <path>/lock.json.
func (c *Client) LeaseKey() string { return c.cfg.Path + "/lock.json" }

// AcquireLease takes the lease for owner until now+ttl: it creates lock.json
// with If-None-Match: *, or, when the lock exists but is released, expired
// at now, or already owner's, replaces it with If-Match on its ETag. While
// another owner's lease is valid it returns a *replica.LeaseHeldError. Callers that
// fear clock skew pass a now a margin later than their clock.
func (c *Client) AcquireLease(ctx context.Context, owner string, ttl time.Duration, now time.Time) (*replica.Lease, error) {
	if !c.cfg.ConditionalWrites {
		return nil, ErrNoConditionalWrites
	}
	if owner == "" || ttl <= 0 {
		return nil, fmt.Errorf("s3: acquire lease: need an owner and a positive ttl")
	}
	want := leaseDoc{Owner: owner, Expires: now.Add(ttl).UTC().Round(0)}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		etag, err := c.putLease(ctx, want, "", true)
		if err == nil {
			return &replica.Lease{Owner: owner, Expires: want.Expires, Token: etag}, nil
		}
		if !isPreconditionFailed(err) {
			return nil, c.wrap("acquire lease", c.LeaseKey(), err)
		}
		cur, curETag, err := c.getLease(ctx)
		if isNotFound(err) {
			lastErr = err
			continue // released by delete in between: create again
		} else if err != nil {
			return nil, err
		}
		if !cur.free(owner, now) {
			return nil, &replica.LeaseHeldError{Owner: cur.Owner, Expires: cur.Expires}
		}
		etag, err = c.putLease(ctx, want, curETag, false)
		if err == nil {
			return &replica.Lease{Owner: owner, Expires: want.Expires, Token: etag}, nil
		}
		if !isPreconditionFailed(err) && !isNotFound(err) {
			return nil, c.wrap("take over lease", c.LeaseKey(), err)
		}
		lastErr = err // raced with another writer or our own lost reply: look again
	}
	return nil, fmt.Errorf("s3: acquire lease s3://%s/%s: lock keeps changing: %w", c.cfg.Bucket, c.LeaseKey(), lastErr)
}

// RenewLease extends l to now+ttl with If-Match on its ETag. If the lock
// changed since, it returns an error wrapping replica.ErrLeaseLost.
func (c *Client) RenewLease(ctx context.Context, l *replica.Lease, ttl time.Duration, now time.Time) (*replica.Lease, error) {
	if !c.cfg.ConditionalWrites {
		return nil, ErrNoConditionalWrites
	}
	want := leaseDoc{Owner: l.Owner, Expires: now.Add(ttl).UTC().Round(0)}
	etag, err := c.replaceLease(ctx, l, want, "renew")
	if err != nil {
		return nil, err
	}
	return &replica.Lease{Owner: l.Owner, Expires: want.Expires, Token: etag}, nil
}

// ReleaseLease gives l up so the next writer starts at once. It overwrites
// lock.json with a released lease using If-Match on l's ETag, rather than
// deleting it: a conditional PUT is honoured by every store that has
// conditional writes, while If-Match on DELETE is newer and a store that
// ignores it would delete another writer's lease. If the lock changed since,
// it returns an error wrapping replica.ErrLeaseLost and leaves it alone.
func (c *Client) ReleaseLease(ctx context.Context, l *replica.Lease) error {
	if !c.cfg.ConditionalWrites {
		return ErrNoConditionalWrites
	}
	_, err := c.replaceLease(ctx, l, leaseDoc{Owner: l.Owner, Expires: time.Unix(0, 0).UTC(), Released: true}, "release")
	return err
}

// replaceLease writes want over l with If-Match. A 412 whose lock holds
// exactly want is our own write whose reply was lost (the SDK retried it).
func (c *Client) replaceLease(ctx context.Context, l *replica.Lease, want leaseDoc, op string) (string, error) {
	etag, err := c.putLease(ctx, want, l.Token, false)
	if err == nil {
		return etag, nil
	}
	if !isPreconditionFailed(err) && !isNotFound(err) {
		return "", c.wrap(op+" lease", c.LeaseKey(), err)
	}
	cur, curETag, gerr := c.getLease(ctx)
	switch {
	case isNotFound(gerr):
		return "", fmt.Errorf("s3: %s lease s3://%s/%s: lock deleted: %w", op, c.cfg.Bucket, c.LeaseKey(), replica.ErrLeaseLost)
	case gerr != nil:
		return "", gerr
	case cur.same(want):
		return curETag, nil
	}
	return "", fmt.Errorf("s3: %s lease s3://%s/%s: now owner %q until %s: %w",
		op, c.cfg.Bucket, c.LeaseKey(), cur.Owner, cur.Expires.Format(time.RFC3339), replica.ErrLeaseLost)
}

// putLease writes lock.json with If-None-Match: * (create) or If-Match:
// ifMatch, retrying 409s, and returns the new ETag.
func (c *Client) putLease(ctx context.Context, d leaseDoc, ifMatch string, create bool) (string, error) {
	body, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	var etag string
	err = retryConflicts(ctx, func() error {
		in := &s3.PutObjectInput{
			Bucket:        aws.String(c.cfg.Bucket),
			Key:           aws.String(c.LeaseKey()),
			Body:          bytes.NewReader(body),
			ContentLength: aws.Int64(int64(len(body))),
			ContentType:   aws.String("application/json"),
		}
		if create {
			in.IfNoneMatch = aws.String("*")
		} else {
			in.IfMatch = aws.String(ifMatch)
		}
		out, err := c.s3.PutObject(ctx, in)
		if err != nil {
			return err
		}
		etag = aws.ToString(out.ETag)
		return nil
	})
	if err != nil || etag != "" {
		return etag, err
	}
	// No ETag in the reply: read it back (what we read must be what we wrote).
	cur, curETag, err := c.getLease(ctx)
	if err != nil {
		return "", err
	}
	if !cur.same(d) || curETag == "" {
		return "", fmt.Errorf("s3: lease s3://%s/%s: server returned no ETag: %w", c.cfg.Bucket, c.LeaseKey(), replica.ErrLeaseLost)
	}
	return curETag, nil
}

// getLease reads lock.json and its ETag. A missing lock is returned as is
// (test with isNotFound); call sites wrap it.
func (c *Client) getLease(ctx context.Context) (leaseDoc, string, error) {
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.cfg.Bucket), Key: aws.String(c.LeaseKey())})
	if err != nil {
		if isNotFound(err) {
			return leaseDoc{}, "", err
		}
		return leaseDoc{}, "", c.wrap("get lease", c.LeaseKey(), err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 64<<10))
	if err != nil {
		return leaseDoc{}, "", c.wrap("get lease", c.LeaseKey(), err)
	}
	var d leaseDoc
	if err := json.Unmarshal(b, &d); err != nil || d.Owner == "" {
		return leaseDoc{}, "", fmt.Errorf("s3: lease s3://%s/%s is not a litefs lease (fix or delete it by hand): %q", c.cfg.Bucket, c.LeaseKey(), truncate(b, 200))
	}
	d.Expires = d.Expires.UTC()
	return d, aws.ToString(out.ETag), nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
