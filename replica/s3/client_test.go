package s3_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/replicatest"
	lfs3 "github.com/litefs-dev/litefs/replica/s3"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, bucket, path, err string
	}{
		{in: "s3://bucket/db", bucket: "bucket", path: "db"},
		{in: "s3://my.bucket/a/b/c/", bucket: "my.bucket", path: "a/b/c"},
		{in: "S3://bucket//db", bucket: "bucket", path: "db"},
		{in: "s3://bucket/a//b", err: "an empty, . or .. path segment"},
		{in: "s3://bucket", err: "no path inside the bucket"},
		{in: "s3://bucket/", err: "no path inside the bucket"},
		{in: "s3:///db", err: "has no bucket"},
		{in: "file:///tmp/x", err: "want s3://bucket/path"},
		{in: "s3://bucket/db?endpoint=x", err: "query parameters"},
		{in: "s3://key:hunter2@bucket/db", err: "credentials"},
		{in: "s3://localhost:9000/db", err: "set the server as endpoint"},
		{in: "s3://bucket/a/../b", err: ".."},
	} {
		bucket, path, err := lfs3.ParseURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURL(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("ParseURL(%q) leaks the secret: %v", tc.in, err)
			}
			continue
		}
		if err != nil || bucket != tc.bucket || path != tc.path {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q", tc.in, bucket, path, err, tc.bucket, tc.path)
		}
	}
}

