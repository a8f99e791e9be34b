package bench

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/internal/daemon"
	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/internal/testenv"
)

// BenchmarkDurable measures [dbs.replica] durability against versitygw on
// loopback, every daemon and the bare PUTs through one counting proxy (so
// each side pays the same hop), in rounds that interleave:
//   - PUT: s3.Client.WriteLTXFile of a one-page level-0 LTX file of the
//     size a 1-row durable commit uploads, one at a time and 4 at once;
//   - durable: 1-row commits under durability = "replica", sync-interval
//     1s, synchronous=NORMAL, one connection on one database; latency
//     p50/p99, split (from the proxy's record of the PUT that carried each
//     commit) into before the PUT, the PUT, and after it;
//   - 4 databases: the same on four databases of ONE mount, one connection
//     each in its own goroutine; total rate ÷ the one-database rate (goal
//     ≥ 3×), and how many PUTs were in flight at once;
//   - replica-on-fsync: a NORMAL writer (its commits do not wait; the WAL
//     fsyncs of its checkpoints do) ÷ the durable rate (goal ≥ 5×), and ÷ a
//     "volume" writer, alternating in short slices;
//   - freeze: staging.Log.Freeze of one 1-page record (what an upload cycle
//     does before its PUT: three fsyncs, three new files), alone and 4 at
//     once, on the disk the data dirs are on; and the whole local part of a
//     cycle (the freeze, then listing, reading and removing the object and
//     writing the position).
//
// It also reports the CPU the phases used (this process and versitygw). A
// watchdog fails it, instead of hanging, when nothing completes for
// stallAfter (see watchdog).
//
// Goal (issue 13): a durable commit costs at most one PUT + 2 ms at p50.
func BenchmarkDurable(b *testing.B) {
	settle()
	testenv.RequireFUSE(b)
	const rounds = 5
	const phase = time.Second // durable phases, per round
	const normalPhase = 300 * time.Millisecond
	const putsPerRound, freezesPerRound = 100, 20

	srv := s3test.StartVersityGW(b)
	p := s3test.StartProxy(b, srv.Endpoint)
	var pl putLog
	p.OnDone(pl.hook)

	wd := newWatchdog()
	defer wd.close()
	single := durableDaemon(b, wd, srv, p.URL, "replica", "single")
	multi := durableDaemon(b, wd, srv, p.URL, "replica", "m0", "m1", "m2", "m3")
	onFsync := durableDaemon(b, wd, srv, p.URL, "replica-on-fsync", "fsync")
	volume := durableDaemon(b, wd, srv, p.URL, "volume", "volume")
	for _, w := range slices.Concat(single, multi, onFsync, volume) {
		defer w.db.Close()
	}
	go wd.run()
	putObj := newPutObject()
	var putters []*putter
	var fzs []*freezer
	for g := 0; g < 4; g++ {
		putters = append(putters, &putter{c: p.Client(b, srv, fmt.Sprintf("put%d", g)), obj: putObj, txid: 1})
		fzs = append(fzs, newFreezer(b))
	}
	singleFreezer := newFreezer(b)
	putOp := func(g int) (time.Duration, error) { return putters[g].put() }
	freezeOp := func(g int) (time.Duration, error) { return fzs[g].freeze() }
	freeze1Op := func(int) (time.Duration, error) { return singleFreezer.freeze() }

	// Warm up: the first upload of each database is its snapshot, the
	// first PUT of a client opens its connection.
	parallel(b, wd, 4, 5, putOp)
	for _, w := range slices.Concat(single, multi, onFsync, volume) {
		for i := 0; i < 5; i++ {
			w.commit(b)
		}
	}

	var (
		putLat, freezeLat                latencies
		put4Lat, freeze4Lat              latencies
		putT, put4T, freezeT, freeze4T   time.Duration
		singleC, multiC                  []commitRec
		singleT, multiT, fsyncT, volumeT time.Duration
		fsyncN, volumeN                  int
		fsyncLat, volumeLat              latencies
		multiRatios, fsyncRatios         []float64
		notHeld                          int
		multiWindows, singleWindows      [][2]time.Time
		singleUploads, singleUploadBytes uint64
		multiUploads                     uint64
		singleCPU, multiCPU              cpuUse
	)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for r := 0; r < rounds; r++ {
			lat, el := parallel(b, wd, 1, putsPerRound, putOp)
			putLat, putT = append(putLat, lat...), putT+el
			lat, el = parallel(b, wd, 4, putsPerRound/4, putOp)
			put4Lat, put4T = append(put4Lat, lat...), put4T+el

			sd := single[0].d
			ok0, bytes0 := sd.Metrics.UploadOK.Load(), sd.Metrics.UploadedBytes.Load()
			c0 := readCPU(srv.Pid)
			start := time.Now()
			cs, el := runDurable(b, single, phase)
			singleWindows = append(singleWindows, [2]time.Time{start, start.Add(el)})
			singleCPU.add(c0, readCPU(srv.Pid), el)
			singleUploads += sd.Metrics.UploadOK.Load() - ok0
			singleUploadBytes += sd.Metrics.UploadedBytes.Load() - bytes0
			for _, c := range cs {
				if !c.held {
					notHeld++
				}
			}
			singleC, singleT = append(singleC, cs...), singleT+el
			singleRate := float64(len(cs)) / el.Seconds()

			var mok0 uint64
			for _, w := range multi {
				mok0 += w.d.Metrics.UploadOK.Load()
			}
			start = time.Now()
			c0 = readCPU(srv.Pid)
			cs, el = runDurable(b, multi, phase)
			multiCPU.add(c0, readCPU(srv.Pid), el)
			multiWindows = append(multiWindows, [2]time.Time{start, start.Add(el)})
			for _, w := range multi {
				multiUploads += w.d.Metrics.UploadOK.Load()
			}
			multiUploads -= mok0
			for _, c := range cs {
				if !c.held {
					notHeld++
				}
			}
			multiC, multiT = append(multiC, cs...), multiT+el
			multiRatios = append(multiRatios, float64(len(cs))/el.Seconds()/singleRate)

			// Alternate the two NORMAL writers in short slices.
			var fn, vn int
			var ft, vt time.Duration
			for s := 0; s < 3; s++ {
				cnt, el, lat := runNormal(b, onFsync[0], normalPhase/3)
				fn, ft, fsyncLat = fn+cnt, ft+el, append(fsyncLat, lat...)
				cnt, el, lat = runNormal(b, volume[0], normalPhase/3)
				vn, vt, volumeLat = vn+cnt, vt+el, append(volumeLat, lat...)
			}
			fsyncN, fsyncT, volumeN, volumeT = fsyncN+fn, fsyncT+ft, volumeN+vn, volumeT+vt
			fsyncRatios = append(fsyncRatios, float64(fn)/ft.Seconds()/singleRate)

			lat, el = parallel(b, wd, 1, freezesPerRound, freeze1Op)
			freezeLat, freezeT = append(freezeLat, lat...), freezeT+el
			lat, el = parallel(b, wd, 4, freezesPerRound/4, freezeOp)
			freeze4Lat, freeze4T = append(freeze4Lat, lat...), freeze4T+el
			wd.check(b)
		}
	}
	b.StopTimer()

	singleRate := float64(len(singleC)) / singleT.Seconds()
	multiRate := float64(len(multiC)) / multiT.Seconds()
	fsyncRate := float64(fsyncN) / fsyncT.Seconds()
	volumeRate := float64(volumeN) / volumeT.Seconds()
	sLat, mLat := commitLatencies(singleC), commitLatencies(multiC)
	pre, put, post, unmatched := pl.split(singleC)
	mpre, mput, mpost, munmatched := pl.split(multiC)
	inflightMean, inflightMax, multiPUTs := pl.overlap([]string{"m0", "m1", "m2", "m3"}, multiWindows)
	goal := putLat.pct(.5) + 2*time.Millisecond

	b.ReportMetric(singleRate, "durable/s")
	b.ReportMetric(msf(sLat.pct(.5)), "durable-p50-ms")
	b.ReportMetric(msf(sLat.pct(.99)), "durable-p99-ms")
	b.ReportMetric(msf(putLat.pct(.5)), "put-p50-ms")
	b.ReportMetric(msf(putLat.pct(.99)), "put-p99-ms")
	b.ReportMetric(msf(freezeLat.pct(.5)), "freeze-p50-ms")
	b.ReportMetric(msf(pre.pct(.5)), "pre-put-p50-ms")
	b.ReportMetric(multiRate, "4db-durable/s")
	b.ReportMetric(multiRate/singleRate, "4db÷1db")
	b.ReportMetric(fsyncRate, "on-fsync-NORMAL/s")
	b.ReportMetric(volumeRate, "volume-NORMAL/s")
	b.ReportMetric(fsyncRate/singleRate, "on-fsync÷durable")

	report("durable (replica, sync-interval 1s, NORMAL, 1 conn, 1 db, versitygw via proxy, %d rounds of %v): %.0f commits/s, p50 %v p99 %v (%d commits, %d not held by the replica on return); split p50: before PUT %v, PUT at proxy %v, after PUT %v (%d unmatched); %.2f objects/commit (%d of them snapshots), %.0f B/object",
		rounds*b.N, phase, singleRate, rnd(sLat.pct(.5)), rnd(sLat.pct(.99)), len(singleC), notHeld,
		rnd(pre.pct(.5)), rnd(put.pct(.5)), rnd(post.pct(.5)), unmatched,
		float64(singleUploads)/float64(len(singleC)), pl.snapshots("single", singleWindows), float64(singleUploadBytes)/float64(max(singleUploads, 1)))
	putRate, put4Rate := float64(len(putLat))/putT.Seconds(), float64(len(put4Lat))/put4T.Seconds()
	freezeRate, freeze4Rate := float64(len(freezeLat))/freezeT.Seconds(), float64(len(freeze4Lat))/freeze4T.Seconds()
	cycleLat := singleFreezer.cycles
	b.ReportMetric(put4Rate/putRate, "4PUT÷1PUT")
	b.ReportMetric(freeze4Rate/freezeRate, "4freeze÷1freeze")
	b.ReportMetric(msf(cycleLat.pct(.5)), "local-cycle-p50-ms")
	report("durable vs PUT (same run, same proxy): PUT of a %d B one-page LTX p50 %v p99 %v (%d PUTs); freeze of one 1-page record p50 %v p99 %v, with the rest of a cycle's local work (list, read, remove, pos file) p50 %v p99 %v (%d, standalone staging.Log on the same disk); durable p50 %v vs goal PUT p50 + 2 ms = %v: %s",
		len(putObj(2)), rnd(putLat.pct(.5)), rnd(putLat.pct(.99)), len(putLat),
		rnd(freezeLat.pct(.5)), rnd(freezeLat.pct(.99)), rnd(cycleLat.pct(.5)), rnd(cycleLat.pct(.99)), len(freezeLat),
		rnd(sLat.pct(.5)), rnd(goal), verdict(sLat.pct(.5) <= goal))
	report("durable building blocks, 4 at once vs 1: PUTs %.0f/s vs %.0f/s = %.2f× (p50 %v vs %v); freezes (4 staging logs, one disk) %.0f/s vs %.0f/s = %.2f× (p50 %v vs %v)",
		put4Rate, putRate, put4Rate/putRate, rnd(put4Lat.pct(.5)), rnd(putLat.pct(.5)),
		freeze4Rate, freezeRate, freeze4Rate/freezeRate, rnd(freeze4Lat.pct(.5)), rnd(freezeLat.pct(.5)))
	report("durable 4 dbs on one mount (1 conn each, own goroutine): %.0f commits/s total (p50 %v p99 %v, %d commits, %.2f objects/commit) vs 1 db %.0f/s: 4db÷1db %.2f (per-round %s; goal ≥ 3: %s); PUTs in flight during the phase: mean %.2f, max %d (%d PUTs)",
		multiRate, rnd(mLat.pct(.5)), rnd(mLat.pct(.99)), len(multiC), float64(multiUploads)/float64(len(multiC)),
		singleRate, multiRate/singleRate, fmtRatios(multiRatios), verdict(multiRate/singleRate >= 3),
		inflightMean, inflightMax, multiPUTs)
	report("durable 4 dbs split p50: before PUT %v, PUT at proxy %v, after PUT %v (%d unmatched), vs 1 db %v, %v, %v; p99 before PUT %v vs %v",
		rnd(mpre.pct(.5)), rnd(mput.pct(.5)), rnd(mpost.pct(.5)), munmatched, rnd(pre.pct(.5)), rnd(put.pct(.5)), rnd(post.pct(.5)),
		rnd(mpre.pct(.99)), rnd(pre.pct(.99)))
	report("durable CPU (%d CPUs): 1 db %s, %.0f µs/commit; 4 dbs %s, %.0f µs/commit",
		runtime.NumCPU(), singleCPU, singleCPU.perCommit(len(singleC)), multiCPU, multiCPU.perCommit(len(multiC)))
	report("replica-on-fsync NORMAL writer: %.0f commits/s (p50 %v p99 %v) vs durable %.0f/s: on-fsync÷durable %.1f (per-round %s; goal ≥ 5: %s); volume NORMAL writer %.0f/s (p50 %v p99 %v): on-fsync÷volume %.3f",
		fsyncRate, rnd(fsyncLat.pct(.5)), rnd(fsyncLat.pct(.99)), singleRate, fsyncRate/singleRate, fmtRatios(fsyncRatios),
		verdict(fsyncRate/singleRate >= 5), volumeRate, rnd(volumeLat.pct(.5)), rnd(volumeLat.pct(.99)), fsyncRate/volumeRate)
}

