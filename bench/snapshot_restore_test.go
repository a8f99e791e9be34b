package bench

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/daemon"
	"github.com/litefs-dev/litefs/internal/testenv"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/s3"
)

// sizeEnv sets the database size of the large benchmarks in MiB (default
// 1024, as `make bench` runs them).
const sizeEnv = "LITEFS_BENCH_MB"

func benchSize() int {
	if v, err := strconv.Atoi(os.Getenv(sizeEnv)); err == nil && v > 0 {
		return v
	}
	return 1024
}

// makeDB writes a database of about mb MiB natively.
func makeDB(b *testing.B, path string, mb int) {
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=OFF")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`); err != nil {
		b.Fatal(err)
	}
	for done := 0; done < mb; done += 16 {
		tx, _ := db.Begin()
		for i := 0; i < 256; i++ {
			if _, err := tx.Exec(`INSERT INTO t (v) VALUES (randomblob(65536))`); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
}

// maxRSS reads a live process's peak resident set (VmHWM) in MiB.
func maxRSS(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkSnapshotLarge: the daemon snapshots a large database while a
// writer commits through the mount every 10 ms. Reports the writer's worst
// commit latency during the snapshot and the daemon's peak RSS (it runs as
// its own process, `litefs mount`, so the figure is the daemon's alone).
func BenchmarkSnapshotLarge(b *testing.B) {
	settle()
	testenv.RequireFUSE(b)
	mb := benchSize()
	dir := b.TempDir()
	data, mnt, rep := filepath.Join(dir, "data"), filepath.Join(dir, "mnt"), filepath.Join(dir, "replica")
	for _, d := range []string{data, mnt, rep} {
		os.MkdirAll(d, 0o755)
	}
	makeDB(b, filepath.Join(data, "db"), mb)
	addr := testenv.FreeAddr(b)
	cfgPath := filepath.Join(dir, "litefs.toml")
	testenv.Config{FUSEDir: mnt, DataDir: data, HTTPAddr: addr,
		Replica: testenv.Replica{URL: "file://" + rep, SyncInterval: "1s"}}.Write(b, cfgPath)
	start := time.Now()
	cmd := exec.Command(filepath.Join(testenv.Binaries(b), "litefs"), "mount", "-config", cfgPath)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	})
	waitReady(b, addr, 10*time.Minute)
	startup := time.Since(start)
	rssStart := maxRSS(cmd.Process.Pid)

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(mnt, "db")+"?_busy_timeout=10000")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	stop := make(chan struct{})
	var worst time.Duration
	var commits int
	done := make(chan error, 1)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			case <-tick.C:
			}
			t0 := time.Now()
			if _, err := db.Exec(`UPDATE t SET v = randomblob(1000) WHERE id = ?`, i%1000+1); err != nil {
				done <- err
				return
			}
			worst = max(worst, time.Since(t0))
			commits++
		}
	}()
	time.Sleep(200 * time.Millisecond)
	b.ResetTimer()
	t0 := time.Now()
	resp, err := http.Post("http://"+addr+"/debug/snapshot", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	snapTime := time.Since(t0)
	if resp.StatusCode != 200 {
		close(stop)
		b.Fatalf("snapshot: %d %s", resp.StatusCode, body)
	}
	// The writer goes on until the snapshot is in the replica: copying it
	// there (1 GiB on the same disk, fsynced) must not stall commits either.
	uploaded := waitUploaded(b, rep, strings.TrimSpace(string(body)))
	upTime := time.Since(t0)
	b.StopTimer()
	close(stop)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if !uploaded {
		b.Fatalf("the snapshot (%s) did not reach the replica within 2 minutes", body)
	}
	rss := maxRSS(cmd.Process.Pid)
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-commit-ms")
	b.ReportMetric(rss, "daemon-peak-RSS-MiB")
	report("snapshot of a %d MiB database while committing every 10 ms: snapshot %v (%s), in the replica after %v, %d commits meanwhile, worst commit %v; daemon start-up with its first snapshot %v (peak RSS %.1f MiB); daemon peak RSS after the mounted snapshot %.1f MiB",
		mb, snapTime.Round(time.Millisecond), strings.TrimSpace(string(body)), upTime.Round(time.Millisecond), commits, worst.Round(time.Microsecond), startup.Round(time.Millisecond), rssStart, rss)
}

// waitUploaded waits until the file replica in dir holds the snapshot that
// /debug/snapshot answered with ("db <txid>").
func waitUploaded(b *testing.B, dir, answer string) bool {
	_, hex, ok := strings.Cut(answer, " ")
	txid, err := ltx.ParseTXID(hex)
	if !ok || err != nil {
		b.Fatalf("snapshot answer %q: %v", answer, err)
	}
	path := filepath.Join(dir, "ltx", "9", ltx.FormatFilename(1, txid))
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return true
		}
	}
	return false
}

func waitReady(b *testing.B, addr string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("litefs not ready after %v", timeout)
}

