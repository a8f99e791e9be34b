// Package backends maps a replica URL's scheme to the backend that serves
// it: file:// to replica/file, s3:// to replica/s3. Each backend parses and
// checks its own URLs (file.ParseURL, s3.ParseURL); this package only picks
// the backend, so a URL is checked in one place whether it comes from the
// config, a -replica flag or a test.
//
// It lives apart from replica because the backends import replica, and
// replica must not import them.
//
// Callers: config (Key, to check URLs and find two databases sharing one
// replica path), internal/daemon and internal/restorecmd (NewClient).
package backends

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/replica/s3"
)

// Settings are the [dbs.replica] keys a backend may need beyond its URL.
// The file backend needs none of them.
type Settings struct {
	Endpoint, Region  string
	ForcePathStyle    bool
	AccessKeyID       string
	SecretAccessKey   string
	ConditionalWrites bool
}

// s3ResponseHeaderTimeout bounds the wait for an answer once a request was
// sent (for a large PUT, after its body). S3 answers in milliseconds; a
// server that accepted a request and never answers must not hold the
// uploader: staging keeps the data, and a retry is cheap.
const s3ResponseHeaderTimeout = 10 * time.Second

// Key checks a replica URL with its backend's parser and returns a normal
// form in which two spellings of one replica path are equal (file:///a/ and
// file:///a, s3://b/p and s3://b/p/).
func Key(raw string) (string, error) {
	scheme, err := schemeOf(raw)
	if err != nil {
		return "", err
	}
	switch scheme {
	case "file":
		dir, err := file.ParseURL(raw)
		if err != nil {
			return "", err
		}
		return "file://" + dir, nil
	default: // s3
		bucket, path, err := s3.ParseURL(raw)
		if err != nil {
			return "", err
		}
		return "s3://" + bucket + "/" + path, nil
	}
}

// NewClient builds the client of the backend a replica URL names. It sends
// no request.
func NewClient(ctx context.Context, raw string, s Settings) (replica.ReplicaClient, error) {
	scheme, err := schemeOf(raw)
	if err != nil {
		return nil, err
	}
	switch scheme {
	case "file":
		dir, err := file.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		return file.NewClient(dir), nil
	default: // s3
		bucket, path, err := s3.ParseURL(raw)
		if err != nil {
			return nil, err
		}
		return s3.NewClient(ctx, s3.Config{
			Bucket: bucket, Path: path,
			Endpoint: s.Endpoint, Region: s.Region, ForcePathStyle: s.ForcePathStyle,
			AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey,
			ConditionalWrites:     s.ConditionalWrites,
			ResponseHeaderTimeout: s3ResponseHeaderTimeout,
		})
	}
}

// schemeOf returns a URL's scheme when a backend serves it.
func schemeOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("cannot parse %q; write s3://bucket/path or file:///dir", raw)
	}
	switch u.Scheme {
	case "file", "s3":
		return u.Scheme, nil
	case "":
		return "", fmt.Errorf("%q has no scheme; use s3://bucket/path or file:///dir", raw)
	default:
		return "", fmt.Errorf("unknown scheme %q in %q; use s3://bucket/path or file:///dir", u.Scheme, raw)
	}
}