// cpuSample is the CPU time used so far by this process (the daemons, the
// app, the proxy) and by versitygw.
type cpuSample struct{ self, gw time.Duration }

func readCPU(gwPid int) cpuSample {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	s := cpuSample{self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", gwPid)); err == nil {
		// Fields after the command's closing parenthesis: utime and stime
		// are the 12th and 13th, in clock ticks (100 Hz on Linux).
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				s.gw = time.Duration(u+st) * 10 * time.Millisecond
			}
		}
	}
	return s
}

// cpuUse sums CPU time and wall time over phases.
type cpuUse struct{ self, gw, wall time.Duration }

func (u *cpuUse) add(a, b cpuSample, wall time.Duration) {
	u.self += b.self - a.self
	u.gw += b.gw - a.gw
	u.wall += wall
}

func (u cpuUse) String() string {
	return fmt.Sprintf("%.2f CPUs busy (litefs+app+proxy %.2f, versitygw %.2f)",
		(u.self+u.gw).Seconds()/u.wall.Seconds(), u.self.Seconds()/u.wall.Seconds(), u.gw.Seconds()/u.wall.Seconds())
}

func (u cpuUse) perCommit(n int) float64 {
	return float64((u.self + u.gw).Microseconds()) / float64(max(n, 1))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func rnd(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

// writer is one app connection to one database of a daemon.
type writer struct {
	db *sql.DB
	d  *litefs.DB
	wd *watchdog
}

func (w writer) commit(b *testing.B) {
	if _, err := w.db.Exec(`INSERT INTO t (v) VALUES ('x')`); err != nil {
		w.wd.check(b)
		b.Fatal(err)
	}
	w.wd.tick()
}

// durableDaemon starts a daemon with one database per name on one mount,
// each replicating to s3://bucket/<name> through endpoint with the given
// durability and sync-interval 1s, and opens one NORMAL connection to each.
func durableDaemon(b *testing.B, wd *watchdog, srv *s3test.Server, endpoint, durability string, names ...string) []writer {
	dir := b.TempDir()
	mc := testenv.MultiConfig{FUSEDir: filepath.Join(dir, "mnt"), DataDir: filepath.Join(dir, "data"), HTTPAddr: "off"}
	for _, name := range names {
		mc.DBs = append(mc.DBs, testenv.MultiDB{Name: name, Replica: testenv.Replica{
			URL: "s3://" + srv.Bucket + "/" + name, SyncInterval: "1s",
			Endpoint: endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			Extra: fmt.Sprintf("durability = %q", durability),
		}})
	}
	cfg, err := config.Parse("bench.toml", mc.TOML())
	if err != nil {
		b.Fatal(err)
	}
	os.MkdirAll(cfg.Data.Dir, 0o755)
	dm := daemon.New(cfg, quiet)
	if err := dm.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dm.Shutdown(ctx)
		})
	}
	b.Cleanup(stop)
	wd.onStall(stop)
	var ws []writer
	for i, name := range names {
		var d *litefs.DB
		for _, x := range dm.DBs() {
			if x.Name() == name {
				d = x
			}
		}
		if d == nil {
			b.Fatalf("daemon has no database %q", name)
		}
		ws = append(ws, writer{db: open(b, mc.DBPath(i), "NORMAL"), d: d, wd: wd})
	}
	return ws
}

