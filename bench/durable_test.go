package bench

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/internal/daemon"
	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/internal/testenv"
	"github.com/litefs-dev/litefs/internal/vfs"
	"github.com/litefs-dev/litefs/replica/replicatest"
	lfs3 "github.com/litefs-dev/litefs/replica/s3"
	"github.com/litefs-dev/litefs/staging"
	"github.com/litefs-dev/litefs/wal"
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

// newPutObject returns a builder of the object a 1-row commit uploads: one
// 4 KiB table page, part full, at level 0.
func newPutObject() func(txid ltx.TXID) []byte {
	page := make([]byte, 4096)
	page[0] = 0x0d // a table leaf page
	rng := rand.New(rand.NewPCG(1, 2))
	for i := len(page) - 1536; i < len(page); i++ { // ~1.6 KiB compressed, as the commits' objects
		page[i] = byte(rng.Uint32())
	}
	return func(txid ltx.TXID) []byte {
		hdr := ltx.Header{PageSize: 4096, Commit: 2, MinTXID: txid, MaxTXID: txid,
			Timestamp: time.Now().UnixMilli(), PreApplyChecksum: ltx.ChecksumFlag | ltx.Checksum(txid)}
		obj, err := replicatest.EncodeLTX(hdr, []replicatest.Page{{Pgno: 2, Data: page}}, ltx.ChecksumFlag|ltx.Checksum(txid+1))
		if err != nil {
			panic(err)
		}
		return obj
	}
}

// putter PUTs objects of increasing TXIDs under its own replica path.
type putter struct {
	c    *lfs3.Client
	obj  func(ltx.TXID) []byte
	txid ltx.TXID
}

func (p *putter) put() (time.Duration, error) {
	p.txid++
	body := p.obj(p.txid)
	start := time.Now()
	_, err := p.c.WriteLTXFile(context.Background(), 0, p.txid, p.txid, bytes.NewReader(body))
	return time.Since(start), err
}

// parallel runs op n times in each of k goroutines (g is the goroutine)
// and returns every latency and the time until the last one finished.
func parallel(b *testing.B, wd *watchdog, k, n int, op func(g int) (time.Duration, error)) (latencies, time.Duration) {
	out := make([]latencies, k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < k; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				d, err := op(g)
				if err != nil {
					errs[g] = err
					return
				}
				out[g] = append(out[g], d)
				wd.tick()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return slices.Concat(out...), el
}

// freezer freezes one 1-page record at a time in a staging log of its own.
type freezer struct {
	l      *staging.Log
	txid   ltx.TXID
	page   []byte
	cycles latencies // freeze and the rest of the cycle's local work
}

func newFreezer(b *testing.B) *freezer {
	l, _, err := staging.Open(vfs.Default, filepath.Join(b.TempDir(), "staging"), quiet)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return &freezer{l: l, txid: 1, page: make([]byte, 4096)}
}

func (f *freezer) freeze() (time.Duration, error) {
	f.txid++
	t := f.txid
	hdr := ltx.Header{Version: ltx.Version, PageSize: 4096, Commit: 2, MinTXID: t, MaxTXID: t,
		Timestamp: time.Now().UnixMilli(), PreApplyChecksum: ltx.ChecksumFlag | ltx.Checksum(t),
		WALOffset: 32, WALSize: 4120, WALSalt1: 1, WALSalt2: 2}
	if _, err := f.l.Append(hdr, ltx.ChecksumFlag|ltx.Checksum(t+1), []wal.Page{{Pgno: 2, Offset: 32, Data: f.page}}); err != nil {
		return 0, err
	}
	start := time.Now()
	pos, err := f.l.Freeze()
	if err != nil {
		return 0, err
	}
	d := time.Since(start)
	// The rest of an upload cycle's local work, as uploader.Flush and
	// upload do it (the PUT left out): list, read the trailer and the
	// object, remove it (closing it after), write the position.
	files, err := f.l.Frozen()
	if err != nil {
		return 0, err
	}
	for _, fr := range files {
		if _, err := f.l.PostApply(fr); err != nil {
			return 0, err
		}
		r, err := f.l.Open(fr)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, r)
		if err == nil {
			err = f.l.Remove(fr)
		}
		r.Close()
		if err != nil {
			return 0, err
		}
	}
	if err := f.l.WritePos(pos, false); err != nil {
		return 0, err
	}
	f.cycles = append(f.cycles, time.Since(start))
	return d, nil
}

// putLog keeps the proxy's record of every LTX object PUT, by replica path
// (the key's first element).
type putLog struct {
	mu   sync.Mutex
	objs map[string][]putRec
}

type putRec struct {
	min, max   ltx.TXID
	start, end time.Time
}

func (l *putLog) hook(r s3test.Record) {
	if !s3test.IsObjectPut(r, ".ltx") || r.Status != 200 {
		return
	}
	min, max, err := ltx.ParseFilename(filepath.Base(r.Key))
	if err != nil {
		return
	}
	prefix, _, _ := strings.Cut(r.Key, "/")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.objs == nil {
		l.objs = map[string][]putRec{}
	}
	l.objs[prefix] = append(l.objs[prefix], putRec{min, max, r.Start, r.End})
}

