package litefs

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/testenv"
)

// An outage is logged once when it starts, again once a minute with how
// long it has lasted, and once when it ends; retries in between only at
// debug level.
func TestOutageLog(t *testing.T) {
	var buf testenv.LogBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil)) // info and up
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var o outage
	boom := errors.New("connection refused")
	for i := 0; i < 130; i++ { // a retry a second for 130 s
		o.failed(log, now, 4096, boom, time.Second)
		now = now.Add(time.Second)
	}
	o.ended(log, now)
	o.ended(log, now) // no second "reachable again"
	out := buf.String()
	if n := strings.Count(out, "replica unreachable;"); n != 1 {
		t.Fatalf("start of the outage logged %d times:\n%s", n, out)
	}
	if n := strings.Count(out, "replica still unreachable"); n != 2 {
		t.Fatalf("%d reminders in 130 s, want 2 (at 60 s and 120 s):\n%s", n, out)
	}
	for _, want := range []string{"for=1m0s", "for=2m0s", "staged_bytes=4096", "replica reachable again", "after=2m10s"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log does not say %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "reachable again"); n != 1 {
		t.Fatalf("end of the outage logged %d times", n)
	}
}
