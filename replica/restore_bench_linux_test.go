package replica_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica"
)

// cpuTimes is the user+system CPU of this process and of pid (0: none).
func cpuTimes(pid int) (self, other time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if pid != 0 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// Fields after the command name, which ends at the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 13 {
				ut, _ := strconv.Atoi(f[11])
				st, _ := strconv.Atoi(f[12])
				other = time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ 100
			}
		}
	}
	return self, other
}

// BenchmarkRestoreS3 restores a large replica (LITEFS_REPLICA_BENCH_MB) from
// versitygw in process, and downloads the same objects raw (8 workers, 4 MiB
// ranges, discarded) the way bench.BenchmarkRestoreLarge does, reporting
// both speeds and the CPU each took here and in versitygw.
func BenchmarkRestoreS3(b *testing.B) {
	if _, err := s3test.FindVersityGW(); err != nil {
		b.Skip(err)
	}
	fc, size := largeReplica(b, benchMB())
	srv := s3test.StartVersityGW(b)
	c := srv.Client(b, "db")
	ctx := context.Background()
	plan, err := replica.Plan(ctx, fc, 0, time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	var objBytes int64
	for _, info := range plan {
		f, err := os.Open(fc.Path(info.Level, info.MinTXID, info.MaxTXID))
		if err != nil {
			b.Fatal(err)
		}
		_, err = c.WriteLTXFile(ctx, info.Level, info.MinTXID, info.MaxTXID, f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		objBytes += info.Size
	}
	dir := b.TempDir()
	var rawWall, rawSelf, rawGW, wall, self, gw time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s0, g0 := cpuTimes(srv.Pid)
		t0 := time.Now()
		rawGet(b, c, plan, 8, 4<<20)
		rawWall += time.Since(t0)
		s1, g1 := cpuTimes(srv.Pid)
		rawSelf, rawGW = rawSelf+s1-s0, rawGW+g1-g0

		out := filepath.Join(dir, fmt.Sprintf("db%d", i))
		t0 = time.Now()
		if _, err := replica.Restore(ctx, c, replica.RestoreOptions{OutputPath: out}); err != nil {
			b.Fatal(err)
		}
		wall += time.Since(t0)
		s2, g2 := cpuTimes(srv.Pid)
		self, gw = self+s2-s1, gw+g2-g1
		os.Remove(out)
	}
	b.StopTimer()
	n := float64(b.N)
	mbps := func(bytes int64, d time.Duration) float64 { return float64(bytes) / (1 << 20) / (d.Seconds() / n) }
	ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / n }
	b.ReportMetric(mbps(size, wall), "restore-MB/s")
	b.ReportMetric(mbps(objBytes, rawWall), "raw-MB/s")
	b.ReportMetric(mbps(size, wall)/mbps(objBytes, rawWall), "restore÷raw")
	b.ReportMetric(ms(self), "restore-cpu-ms")
	b.ReportMetric(ms(gw), "restore-gw-cpu-ms")
	b.ReportMetric(ms(rawSelf), "raw-cpu-ms")
	b.ReportMetric(ms(rawGW), "raw-gw-cpu-ms")
}
