package e2e

import (
	"strings"
	"testing"
)

// The control endpoints of a real `litefs mount`: POST /debug/snapshot
// without the [http] token is 401 (even from loopback), with it 200; pprof
// is off unless configured; probes and /metrics need no token.
func TestHTTPControlNeedsToken(t *testing.T) {
	e := newEnv(t, "0s")
	t.Setenv("LITEFS_TEST_HTTP_TOKEN", "s3cr3t-token")
	e.httpExtra = `token = "${LITEFS_TEST_HTTP_TOKEN}"`
	e.startProcess()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (x)`)

	do := func(method, path, token string) (int, string) {
		t.Helper()
		return httpDo(t, method, e.procAddr, path, token)
	}
	if code, body := do("POST", "/debug/snapshot", ""); code != 401 || !strings.Contains(body, "Bearer") {
		t.Fatalf("snapshot without token: %d %q, want 401 naming the bearer token", code, body)
	}
	if code, body := do("POST", "/debug/snapshot", "wrong"); code != 401 {
		t.Fatalf("snapshot with a wrong token: %d %q, want 401", code, body)
	}
	if code, body := do("POST", "/debug/snapshot", "s3cr3t-token"); code != 200 || !strings.HasPrefix(body, "db ") {
		t.Fatalf("snapshot with the token: %d %q, want 200 and the TXID", code, body)
	}
	if code, body := do("GET", "/debug/pprof/", "s3cr3t-token"); code != 404 || !strings.Contains(body, "pprof = true") {
		t.Fatalf("pprof by default: %d %q, want 404 saying how to turn it on", code, body)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, body := do("GET", p, ""); code != 200 {
			t.Fatalf("%s without token: %d %q, want 200", p, code, body)
		}
	}
}