func TestNewClientErrors(t *testing.T) {
	ctx := context.Background()
	ok := lfs3.Config{Bucket: "b", Path: "db", Endpoint: "http://127.0.0.1:1", AccessKeyID: "k", SecretAccessKey: "s"}
	for name, tc := range map[string]struct {
		mod  func(*lfs3.Config)
		env  map[string]string
		want string
	}{
		"no bucket":      {mod: func(c *lfs3.Config) { c.Bucket = "" }, want: "missing bucket"},
		"no path":        {mod: func(c *lfs3.Config) { c.Path = "/" }, want: "missing path"},
		"bad endpoint":   {mod: func(c *lfs3.Config) { c.Endpoint = "ftp://x" }, want: "endpoint"},
		"half key":       {mod: func(c *lfs3.Config) { c.SecretAccessKey = "" }, want: "only one of the pair"},
		"half env key":   {mod: func(c *lfs3.Config) { c.AccessKeyID, c.SecretAccessKey = "", "" }, env: map[string]string{"LITEFS_ACCESS_KEY_ID": "k"}, want: "LITEFS_ACCESS_KEY_ID"},
		"missing bundle": {env: map[string]string{"AWS_CA_BUNDLE": "/nonexistent/ca.pem"}, want: "AWS_CA_BUNDLE"},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg := ok
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			_, err := lfs3.NewClient(ctx, cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestConfigHidesSecret(t *testing.T) {
	cfg := lfs3.Config{Bucket: "b", Path: "p", AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "topsecretvalue"}
	for _, s := range []string{cfg.String(), fmt.Sprint(cfg), fmt.Sprintf("%v", cfg), cfg.LogValue().String()} {
		if strings.Contains(s, "topsecretvalue") {
			t.Fatalf("secret in %q", s)
		}
	}
}

// AWS_CA_BUNDLE set (as on this machine and many CI images) must not break
// NewClient: a custom *http.Client would make LoadDefaultConfig fail.
func TestCABundleEnv(t *testing.T) {
	srv := s3test.StartGoFakeS3(t)
	t.Setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
	c, err := lfs3.NewClient(context.Background(), srv.Config("db"))
	if err != nil {
		t.Fatalf("NewClient with AWS_CA_BUNDLE: %v", err)
	}
	if err := c.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestEnvCredentials(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	cfg := srv.Config("db")
	cfg.AccessKeyID, cfg.SecretAccessKey = "", ""
	t.Setenv("AWS_ACCESS_KEY_ID", "wrong")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	for _, prefix := range []string{"LITEFS", "LITESTREAM"} {
		t.Run(prefix, func(t *testing.T) {
			t.Setenv(prefix+"_ACCESS_KEY_ID", srv.AccessKey)
			t.Setenv(prefix+"_SECRET_ACCESS_KEY", srv.SecretKey)
			c, err := lfs3.NewClient(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Check(context.Background()); err != nil {
				t.Fatalf("check with %s_* credentials: %v", prefix, err)
			}
		})
	}
}

func TestBadCredentials(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	cfg := srv.Config("db")
	cfg.SecretAccessKey = "not-the-secret"
	c, err := lfs3.NewClient(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Check(context.Background())
	if !errors.Is(err, lfs3.ErrAccessDenied) || !strings.Contains(err.Error(), "check the access key id") {
		t.Fatalf("check with a wrong secret: err = %v, want ErrAccessDenied with a hint", err)
	}
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Fatalf("error leaks the secret: %v", err)
	}
	b := replicatest.NewFile(t, 1, 1, time.Now())
	if _, err := c.WriteLTXFile(context.Background(), 0, 1, 1, strings.NewReader(string(b))); !errors.Is(err, lfs3.ErrAccessDenied) {
		t.Fatalf("write with a wrong secret: err = %v, want ErrAccessDenied", err)
	}
}

func TestMissingBucket(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	cfg := srv.Config("db")
	cfg.Bucket = "no-such-bucket"
	c, err := lfs3.NewClient(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(context.Background()); !errors.Is(err, lfs3.ErrNoSuchBucket) {
		t.Fatalf("err = %v, want ErrNoSuchBucket", err)
	}
	if _, err := c.OpenLTXFile(context.Background(), 0, 1, 1, 0, 0); errors.Is(err, replica.ErrNotFound) || !errors.Is(err, lfs3.ErrNoSuchBucket) {
		t.Fatalf("open in a missing bucket: err = %v, want ErrNoSuchBucket and not ErrNotFound", err)
	}
}

// A stopped server (SIGSTOP: the port accepts, nothing answers) must not
// hang a caller with a deadline, and the client works again after it resumes.
func TestHungServer(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	c := srv.Client(t, "db")
	srv.Pause(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.LTXFiles(ctx, 0, 0)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("list on a stopped server: err = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("list on a stopped server took %s", d)
	}
	srv.Resume(t)
	if _, err := c.LTXFiles(context.Background(), 0, 0); err != nil {
		t.Fatalf("list after resume: %v", err)
	}
}

// fakeS3 serves gofakes3 behind a middleware, to inject replies real servers
// give rarely: opaque ETags (SSE-KMS), 409 ConditionalRequestConflict.
func fakeS3(t *testing.T, mw func(http.Handler) http.Handler) *s3test.Server {
	backend := s3mem.New()
	if err := backend.CreateBucket(s3test.DefaultBucket); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(mw(gofakes3.New(backend).Server()))
	t.Cleanup(ts.Close)
	return &s3test.Server{Endpoint: ts.URL, Bucket: s3test.DefaultBucket, AccessKey: "a", SecretKey: "b", Region: "us-east-1"}
}

// etagWriter replaces the ETag header of every reply.
type etagWriter struct{ http.ResponseWriter }

func (w etagWriter) WriteHeader(code int) {
	if w.Header().Get("ETag") != "" {
		w.Header().Set("ETag", `"opaque-not-an-md5"`)
	}
	w.ResponseWriter.WriteHeader(code)
}

func TestOpaqueETags(t *testing.T) {
	srv := fakeS3(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(etagWriter{w}, r) })
	})
	c := srv.Client(t, "db")
	ctx := context.Background()
	now := time.Now()
	b := replicatest.NewFile(t, 2, 3, now)
	for i := 0; i < 2; i++ { // the second write is resolved by comparing bytes
		if _, err := c.WriteLTXFile(ctx, 0, 2, 3, strings.NewReader(string(b))); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	// Another timestamp changes the bytes; LZ4 may change the size by a
	// byte too, and the point is a conflict at the same size.
	var other []byte
	for d := time.Second; len(other) != len(b); d += time.Second {
		if d > time.Minute {
			t.Fatalf("no file of %d bytes among 60 timestamps", len(b))
		}
		other = replicatest.NewFile(t, 2, 3, now.Add(d))
	}
	if _, err := c.WriteLTXFile(ctx, 0, 2, 3, strings.NewReader(string(other))); !errors.Is(err, replica.ErrConflict) {
		t.Fatalf("same size, different bytes: err = %v, want ErrConflict", err)
	}
}

func TestRetries409(t *testing.T) {
	var puts atomic.Int32
	srv := fakeS3(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && r.Header.Get("If-None-Match") != "" {
				if puts.Add(1) <= 2 {
					w.WriteHeader(http.StatusConflict)
					fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ConditionalRequestConflict</Code><Message>A conflicting operation occurred.</Message></Error>`)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	c := srv.Client(t, "db")
	b := replicatest.NewFile(t, 1, 1, time.Now())
	if _, err := c.WriteLTXFile(context.Background(), 0, 1, 1, strings.NewReader(string(b))); err != nil {
		t.Fatalf("write after two 409s: %v", err)
	}
	if n := puts.Load(); n != 3 {
		t.Fatalf("%d conditional PUTs, want 3", n)
	}
}

// With no credential anywhere, the first request's error says where litefs
// and the SDK looked, and which half of a pair is missing.
func TestNoCredentials(t *testing.T) {
	srv := s3test.StartGoFakeS3(t)
	cfg := srv.Config("db")
	cfg.AccessKeyID, cfg.SecretAccessKey = "", ""
	home := t.TempDir()
	for k, v := range map[string]string{
		"HOME": home, "AWS_CONFIG_FILE": home + "/config", "AWS_SHARED_CREDENTIALS_FILE": home + "/credentials",
		"AWS_PROFILE": "", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
		"AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_ROLE_ARN": "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "",
		"AWS_EC2_METADATA_DISABLED": "true",
		"LITEFS_ACCESS_KEY_ID":      "", "LITEFS_SECRET_ACCESS_KEY": "", "LITESTREAM_ACCESS_KEY_ID": "", "LITESTREAM_SECRET_ACCESS_KEY": "",
	} {
		t.Setenv(k, v)
	}
	check := func() error {
		t.Helper()
		c, err := lfs3.NewClient(context.Background(), cfg)
		if err != nil {
			t.Fatalf("NewClient sends no request and needs no credentials: %v", err)
		}
		return c.Check(context.Background())
	}
	err := check()
	if err == nil {
		t.Fatal("check without credentials succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"s3: check s3://" + srv.Bucket + "/db/: no credentials: ", "access-key-id and secret-access-key under [dbs.replica]",
		"LITEFS_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "~/.aws/credentials",
		"AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "EC2 instance role", "the SDK's last error: "} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q: %s", want, msg)
		}
	}
	t.Log(msg)
	if strings.Contains(msg, "get identity") || strings.Contains(msg, "only one of") {
		t.Errorf("error: %s", msg)
	}

	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
	if err := check(); err == nil || !strings.Contains(err.Error(), "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set") {
		t.Errorf("half an AWS pair: %v", err)
	}

	// The chain still works through the wrapper, with AWS_CA_BUNDLE set.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
	if err := check(); err != nil { // gofakes3 checks no signature
		t.Errorf("AWS_* credentials: %v", err)
	}
}
