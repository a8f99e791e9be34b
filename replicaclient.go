package litefs

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/file"
	"github.com/litefs-dev/litefs/replica/s3"
)

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
		})
	default:
		_, err := replicaKey(rc.URL)
		return nil, err
	}
}
