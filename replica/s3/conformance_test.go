package s3_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/replicatest"
)

// Each subtest gets a fresh replica path on one server.
func runConformance(t *testing.T, srv *s3test.Server) {
	var n atomic.Int64
	replicatest.Run(t, func(t *testing.T) replica.ReplicaClient {
		return srv.Client(t, fmt.Sprintf("conformance/db%d", n.Add(1)))
	})
}

func TestConformanceGoFakeS3(t *testing.T) { runConformance(t, s3test.StartGoFakeS3(t)) }

func TestConformanceVersityGW(t *testing.T) { runConformance(t, s3test.StartVersityGW(t)) }
