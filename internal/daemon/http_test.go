package daemon

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/fs"
)

func TestControlAccess(t *testing.T) {
	for _, tc := range []struct {
		name, token, remote, auth string
		pprof                     bool
		path                      string
		want                      int
	}{
		{"no token, loopback", "", "127.0.0.1:5000", "", true, "/debug/pprof/cmdline", 200},
		{"no token, loopback v6", "", "[::1]:5000", "", true, "/debug/pprof/cmdline", 200},
		{"no token, remote", "", "10.1.2.3:5000", "", true, "/debug/pprof/cmdline", 403},
		{"token, remote, right", "tok", "10.1.2.3:5000", "Bearer tok", true, "/debug/pprof/cmdline", 200},
		{"token, remote, missing", "tok", "10.1.2.3:5000", "", true, "/debug/pprof/cmdline", 401},
		{"token, loopback, missing", "tok", "127.0.0.1:5000", "", true, "/debug/pprof/cmdline", 401},
		{"token, wrong scheme", "tok", "10.1.2.3:5000", "Basic tok", true, "/debug/pprof/cmdline", 401},
		{"token, prefix of it", "tok", "10.1.2.3:5000", "Bearer to", true, "/debug/pprof/cmdline", 401},
		{"pprof off", "", "127.0.0.1:5000", "", false, "/debug/pprof/cmdline", 404},
		{"snapshot remote no token", "", "10.1.2.3:5000", "", false, "/debug/snapshot", 403},
		{"metrics remote", "tok", "10.1.2.3:5000", "", false, "/metrics", 200},
		{"status remote", "tok", "10.1.2.3:5000", "", false, "/status", 200},
		{"healthz remote", "tok", "10.1.2.3:5000", "", false, "/healthz", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dm := New(&config.Config{HTTP: config.HTTPConfig{Token: tc.token, Pprof: tc.pprof}}, nil)
			method := "GET"
			if tc.path == "/debug/snapshot" {
				method = "POST"
			}
			req := httptest.NewRequest(method, tc.path, nil)
			req.RemoteAddr = tc.remote
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			dm.handler().ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("%s %s from %s: %d %q, want %d", method, tc.path, tc.remote, rec.Code, strings.TrimSpace(rec.Body.String()), tc.want)
			}
		})
	}
}

// litefs_fuse_op_seconds is served with one series per operation, and not
// at all with [fuse] op-metrics = false.
func TestOpMetricsSwitch(t *testing.T) {
	for _, on := range []bool{true, false} {
		dm := New(&config.Config{FUSE: config.FUSEConfig{OpMetrics: &on}}, nil)
		if dm.observeOp() != nil != on {
			t.Fatalf("op-metrics = %v: observer set = %v", on, dm.observeOp() != nil)
		}
		if on {
			dm.observeOp()(fs.OpWrite, 30*time.Microsecond)
		}
		rec := httptest.NewRecorder()
		dm.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body := rec.Body.String()
		has := strings.Contains(body, `litefs_fuse_op_seconds_count{op="write"} 1`)
		if has != on || strings.Contains(body, "litefs_fuse_op_seconds") != on {
			t.Fatalf("op-metrics = %v, /metrics:\n%s", on, body)
		}
	}
}