// commitRec is one durable commit as the app saw it.
type commitRec struct {
	db         string
	txid       ltx.TXID
	start, end time.Time
	held       bool // the replica held it when the commit returned
}

func commitLatencies(cs []commitRec) latencies {
	l := make(latencies, len(cs))
	for i, c := range cs {
		l[i] = c.end.Sub(c.start)
	}
	return l
}

// runDurable commits on every writer at once, each in its own goroutine,
// for d, and returns the commits and the time from the start to the last
// one's return.
func runDurable(b *testing.B, ws []writer, d time.Duration) ([]commitRec, time.Duration) {
	var wg sync.WaitGroup
	out := make([][]commitRec, len(ws))
	errs := make([]error, len(ws))
	ends := make([]time.Time, len(ws))
	start := time.Now()
	deadline := start.Add(d)
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				if _, err := w.db.Exec(`INSERT INTO t (v) VALUES ('x')`); err != nil {
					errs[i] = err
					return
				}
				w.wd.tick()
				t1 := time.Now()
				txid := w.d.Pos().TXID
				out[i] = append(out[i], commitRec{db: w.d.Name(), txid: txid, start: t0, end: t1,
					held: w.d.ReplicaPos().TXID >= txid})
				ends[i] = t1
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			ws[i].wd.check(b)
			b.Fatal(err)
		}
	}
	var all []commitRec
	last := start
	for i := range ws {
		all = append(all, out[i]...)
		if ends[i].After(last) {
			last = ends[i]
		}
	}
	return all, last.Sub(start)
}

// runNormal commits on w for d and returns the count, the time and the
// latencies.
func runNormal(b *testing.B, w writer, d time.Duration) (int, time.Duration, latencies) {
	var lat latencies
	start := time.Now()
	deadline := start.Add(d)
	for {
		t0 := time.Now()
		if !t0.Before(deadline) {
			break
		}
		w.commit(b)
		lat = append(lat, time.Since(t0))
	}
	return len(lat), time.Since(start), lat
}