// BenchmarkRestoreLarge: restore throughput of a large replica from
// versitygw with 8 workers, ÷ the raw speed of downloading the same objects
// with the same parallelism (8 workers, 4 MiB ranged GETs, discarded): the
// limit a restore can reach. The restore runs as `restore`, its own
// process, for its peak RSS.
func BenchmarkRestoreLarge(b *testing.B) {
	settle()
	testenv.RequireFUSE(b)
	mb := benchSize()
	srv := s3test.StartVersityGW(b)
	dm, dir := s3Daemon(b, srv, srv.Endpoint, "1s", func(data string) { makeDB(b, filepath.Join(data, "db"), mb) })
	dbPath := filepath.Join(dir, "data", "db")
	if err := dm.DBs()[0].Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	dbSize := fileSizeOf(dbPath)
	cfg := srv.Config("db")
	client, err := s3.NewClient(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	plan, err := replica.Plan(context.Background(), client, 0, time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	var objBytes int64
	for _, f := range plan {
		objBytes += f.Size
	}
	b.ResetTimer()
	var restoreTime, rawTime time.Duration
	var rss float64
	var diskTime time.Duration
	for n := 0; n < b.N; n++ {
		t0 := time.Now()
		rawDownload(b, client, plan, 8, 4<<20)
		rawTime += time.Since(t0)
		diskTime += durableWrite(b, filepath.Join(b.TempDir(), "disk"), dbSize)

		out := filepath.Join(b.TempDir(), "restored.db")
		cmd := exec.Command(filepath.Join(testenv.Binaries(b), "restore"), "-parallelism", "8", "-o", out, "s3://"+srv.Bucket+"/db")
		cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL_S3="+srv.Endpoint, "AWS_REGION="+srv.Region,
			"LITEFS_ACCESS_KEY_ID="+srv.AccessKey, "LITEFS_SECRET_ACCESS_KEY="+srv.SecretKey)
		var outBuf strings.Builder
		cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
		t0 = time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		// The child's own VmHWM, sampled until it exits: rusage's maxrss
		// would count the memory this process shared with it before exec.
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var werr error
	sample:
		for {
			rss = max(rss, maxRSS(cmd.Process.Pid))
			select {
			case werr = <-done:
				break sample
			case <-time.After(5 * time.Millisecond):
			}
		}
		restoreTime += time.Since(t0)
		if werr != nil {
			b.Fatalf("restore: %v\n%s", werr, outBuf.String())
		}
	}
	b.StopTimer()
	mbps := func(bytes int64, d time.Duration) float64 {
		return float64(bytes) / (1 << 20) / (d.Seconds() / float64(b.N))
	}
	restoreMBps, rawMBps, diskMBps := mbps(dbSize, restoreTime), mbps(objBytes, rawTime), mbps(dbSize, diskTime)
	b.ReportMetric(restoreMBps, "restore-MB/s")
	b.ReportMetric(rawMBps, "raw-MB/s")
	b.ReportMetric(diskMBps, "disk-write-MB/s")
	b.ReportMetric(restoreMBps/rawMBps, "restore÷raw")
	b.ReportMetric(rss, "restore-peak-RSS-MiB")
	report("restore of a %d MiB database (%d objects, %d MiB compressed) from versitygw: %.0f MB/s of database (%v); raw download of the same objects, 8 workers: %.0f MB/s (%v); restore÷raw %.2f; writing as many bytes durably (O_DIRECT, 4 MiB writes, fsync), nothing downloaded: %.0f MB/s (%v), restore÷that %.2f; restore peak RSS %.1f MiB",
		dbSize>>20, len(plan), objBytes>>20, restoreMBps, (restoreTime / time.Duration(b.N)).Round(time.Millisecond),
		rawMBps, (rawTime / time.Duration(b.N)).Round(time.Millisecond), restoreMBps/rawMBps,
		diskMBps, (diskTime / time.Duration(b.N)).Round(time.Millisecond), restoreMBps/diskMBps, rss)
}

// durableWrite writes size bytes to a new file at path the fastest way a
// restore could (O_DIRECT, 4 MiB at a time, one fsync) and returns how long
// that took: the other limit of a restore, which the raw download does not
// pay.
func durableWrite(b *testing.B, path string, size int64) time.Duration {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|syscall.O_DIRECT, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(path)
	defer f.Close()
	buf, err := syscall.Mmap(-1, 0, 4<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE) // page aligned
	if err != nil {
		b.Fatal(err)
	}
	defer syscall.Munmap(buf)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	t0 := time.Now()
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf[:min(int64(len(buf)), size-off)&^4095], off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

func fileSizeOf(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// rawDownload reads every object in chunk-sized ranges with n workers and
// discards the bytes.
func rawDownload(b *testing.B, c replica.ReplicaClient, files []*ltx.FileInfo, n int, chunk int64) {
	type job struct {
		f   *ltx.FileInfo
		off int64
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				size := min(chunk, j.f.Size-j.off)
				rc, err := c.OpenLTXFile(context.Background(), j.f.Level, j.f.MinTXID, j.f.MaxTXID, j.off, size)
				if err == nil {
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for _, f := range files {
		for off := int64(0); off < f.Size; off += chunk {
			jobs <- job{f, off}
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// s3Daemon starts the daemon replicating to srv through endpoint (srv's own,
// or a proxy's in front of it); prepare runs on the data dir first (to put a
// database there). Returns the daemon and its directory (data/, mnt/).
func s3Daemon(b *testing.B, srv *s3test.Server, endpoint, syncInterval string, prepare func(dataDir string)) (*daemon.Daemon, string) {
	dir := b.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(data, 0o755)
	prepare(data)
	cfg, err := config.Parse("bench.toml", testenv.Config{
		FUSEDir: filepath.Join(dir, "mnt"), DataDir: data, HTTPAddr: "off",
		Replica: testenv.Replica{URL: "s3://" + srv.Bucket + "/db", SyncInterval: syncInterval,
			Endpoint: endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey},
	}.TOML())
	if err != nil {
		b.Fatal(err)
	}
	dm := daemon.New(cfg, quiet)
	if err := dm.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		dm.Shutdown(ctx)
	})
	return dm, dir
}
