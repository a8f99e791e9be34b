package litefs

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/replica/s3"
)

// s3ResponseHeaderTimeout bounds the wait for an answer once a request was
// sent (for a large PUT, after its body). S3 answers in milliseconds.
const s3ResponseHeaderTimeout = 10 * time.Second

// NewReplicaClient builds the backend a replica URL names.
func NewReplicaClient(ctx context.Context, rc ReplicaConfig) (replica.ReplicaClient, error) {
	u, err := url.Parse(rc.URL)
	if err != nil {
		return nil, fmt.Errorf("replica url %q: %w", rc.URL, err)
	}
	switch u.Scheme {
	case "file":
		if u.Path == "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("replica url %q: write file:///absolute/dir", rc.URL)
		}
		return file.NewClient(filepath.Clean(u.Path)), nil
	case "s3":
		bucket, path, err := s3.ParseURL(rc.URL)
		if err != nil {
			return nil, err
		}
		cw := rc.ConditionalWrites == nil || *rc.ConditionalWrites
		return s3.NewClient(ctx, s3.Config{
			Bucket: bucket, Path: path,
			Endpoint: rc.Endpoint, Region: rc.Region, ForcePathStyle: rc.ForcePathStyle,
			AccessKeyID: rc.AccessKeyID, SecretAccessKey: rc.SecretAccessKey,
			ConditionalWrites: cw,
			// A server that accepted a request and never answers must not
			// hold the uploader: staging keeps the data, a retry is cheap.
			ResponseHeaderTimeout: s3ResponseHeaderTimeout,
		})
	default:
		_, err := replicaKey(rc.URL)
		return nil, err
	}
}
