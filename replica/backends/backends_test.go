package backends_test

import (
	"context"
	"strings"
	"testing"

	"github.com/litefs-dev/litefs/replica/backends"
)

// TestKey: two spellings of one replica path have one key, and every bad
// URL is refused by its own backend's parser with what to write instead.
func TestKey(t *testing.T) {
	for _, tc := range []struct{ in, key, err string }{
		{in: "file:///srv/replica/", key: "file:///srv/replica"},
		{in: "file:///srv//replica", key: "file:///srv/replica"},
		{in: "s3://bucket/a/b/", key: "s3://bucket/a/b"},
		{in: "S3://bucket/db", key: "s3://bucket/db"},
		{in: "gs://bucket/db", err: `unknown scheme "gs"`},
		{in: "bucket/db", err: "has no scheme"},
		{in: "file://srv/replica", err: `has a host ("srv")`},
		{in: "file:///srv/replica?x=1", err: "query or fragment"},
		{in: "s3://bucket/", err: "no path inside the bucket"},
		{in: "s3://minio:9000/db", err: "has a port"},
		{in: "s3://k:hunter2@bucket/db", err: "holds credentials"},
	} {
		key, err := backends.Key(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Key(%q) = %q, %v; want an error with %q", tc.in, key, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Key(%q) repeats the secret: %v", tc.in, err)
			}
			continue
		}
		if err != nil || key != tc.key {
			t.Errorf("Key(%q) = %q, %v; want %q", tc.in, key, err, tc.key)
		}
	}
}

// TestNewClient: the scheme picks the backend, and a URL its parser refuses
// builds no client.
func TestNewClient(t *testing.T) {
	ctx := context.Background()
	c, err := backends.NewClient(ctx, "file://"+t.TempDir(), backends.Settings{})
	if err != nil || c.Type() != "file" {
		t.Fatalf("file URL: %v, %v", c, err)
	}
	c, err = backends.NewClient(ctx, "s3://bucket/db", backends.Settings{Endpoint: "http://127.0.0.1:1", AccessKeyID: "k", SecretAccessKey: "s"})
	if err != nil || c.Type() != "s3" {
		t.Fatalf("s3 URL: %v, %v", c, err)
	}
	if _, err := backends.NewClient(ctx, "file://relative/dir", backends.Settings{}); err == nil {
		t.Fatal("a file URL with a host built a client")
	}
}
