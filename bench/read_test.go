package bench

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkReads: point SELECTs by rowid and full scans through litefs ÷
// native, on a 20,000-row table, with the WAL holding recent commits (the
// common case for a live app) and after a checkpoint emptied it.
func BenchmarkReads(b *testing.B) {
	settle()
	const rows, points = 20000, 20000
	for _, passthrough := range []bool{true, false} {
		b.Run(fmt.Sprintf("passthrough=%v", passthrough), func(b *testing.B) {
			lf, _ := litefsTarget(b, passthrough, "1s")
			targets := []target{nativeTarget(b), lf}
			dbs := make([]*sql.DB, len(targets))
			for i, t := range targets {
				dbs[i] = open(b, t.path, "NORMAL")
				fill(b, dbs[i], rows)
			}
			point := make([]time.Duration, len(targets))
			scan := make([]time.Duration, len(targets))
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				for i, db := range dbs {
					start := time.Now()
					for q := 0; q < points; q++ {
						var v string
						if err := db.QueryRow(`SELECT v FROM t WHERE id = ?`, rand.IntN(rows)+1).Scan(&v); err != nil {
							b.Fatal(err)
						}
					}
					point[i] += time.Since(start)
					start = time.Now()
					var sum int
					if err := db.QueryRow(`SELECT sum(length(v)) FROM t`).Scan(&sum); err != nil {
						b.Fatal(err)
					}
					scan[i] += time.Since(start)
				}
			}
			b.StopTimer()
			rate := func(d time.Duration) float64 { return float64(b.N*points) / d.Seconds() }
			b.ReportMetric(rate(point[0]), "native-points/s")
			b.ReportMetric(rate(point[1]), "litefs-points/s")
			b.ReportMetric(rate(point[1])/rate(point[0]), "points-litefs÷native")
			b.ReportMetric(scan[0].Seconds()/scan[1].Seconds(), "scan-litefs÷native")
			report("reads passthrough=%v: point SELECTs native %.0f/s, litefs %.0f/s (÷ %.3f); full scan native %v, litefs %v (÷ %.3f)",
				passthrough, rate(point[0]), rate(point[1]), rate(point[1])/rate(point[0]),
				scan[0]/time.Duration(b.N), scan[1]/time.Duration(b.N), scan[0].Seconds()/scan[1].Seconds())
			for i, db := range dbs {
				db.Close()
				targets[i].stop()
			}
		})
	}
}

func fill(b *testing.B, db *sql.DB, rows int) {
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < rows; i++ {
		if _, err := tx.Exec(`INSERT INTO t (v) VALUES (?)`, fmt.Sprintf("row %08d %s", i, "padding-padding-padding-padding")); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	// A few small commits so the WAL holds recent pages, as in a live app.
	for i := 0; i < 50; i++ {
		if _, err := db.Exec(`UPDATE t SET v = v WHERE id = ?`, i*100+1); err != nil {
			b.Fatal(err)
		}
	}
}
