package bench

import (
	"database/sql"
	"fmt"
	"testing"
	"time"
)

// BenchmarkCommits: 1-row commits per second through litefs ÷ native SQLite
// on the same disk and ÷ the same FUSE mount with replication off, at
// synchronous NORMAL and FULL, with and without FUSE passthrough for the db
// and shm files. Each iteration is one round of commitsPerRound commits on
// every target, interleaved so noise hits all of them alike.
func BenchmarkCommits(b *testing.B) {
	settle()
	const commitsPerRound = 5000
	for _, passthrough := range []bool{true, false} {
		for _, sync := range []string{"NORMAL", "FULL"} {
			b.Run(fmt.Sprintf("sync=%s/passthrough=%v", sync, passthrough), func(b *testing.B) {
				lf, _ := litefsTarget(b, passthrough, "1s")
				targets := []target{nativeTarget(b), loopbackTarget(b, passthrough), lf}
				dbs := make([]*sql.DB, len(targets))
				for i, t := range targets {
					dbs[i] = open(b, t.path, sync)
				}
				elapsed := make([]time.Duration, len(targets))
				lats := make([]latencies, len(targets))
				b.ResetTimer()
				for n := 0; n < b.N; n++ {
					for i, db := range dbs {
						for c := 0; c < commitsPerRound; c++ {
							start := time.Now()
							if _, err := db.Exec(`INSERT INTO t (v) VALUES ('x')`); err != nil {
								b.Fatal(err)
							}
							d := time.Since(start)
							elapsed[i] += d
							lats[i] = append(lats[i], d)
						}
					}
				}
				b.StopTimer()
				rate := func(i int) float64 { return float64(b.N*commitsPerRound) / elapsed[i].Seconds() }
				b.ReportMetric(rate(0), "native/s")
				b.ReportMetric(rate(1), "loopback/s")
				b.ReportMetric(rate(2), "litefs/s")
				b.ReportMetric(rate(2)/rate(0), "litefs÷native")
				b.ReportMetric(rate(2)/rate(1), "litefs÷loopback")
				report("commits sync=%s passthrough=%v: native %.0f/s (p50 %v p99 %v), loopback %.0f/s (p50 %v p99 %v), litefs %.0f/s (p50 %v p99 %v); litefs÷native %.3f, litefs÷loopback %.3f",
					sync, passthrough, rate(0), lats[0].pct(.5), lats[0].pct(.99), rate(1), lats[1].pct(.5), lats[1].pct(.99),
					rate(2), lats[2].pct(.5), lats[2].pct(.99), rate(2)/rate(0), rate(2)/rate(1))
				for i, db := range dbs {
					db.Close()
					targets[i].stop()
				}
			})
		}
	}
}
