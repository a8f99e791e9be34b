package daemon

import (
	"testing"
	"time"

	"github.com/litefs-dev/litefs/fs"
)

// BenchmarkOpObserve is what litefs_fuse_op_seconds adds to one FUSE
// request: the two clock reads of fs's timedFS and the observation.
func BenchmarkOpObserve(b *testing.B) {
	h := newOpHistogram()
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		h.observe(fs.OpWrite, time.Since(start))
	}
}
