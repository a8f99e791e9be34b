package s3test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	lfs3 "github.com/litefs-dev/litefs/replica/s3"
)

// Action is what a Fault does to a request it matches.
type Action int

const (
	// Forward passes the request through unchanged (the zero Action; a
	// Record of an untouched request carries it).
	Forward Action = iota
	// DropResponse forwards the request, waits for the whole response, then
	// closes the client's connection without replying: the server did the
	// work, the client never learns it (a reply lost on the way back).
	DropResponse
	// Status replies with Fault.Status and an S3 XML error body without
	// forwarding (500 InternalError, 503 SlowDown, ...).
	Status
	// Delay waits Fault.Delay, then forwards.
	Delay
	// Reset resets the client's TCP connection (RST) without forwarding.
	Reset
)

func (a Action) String() string {
	switch a {
	case Forward:
		return "forward"
	case DropResponse:
		return "drop-response"
	case Status:
		return "status"
	case Delay:
		return "delay"
	case Reset:
		return "reset"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Fault injects an Action into the requests it matches. A request matches
// when Method (if set) equals its method, Key (if set) is a substring of
// its object key, and Match (if set) returns true. Among the matching
// requests, the fault applies to the Nth (1-based; 0 means the first) and
// the Times-1 after it (Times 0 means 1; a negative Times means every one
// from the Nth on).
type Fault struct {
	Method string
	Key    string
	Match  func(r *http.Request) bool
	Nth    int
	Times  int
	Action Action
	Status int           // for Status; 0 means 500
	Delay  time.Duration // for Delay

	seen, applied int // guarded by Proxy.mu
}

// Record is one request the proxy received.
type Record struct {
	Seq    int
	Method string
	Key    string // object key: the path without the leading /bucket/ (path-style)
	Path   string
	Query  string
	// Header holds the request's conditional headers (If-None-Match,
	// If-Match) and Range, as sent.
	Header http.Header
	Action Action
	// Status is the backend's reply status (0 if not forwarded or the
	// backend failed); ClientStatus is what the client got (0 for a dropped
	// reply or a reset).
	Status, ClientStatus int
	Err                  string
	Start, End           time.Time // End is zero while in flight
}

// Done reports whether the request completed.
func (r Record) Done() bool { return !r.End.IsZero() }

// Proxy is a reverse proxy on 127.0.0.1 in front of an S3 endpoint. It
// forwards requests with their Host header untouched (SigV4 signs it), so
// clients configured with the proxy's URL talk to the backend through it.
// It records every request, counts them by method, and injects Faults that
// can be changed at any time. It is closed in t.Cleanup.
type Proxy struct {
	URL    string // http://127.0.0.1:PORT
	target *url.URL
	ln     net.Listener
	srv    *http.Server
	tr     *http.Transport

	mu      sync.Mutex
	records []Record
	faults  []*Fault
	hook    func(Record)
	base    int // Seq of records[0]
}

// StartProxy starts a proxy in front of target (e.g. Server.Endpoint).
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		t.Fatalf("s3test: proxy target %q: %v", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("s3test: proxy listen: %v", err)
	}
	p := &Proxy{
		URL:    "http://" + ln.Addr().String(),
		target: u,
		ln:     ln,
		tr: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(p.Close)
	return p
}

// Close stops the proxy and drops its connections.
func (p *Proxy) Close() {
	_ = p.srv.Close()
	p.tr.CloseIdleConnections()
}

// Config returns s's client config for path, reaching s through the proxy.
func (p *Proxy) Config(s *Server, path string) lfs3.Config {
	c := s.Config(path)
	c.Endpoint = p.URL
	return c
}

// Client returns a client for path on s through the proxy.
func (p *Proxy) Client(t testing.TB, s *Server, path string) *lfs3.Client {
	t.Helper()
	c, err := lfs3.NewClient(context.Background(), p.Config(s, path))
	if err != nil {
		t.Fatalf("s3test: new client: %v", err)
	}
	return c
}

// Inject adds a fault and returns it (pass it to Remove or Applied).
func (p *Proxy) Inject(f Fault) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	fp := &f
	p.faults = append(p.faults, fp)
	return fp
}

// Remove removes a fault.
func (p *Proxy) Remove(f *Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, g := range p.faults {
		if g == f {
			p.faults = append(p.faults[:i], p.faults[i+1:]...)
			return
		}
	}
}

// ClearFaults removes every fault.
func (p *Proxy) ClearFaults() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = nil
}

// Applied returns how many requests f was applied to.
func (p *Proxy) Applied(f *Fault) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return f.applied
}

// OnDone sets a function called (outside the proxy's lock) with each
// request's record when it completes; nil removes it.
func (p *Proxy) OnDone(fn func(Record)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = fn
}

// Records returns the requests received since the last Reset, completed or
// in flight, in arrival order.
func (p *Proxy) Records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Record, len(p.records))
	copy(out, p.records)
	for i := range out {
		out[i].Header = out[i].Header.Clone()
	}
	return out
}

// Count returns how many requests with method ("" for all) arrived since
// the last Reset.
func (p *Proxy) Count(method string) int {
	return p.CountFunc(func(r Record) bool { return method == "" || r.Method == method })
}

// CountFunc returns how many requests since the last Reset satisfy fn.
func (p *Proxy) CountFunc(fn func(Record) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.records {
		if fn(r) {
			n++
		}
	}
	return n
}

