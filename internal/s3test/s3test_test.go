package s3test_test

import (
	"context"
	"strings"
	"syscall"
	"testing"

	"github.com/litefs-dev/litefs/internal/s3test"
)

func TestFindVersityGW(t *testing.T) {
	if _, err := s3test.FindVersityGW(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VERSITYGW", "/nonexistent/versitygw")
	if _, err := s3test.FindVersityGW(); err == nil || !strings.Contains(err.Error(), "VERSITYGW") {
		t.Fatalf("err = %v", err)
	}
}

func TestServers(t *testing.T) {
	for name, start := range map[string]func(testing.TB) *s3test.Server{
		"versitygw": s3test.StartVersityGW,
		"gofakes3":  s3test.StartGoFakeS3,
	} {
		t.Run(name, func(t *testing.T) {
			srv := start(t)
			if !strings.HasPrefix(srv.Endpoint, "http://127.0.0.1:") {
				t.Fatalf("endpoint %s", srv.Endpoint)
			}
			if err := srv.Client(t, "db").Check(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The server is gone once the test's cleanup ran, even if it was paused.
func TestVersityGWStops(t *testing.T) {
	var srv *s3test.Server
	t.Run("run", func(t *testing.T) {
		srv = s3test.StartVersityGW(t)
		srv.Pause(t)
	})
	if err := syscall.Kill(srv.Pid, 0); err == nil {
		t.Fatalf("versitygw %d still running after cleanup", srv.Pid)
	}
}