// split divides each commit's latency at the proxy's record of the first
// PUT that carried it (the commit's database name is its replica path): before it reached the proxy, the PUT (proxy to
// versitygw and back), and after the proxy's reply.
func (l *putLog) split(cs []commitRec) (pre, put, post latencies, unmatched int) {
	byDB := map[string][]putRec{}
	l.mu.Lock()
	for _, c := range cs {
		if _, ok := byDB[c.db]; !ok {
			objs := slices.Clone(l.objs[c.db])
			sort.Slice(objs, func(i, j int) bool { return objs[i].max < objs[j].max })
			byDB[c.db] = objs
		}
	}
	l.mu.Unlock()
	for _, c := range cs {
		objs := byDB[c.db]
		i := sort.Search(len(objs), func(i int) bool { return objs[i].max >= c.txid })
		if i == len(objs) || objs[i].min > c.txid || objs[i].start.Before(c.start) {
			unmatched++
			continue
		}
		o := objs[i]
		pre, put, post = append(pre, o.start.Sub(c.start)), append(put, o.end.Sub(o.start)), append(post, c.end.Sub(o.end))
	}
	return pre, put, post, unmatched
}

// snapshots counts the snapshot objects (TXID 1 to N) PUT under prefix
// within the windows.
func (l *putLog) snapshots(prefix string, windows [][2]time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, o := range l.objs[prefix] {
		for _, w := range windows {
			if o.min == 1 && !o.start.Before(w[0]) && !o.end.After(w[1]) {
				n++
			}
		}
	}
	return n
}

// overlap is how many of the prefixes' PUTs were in flight at once within
// the windows: the mean (PUT time ÷ window time) and the maximum.
func (l *putLog) overlap(prefixes []string, windows [][2]time.Time) (mean float64, peak, count int) {
	type ev struct {
		at time.Time
		d  int
	}
	l.mu.Lock()
	var evs []ev
	var busy, span time.Duration
	for _, w := range windows {
		span += w[1].Sub(w[0])
		for _, p := range prefixes {
			for _, o := range l.objs[p] {
				if o.start.Before(w[0]) || o.end.After(w[1]) {
					continue
				}
				count++
				busy += o.end.Sub(o.start)
				evs = append(evs, ev{o.start, 1}, ev{o.end, -1})
			}
		}
	}
	l.mu.Unlock()
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].at.Equal(evs[j].at) {
			return evs[i].d < evs[j].d
		}
		return evs[i].at.Before(evs[j].at)
	})
	cur := 0
	for _, e := range evs {
		cur += e.d
		peak = max(peak, cur)
	}
	return busy.Seconds() / span.Seconds(), peak, count
}

// stallAfter: no commit, PUT or freeze for this long and the benchmark
// fails instead of hanging. A daemon that deadlocked holds the app inside
// a FUSE request of its own mount, so the process could not even exit
// (seen: under replica-on-fsync, a checkpoint's WAL fsync waits for an
// upload whose snapshot waits, in pinWAL, for that checkpoint's lock).
const stallAfter = 20 * time.Second

// watchdog notices a stall, writes every goroutine's stack to a file, shuts
// the daemons down (which answers the waiting requests) and fails the
// benchmark with what it saw.
type watchdog struct {
	progress atomic.Int64
	msg      atomic.Pointer[string]
	mu       sync.Mutex
	stops    []func()
	done     chan struct{}
}

func newWatchdog() *watchdog { return &watchdog{done: make(chan struct{})} }

func (w *watchdog) tick()  { w.progress.Add(1) }
func (w *watchdog) close() { close(w.done) }

func (w *watchdog) onStall(stop func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stops = append(w.stops, stop)
}

// check fails b if the watchdog fired.
func (w *watchdog) check(b *testing.B) {
	if m := w.msg.Load(); m != nil {
		b.Fatal(*m)
	}
}

func (w *watchdog) run() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last, since := w.progress.Load(), time.Now()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		if p := w.progress.Load(); p != last {
			last, since = p, time.Now()
			continue
		}
		if time.Since(since) < stallAfter {
			continue
		}
		buf := make([]byte, 16<<20)
		buf = buf[:runtime.Stack(buf, true)]
		path := filepath.Join(os.TempDir(), fmt.Sprintf("litefs-bench-durable-stall-%d.txt", os.Getpid()))
		_ = os.WriteFile(path, buf, 0o644)
		m := fmt.Sprintf("STALL: nothing completed for %v; goroutines in Capture.SyncWAL→waitDurable: %d, in uploader.takeSnapshot→pinWAL→ofdLock: %d, in Capture.WriteWAL→waitDurable: %d (all stacks in %s); daemons shut down to release the app",
			stallAfter, stacksWith(buf, "litefs.(*Capture).SyncWAL"), stacksWith(buf, "litefs.ofdLock"), stacksWith(buf, "litefs.(*Capture).WriteWAL"), path)
		w.msg.Store(&m)
		report("durable: %s", m)
		w.mu.Lock()
		stops := slices.Clone(w.stops)
		w.mu.Unlock()
		for _, stop := range stops {
			stop()
		}
		return
	}
}

// stacksWith counts the goroutines whose stack has fn.
func stacksWith(dump []byte, fn string) int {
	n := 0
	for _, g := range bytes.Split(dump, []byte("\n\ngoroutine ")) {
		if bytes.Contains(g, []byte(fn)) {
			n++
		}
	}
	return n
}
