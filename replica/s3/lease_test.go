package s3_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica"
	lfs3 "github.com/litefs-dev/litefs/replica/s3"
)

func TestLease(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *s3test.Server) {
		ctx := context.Background()
		a, b := srv.Client(t, "db"), srv.Client(t, "db")
		now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		const ttl = 30 * time.Second

		la, err := a.AcquireLease(ctx, "vol-a", ttl, now)
		if err != nil {
			t.Fatal(err)
		}
		if la.Owner != "vol-a" || !la.Expires.Equal(now.Add(ttl)) || la.Token == "" {
			t.Fatalf("lease = %+v", la)
		}

		// Held: another owner is refused and told who holds it until when.
		_, err = b.AcquireLease(ctx, "vol-b", ttl, now.Add(ttl-time.Second))
		var held *replica.LeaseHeldError
		if !errors.Is(err, replica.ErrLeaseHeld) || !errors.As(err, &held) || held.Owner != "vol-a" || !held.Expires.Equal(now.Add(ttl)) {
			t.Fatalf("acquire of a held lease: err = %v", err)
		}

		// The same owner (a restarted daemon on the same volume) takes it back.
		la, err = a.AcquireLease(ctx, "vol-a", ttl, now.Add(time.Second))
		if err != nil {
			t.Fatalf("re-acquire by owner: %v", err)
		}

		// Renew moves the expiry; the old ETag is then stale.
		old := la
		la, err = a.RenewLease(ctx, la, ttl, now.Add(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if !la.Expires.Equal(now.Add(10*time.Second + ttl)) {
			t.Fatalf("renewed until %s", la.Expires)
		}
		if _, err := a.RenewLease(ctx, old, ttl, now); !errors.Is(err, replica.ErrLeaseLost) {
			t.Fatalf("renew with a stale ETag: err = %v, want ErrLeaseLost", err)
		}

		// Expired: another owner takes it over; the old holder has lost it.
		lb, err := b.AcquireLease(ctx, "vol-b", ttl, la.Expires)
		if err != nil {
			t.Fatalf("takeover of an expired lease: %v", err)
		}
		if _, err := a.RenewLease(ctx, la, ttl, la.Expires); !errors.Is(err, replica.ErrLeaseLost) {
			t.Fatalf("renew after takeover: err = %v, want ErrLeaseLost", err)
		}
		if err := a.ReleaseLease(ctx, la); !errors.Is(err, replica.ErrLeaseLost) {
			t.Fatalf("release after takeover: err = %v, want ErrLeaseLost", err)
		}
		// ...and its failed release left b's lease in place.
		if _, err := a.AcquireLease(ctx, "vol-a", ttl, lb.Expires.Add(-time.Second)); !errors.Is(err, replica.ErrLeaseHeld) {
			t.Fatalf("acquire after a lost release: err = %v, want ErrLeaseHeld", err)
		}

		// Release: the next writer starts at once, well before the TTL.
		if err := b.ReleaseLease(ctx, lb); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AcquireLease(ctx, "vol-a", ttl, lb.Expires.Add(-20*time.Second)); err != nil {
			t.Fatalf("acquire after release: %v", err)
		}
	})
}

// Writers racing for a free lease: exactly one wins.
func TestLeaseRace(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *s3test.Server) {
		now := time.Now()
		for round := 0; round < 3; round++ {
			path := fmt.Sprintf("race%d", round)
			var wg sync.WaitGroup
			var mu sync.Mutex
			var winners []string
			for i := 0; i < 8; i++ {
				c := srv.Client(t, path)
				owner := fmt.Sprintf("vol-%d", i)
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := c.AcquireLease(context.Background(), owner, time.Minute, now)
					switch {
					case err == nil:
						mu.Lock()
						winners = append(winners, owner)
						mu.Unlock()
					case !errors.Is(err, replica.ErrLeaseHeld):
						t.Errorf("%s: %v", owner, err)
					}
				}()
			}
			wg.Wait()
			if len(winners) != 1 {
				t.Fatalf("round %d: winners %v, want exactly one", round, winners)
			}
		}
	})
}

func TestLeaseNeedsConditionalWrites(t *testing.T) {
	srv := s3test.StartGoFakeS3(t)
	cfg := srv.Config("db")
	cfg.ConditionalWrites = false
	c, err := lfs3.NewClient(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AcquireLease(context.Background(), "vol-a", time.Minute, time.Now()); !errors.Is(err, lfs3.ErrNoConditionalWrites) {
		t.Fatalf("err = %v, want ErrNoConditionalWrites", err)
	}
}