// Counts returns the number of requests by method since the last Reset.
func (p *Proxy) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]int{}
	for _, r := range p.records {
		m[r.Method]++
	}
	return m
}

// Reset forgets the recorded requests (faults stay).
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.base += len(p.records)
	p.records = nil
}

// IsObjectPut reports whether r is a single-request object upload (PUT
// without a multipart upload id) of a key ending with suffix.
func IsObjectPut(r Record, suffix string) bool {
	return r.Method == http.MethodPut && strings.HasSuffix(r.Key, suffix) && !strings.Contains(r.Query, "uploadId=")
}

func (p *Proxy) key(path string) string {
	k := strings.TrimPrefix(path, "/")
	if i := strings.IndexByte(k, '/'); i >= 0 {
		return k[i+1:]
	}
	return ""
}

// begin records the request's arrival and picks the fault to apply.
func (p *Proxy) begin(r *http.Request) (int, *Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rec := Record{
		Seq: p.base + len(p.records), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Key: p.key(r.URL.Path), Header: http.Header{}, Start: time.Now(),
	}
	for _, h := range []string{"If-None-Match", "If-Match", "Range"} {
		if v := r.Header.Values(h); len(v) > 0 {
			rec.Header[h] = append([]string(nil), v...)
		}
	}
	var apply *Fault
	for _, f := range p.faults {
		if f.Method != "" && f.Method != r.Method {
			continue
		}
		if f.Key != "" && !strings.Contains(rec.Key, f.Key) {
			continue
		}
		if f.Match != nil && !f.Match(r) {
			continue
		}
		f.seen++
		nth := max(f.Nth, 1)
		times := f.Times
		if times == 0 {
			times = 1
		}
		if apply == nil && f.seen >= nth && (times < 0 || f.seen < nth+times) {
			apply = f
			f.applied++
		}
	}
	if apply != nil {
		rec.Action = apply.Action
	}
	p.records = append(p.records, rec)
	return rec.Seq, apply
}

// end completes the request's record and calls the hook.
func (p *Proxy) end(seq int, status, clientStatus int, err error) {
	p.mu.Lock()
	i := seq - p.base
	if i < 0 || i >= len(p.records) {
		p.mu.Unlock() // recorded before a Reset
		return
	}
	rec := &p.records[i]
	rec.Status, rec.ClientStatus, rec.End = status, clientStatus, time.Now()
	if err != nil {
		rec.Err = err.Error()
	}
	done := *rec
	done.Header = done.Header.Clone()
	hook := p.hook
	p.mu.Unlock()
	if hook != nil {
		hook(done)
	}
}

var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	seq, f := p.begin(r)
	if f != nil {
		switch f.Action {
		case Status:
			code := f.Status
			if code == 0 {
				code = http.StatusInternalServerError
			}
			_, _ = io.Copy(io.Discard, r.Body)
			writeS3Error(w, code)
			p.end(seq, 0, code, nil)
			return
		case Reset:
			_, _ = io.Copy(io.Discard, r.Body)
			resetConn(w)
			p.end(seq, 0, 0, errors.New("connection reset by the proxy"))
			return
		case Delay:
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				p.end(seq, 0, 0, r.Context().Err())
				return
			}
		}
	}

	out, err := p.outRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		p.end(seq, 0, http.StatusBadGateway, err)
		return
	}
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		p.end(seq, 0, http.StatusBadGateway, err)
		return
	}
	defer resp.Body.Close()

	if f != nil && f.Action == DropResponse {
		// The backend has done the work; the client never hears of it.
		_, _ = io.Copy(io.Discard, resp.Body)
		closeConn(w, false)
		p.end(seq, resp.StatusCode, 0, errors.New("reply dropped by the proxy"))
		return
	}

	h := w.Header()
	for k, v := range resp.Header {
		h[k] = append([]string(nil), v...)
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	w.WriteHeader(resp.StatusCode)
	_, err = io.Copy(w, resp.Body)
	p.end(seq, resp.StatusCode, resp.StatusCode, err)
}

func (p *Proxy) outRequest(r *http.Request) (*http.Request, error) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = p.target.Scheme
	out.URL.Host = p.target.Host
	out.Host = r.Host // SigV4 signed it
	for _, k := range hopHeaders {
		out.Header.Del(k)
	}
	out.ContentLength = r.ContentLength
	if r.ContentLength == 0 {
		out.Body = nil
	} else {
		out.Body = r.Body
	}
	return out, nil
}

func writeS3Error(w http.ResponseWriter, code int) {
	s3code := "InternalError"
	switch code {
	case http.StatusServiceUnavailable:
		s3code = "SlowDown"
	case http.StatusForbidden:
		s3code = "AccessDenied"
	case http.StatusConflict:
		s3code = "ConditionalRequestConflict"
	case http.StatusPreconditionFailed:
		s3code = "PreconditionFailed"
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>injected by the s3test proxy</Message><RequestId>s3test</RequestId></Error>`, s3code)
}

func resetConn(w http.ResponseWriter) { closeConn(w, true) }

// closeConn hijacks the client's connection and closes it, with an RST
// when reset is true.
func closeConn(w http.ResponseWriter, reset bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("s3test: proxy: connection cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
