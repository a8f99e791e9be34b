package s3test_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/replicatest"
)

// backend is a plain HTTP server counting what reaches it.
func backend(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("ETag", `"abc"`)
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(r.Method + " " + r.URL.Path + " " + string(body)))
	}))
	t.Cleanup(ts.Close)
	return ts, &hits
}

func do(t *testing.T, c *http.Client, method, url, body string) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

func TestProxyForwardsAndCounts(t *testing.T) {
	ts, hits := backend(t)
	p := s3test.StartProxy(t, ts.URL)
	c := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	resp, body, err := do(t, c, "PUT", p.URL+"/bucket/db/0000/a.ltx", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body != "PUT /bucket/db/0000/a.ltx hello" {
		t.Fatalf("through the proxy: %d %q", resp.StatusCode, body)
	}
	// The Host header reaches the backend as the client sent it (SigV4).
	if got := resp.Header.Get("X-Host"); got != strings.TrimPrefix(p.URL, "http://") {
		t.Fatalf("backend saw Host %q, client sent %q", got, strings.TrimPrefix(p.URL, "http://"))
	}
	if _, _, err := do(t, c, "GET", p.URL+"/bucket/db/0000/a.ltx?x=1", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := do(t, c, "GET", p.URL+"/bucket/", ""); err != nil {
		t.Fatal(err)
	}
	if got := p.Counts(); got["PUT"] != 1 || got["GET"] != 2 || p.Count("") != 3 || hits.Load() != 3 {
		t.Fatalf("counts %v, total %d, backend %d", got, p.Count(""), hits.Load())
	}
	recs := p.Records()
	if recs[0].Key != "db/0000/a.ltx" || !s3test.IsObjectPut(recs[0], ".ltx") || recs[1].Query != "x=1" || recs[2].Key != "" {
		t.Fatalf("records %+v", recs)
	}
	if !recs[0].Done() || recs[0].Status != 200 || recs[0].ClientStatus != 200 {
		t.Fatalf("record %+v", recs[0])
	}
	p.Reset()
	if p.Count("") != 0 {
		t.Fatal("Reset kept records")
	}
}

func TestProxyFaults(t *testing.T) {
	ts, hits := backend(t)
	p := s3test.StartProxy(t, ts.URL)
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}

	// The 2nd PUT of a .ltx key loses its reply after reaching the backend.
	drop := p.Inject(s3test.Fault{Method: "PUT", Key: ".ltx", Nth: 2, Action: s3test.DropResponse})
	for i := 1; i <= 3; i++ {
		before := hits.Load()
		_, _, err := do(t, c, "PUT", p.URL+"/b/k.ltx", "x")
		if (err != nil) != (i == 2) {
			t.Fatalf("PUT %d: err %v", i, err)
		}
		if hits.Load() != before+1 {
			t.Fatalf("PUT %d did not reach the backend", i)
		}
	}
	if p.Applied(drop) != 1 {
		t.Fatalf("drop applied %d times", p.Applied(drop))
	}
	if r := p.Records()[1]; r.Action != s3test.DropResponse || r.Status != 200 || r.ClientStatus != 0 {
		t.Fatalf("dropped record %+v", r)
	}
	p.Remove(drop)

	// Status faults reply without forwarding, with an S3 error body.
	p.Inject(s3test.Fault{Method: "GET", Action: s3test.Status, Status: 503, Times: 2})
	before := hits.Load()
	for i := 0; i < 3; i++ {
		resp, body, err := do(t, c, "GET", p.URL+"/b/k", "")
		if err != nil {
			t.Fatal(err)
		}
		want := 200
		if i < 2 {
			want = 503
			if !strings.Contains(body, "<Code>SlowDown</Code>") {
				t.Fatalf("503 body %q", body)
			}
		}
		if resp.StatusCode != want {
			t.Fatalf("GET %d: status %d, want %d", i, resp.StatusCode, want)
		}
	}
	if hits.Load() != before+1 {
		t.Fatalf("status faults reached the backend: %d", hits.Load()-before)
	}
	p.ClearFaults()

	// Reset: the client sees a reset connection, the backend nothing.
	p.Inject(s3test.Fault{Method: "DELETE", Action: s3test.Reset})
	before = hits.Load()
	if _, _, err := do(t, c, "DELETE", p.URL+"/b/k", ""); err == nil {
		t.Fatal("reset: no error")
	}
	if hits.Load() != before {
		t.Fatal("reset reached the backend")
	}

	// Delay, on every HEAD.
	p.Inject(s3test.Fault{Method: "HEAD", Action: s3test.Delay, Delay: 200 * time.Millisecond, Times: -1})
	for i := 0; i < 2; i++ {
		start := time.Now()
		if _, _, err := do(t, c, "HEAD", p.URL+"/b/k", ""); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Fatalf("HEAD %d took %v, want >= 200ms", i, d)
		}
	}

	// OnDone sees completed requests.
	got := make(chan s3test.Record, 1)
	p.OnDone(func(r s3test.Record) { got <- r })
	if _, _, err := do(t, c, "POST", p.URL+"/b/k?delete", "x"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.Method != "POST" || r.Query != "delete" || !r.Done() {
			t.Fatalf("hook record %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnDone not called")
	}
}

// Through a real versitygw: SigV4 survives the proxy, and an LTX PUT whose
// reply is lost is retried by the SDK, hits If-None-Match, and is
// recognised by its ETag as our own.
func TestProxyVersityGWLostReply(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	p := s3test.StartProxy(t, srv.Endpoint)
	c := p.Client(t, srv, "db")
	ctx := context.Background()
	if err := c.Check(ctx); err != nil {
		t.Fatal(err)
	}
	drop := p.Inject(s3test.Fault{Method: "PUT", Key: ".ltx", Action: s3test.DropResponse})
	body := replicatest.NewFile(t, 1, 1, time.Now())
	if _, err := c.WriteLTXFile(ctx, 0, 1, 1, bytes.NewReader(body)); err != nil {
		t.Fatalf("write with a lost reply: %v", err)
	}
	if p.Applied(drop) != 1 {
		t.Fatalf("fault applied %d times", p.Applied(drop))
	}
	puts := p.CountFunc(func(r s3test.Record) bool { return s3test.IsObjectPut(r, ".ltx") })
	pf := p.CountFunc(func(r s3test.Record) bool { return r.Method == "PUT" && r.ClientStatus == 412 })
	if puts != 2 || pf != 1 {
		t.Fatalf("%d PUTs (want 2), %d answered 412 (want 1): %+v", puts, pf, p.Records())
	}
	// A different body at the same key is a conflict, not ours.
	other := replicatest.NewFile(t, 1, 1, time.Now().Add(time.Hour))
	if _, err := c.WriteLTXFile(ctx, 0, 1, 1, bytes.NewReader(other)); !errors.Is(err, replica.ErrConflict) {
		t.Fatalf("different bytes at the same key: %v, want ErrConflict", err)
	}
	infos, err := c.LTXFiles(ctx, 0, 0)
	if err != nil || len(infos) != 1 || infos[0].MaxTXID != ltx.TXID(1) {
		t.Fatalf("listing %v %v", infos, err)
	}
}
