package bench

import (
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkOpMetrics: 1-row commits per second through litefs with
// litefs_fuse_op_seconds on (the default) ÷ off ([fuse] op-metrics =
// false), at synchronous NORMAL with passthrough, where the daemon's share
// of a commit is largest. Rounds alternate between the two mounts; the
// ratio is the median of the per-round ratios.
func BenchmarkOpMetrics(b *testing.B) {
	settle()
	const rounds, commitsPerRound = 9, 2000
	on, _ := litefsTargetWith(b, true, "1s", "")
	off, _ := litefsTargetWith(b, true, "1s", "op-metrics = false")
	dbs := []*sql.DB{open(b, on.path, "NORMAL"), open(b, off.path, "NORMAL")}
	defer func() {
		for _, db := range dbs {
			db.Close()
		}
		on.stop()
		off.stop()
	}()
	b.ResetTimer()
	var ratios, rateOn, rateOff []float64
	for n := 0; n < b.N; n++ {
		for r := 0; r < rounds; r++ {
			var rate [2]float64
			for i, db := range dbs {
				start := time.Now()
				for c := 0; c < commitsPerRound; c++ {
					if _, err := db.Exec(`INSERT INTO t (v) VALUES ('x')`); err != nil {
						b.Fatal(err)
					}
				}
				rate[i] = commitsPerRound / time.Since(start).Seconds()
			}
			rateOn, rateOff = append(rateOn, rate[0]), append(rateOff, rate[1])
			ratios = append(ratios, rate[0]/rate[1])
		}
	}
	b.StopTimer()
	med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(med(rateOn), "on/s")
	b.ReportMetric(med(rateOff), "off/s")
	b.ReportMetric(med(ratios), "on÷off")
	report("commits with litefs_fuse_op_seconds on vs off (sync=NORMAL, passthrough, %d rounds of %d, interleaved): on %.0f/s, off %.0f/s (medians); on÷off median %.3f, rounds %s",
		rounds*b.N, commitsPerRound, med(rateOn), med(rateOff), med(ratios), fmtRatios(ratios))
}

func fmtRatios(v []float64) string {
	s := ""
	for i, r := range v {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%.3f", r)
	}
	return s
}
