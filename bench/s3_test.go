package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/daemon"
	"github.com/litefs-dev/litefs/internal/testenv"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/internal/s3test"
)

// idleEnv names the environment variable that shortens the idle period of
// BenchmarkS3/idle (a Go duration; default 60s).
const idleEnv = "LITEFS_BENCH_IDLE"

// s3Target is the daemon replicating to versitygw through a counting proxy.
func s3Target(b *testing.B, syncInterval string) (*daemon.Daemon, *s3test.Proxy, string) {
	testenv.RequireFUSE(b)
	srv := s3test.StartVersityGW(b)
	p := s3test.StartProxy(b, srv.Endpoint)
	dm, dir := s3Daemon(b, srv, p.URL, syncInterval, func(string) {})
	return dm, p, filepath.Join(dir, "mnt", "db")
}

// objectTimes records, for each level-0/9 LTX object, when versitygw
// confirmed its PUT (the object is visible from then on).
type objectTimes struct {
	mu   sync.Mutex
	objs []visibleObject
}

type visibleObject struct {
	min, max ltx.TXID
	at       time.Time
}

func (o *objectTimes) hook(r s3test.Record) {
	if !s3test.IsObjectPut(r, ".ltx") || r.Status != 200 {
		return
	}
	min, max, err := ltx.ParseFilename(filepath.Base(r.Key))
	if err != nil {
		return
	}
	o.mu.Lock()
	o.objs = append(o.objs, visibleObject{min, max, r.End})
	o.mu.Unlock()
}

// visible returns when txid first became visible in an object.
func (o *objectTimes) visible(txid ltx.TXID) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var first time.Time
	for _, v := range o.objs {
		if v.min <= txid && txid <= v.max && (first.IsZero() || v.at.Before(first)) {
			first = v.at
		}
	}
	return first, !first.IsZero()
}

func waitReplica(b *testing.B, db *litefs.DB, txid ltx.TXID) {
	deadline := time.Now().Add(60 * time.Second)
	for db.ReplicaPos().TXID < txid {
		if time.Now().After(deadline) {
			b.Fatalf("replica at TXID %d after 60s, want %d", db.ReplicaPos().TXID, txid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkS3 measures, through a counting proxy in front of versitygw:
//   - requests (PUTs, LTX objects, all) per 1,000 single-row transactions
//     committed at a steady 500/s, at sync-interval 1s and 0;
//   - replication lag, commit → the object holding it confirmed by S3,
//     p50/p99;
//   - requests sent while the database is idle ($LITEFS_BENCH_IDLE, default
//     60s; the goal is 0).
func BenchmarkS3(b *testing.B) {
	settle()
	const commits = 1000
	const every = 2 * time.Millisecond
	for _, si := range []string{"1s", "0s"} {
		b.Run("sync="+si, func(b *testing.B) {
			dm, p, path := s3Target(b, si)
			d := dm.DBs()[0]
			db := open(b, path, "NORMAL")
			defer db.Close()
			if err := d.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			var ot objectTimes
			p.OnDone(ot.hook)
			type commit struct {
				txid ltx.TXID
				at   time.Time
			}
			var done []commit
			var reqs, puts, ltxPuts int
			methods := map[string]int{}
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				p.Reset()
				start := time.Now()
				for i := 0; i < commits; i++ {
					if w := time.Until(start.Add(time.Duration(i) * every)); w > 0 {
						time.Sleep(w)
					}
					if _, err := db.Exec(`INSERT INTO t (v) VALUES ('x')`); err != nil {
						b.Fatal(err)
					}
					at := time.Now()
					done = append(done, commit{d.Pos().TXID, at})
				}
				waitReplica(b, d, done[len(done)-1].txid)
				time.Sleep(50 * time.Millisecond) // let the last reply reach the proxy's record
				reqs += p.Count("")
				puts += p.Count("PUT")
				ltxPuts += p.CountFunc(func(r s3test.Record) bool { return s3test.IsObjectPut(r, ".ltx") })
				for m, c := range p.Counts() {
					methods[m] += c
				}
			}
			b.StopTimer()
			var lags latencies
			for _, c := range done {
				at, ok := ot.visible(c.txid)
				if !ok {
					b.Fatalf("TXID %d never seen in a confirmed PUT", c.txid)
				}
				lags = append(lags, at.Sub(c.at))
			}
			per := func(n int) float64 { return float64(n) * 1000 / float64(b.N*commits) }
			b.ReportMetric(per(puts), "PUTs/1000txn")
			b.ReportMetric(per(ltxPuts), "objects/1000txn")
			b.ReportMetric(per(reqs), "requests/1000txn")
			b.ReportMetric(float64(lags.pct(.5).Microseconds())/1000, "lag-p50-ms")
			b.ReportMetric(float64(lags.pct(.99).Microseconds())/1000, "lag-p99-ms")
			var byMethod []string
			for m, c := range methods {
				byMethod = append(byMethod, fmt.Sprintf("%s=%d", m, c))
			}
			sort.Strings(byMethod)
			report("s3 sync-interval=%s: %d commits at %v intervals: %.1f PUTs/1000 txns (%.1f LTX objects, %.1f requests of any kind [%s]); lag commit→visible p50 %v p99 %v max %v",
				si, b.N*commits, every, per(puts), per(ltxPuts), per(reqs), strings.Join(byMethod, " "),
				lags.pct(.5).Round(time.Microsecond), lags.pct(.99).Round(time.Microsecond), lags.pct(1).Round(time.Microsecond))
		})
	}

	b.Run("idle", func(b *testing.B) {
		idle := 60 * time.Second
		if v := os.Getenv(idleEnv); v != "" {
			var err error
			if idle, err = time.ParseDuration(v); err != nil {
				b.Fatalf("%s=%q: %v", idleEnv, v, err)
			}
		}
		dm, p, path := s3Target(b, "1s")
		d := dm.DBs()[0]
		db := open(b, path, "NORMAL")
		defer db.Close()
		var total int
		var byMethod []string
		b.ResetTimer()
		for n := 0; n < b.N; n++ {
			for i := 0; i < 100; i++ {
				if _, err := db.Exec(`INSERT INTO t (v) VALUES ('x')`); err != nil {
					b.Fatal(err)
				}
			}
			waitReplica(b, d, d.Pos().TXID)
			time.Sleep(100 * time.Millisecond) // in-flight replies
			p.Reset()
			time.Sleep(idle)
			total += p.Count("")
			for m, c := range p.Counts() {
				byMethod = append(byMethod, fmt.Sprintf("%s=%d", m, c))
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(total)/float64(b.N), "idle-requests")
		report("s3 idle: %d requests while the database was idle for %v (sync-interval 1s) [%s]; goal 0",
			total/b.N, idle, strings.Join(byMethod, " "))
	})
}
