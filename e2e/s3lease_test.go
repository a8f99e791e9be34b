package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/staging"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica"
)

// volumeID is the lease owner id a daemon keeps on its volume.
func (e *s3env) volumeID() string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dataDir, staging.DirName, "id"))
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// restoreInto does what the init container does before a daemon starts on
// an empty volume: restore the replica into the data dir.
func (e *s3env) restoreInto() ltx.Pos {
	e.t.Helper()
	pos, err := replica.Restore(context.Background(), e.client(), replica.RestoreOptions{OutputPath: filepath.Join(e.dataDir, "db")})
	if err != nil {
		e.t.Fatalf("restore into the data dir: %v", err)
	}
	return pos
}

// waitChildCaughtUp waits until the child daemon's replica holds what it
// staged, and returns that TXID.
func (e *s3env) waitChildCaughtUp() ltx.TXID {
	e.t.Helper()
	var txid float64
	waitFor(e.t, 30*time.Second, "the child daemon to upload what it staged", func() bool {
		txid = metric(e.t, e.httpAddr, "litefs_db_txid")
		return txid > 0 && metric(e.t, e.httpAddr, "litefs_replica_txid") == txid && metric(e.t, e.httpAddr, "litefs_staging_bytes") == 0
	})
	return ltx.TXID(txid)
}

func insertRows(t testing.TB, db *sql.DB, who string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		mustExec(t, db, `INSERT INTO t (who, v) VALUES (?, randomblob(100))`, who)
	}
}

// ltxPuts returns the object PUTs a proxy forwarded that the server
// accepted (status 200), oldest first.
func ltxPuts(p *s3test.Proxy) []s3test.Record {
	var out []s3test.Record
	for _, r := range p.Records() {
		if s3test.IsObjectPut(r, ".ltx") && r.Status == http.StatusOK {
			out = append(out, r)
		}
	}
	return out
}

// Two daemons on one replica path: the second cannot take the lease, says
// so and uploads nothing while the first keeps one valid chain; it takes
// over once the TTL has passed after the first dies uncleanly, and at once
// after a clean stop.
func TestS3LeaseTwoDaemons(t *testing.T) {
	srv := s3test.StartVersityGW(t)

	t.Run("unclean", func(t *testing.T) {
		a := newS3Env(t, srv, "unclean", "0s")
		a.leaseTTL = "2s"
		acmd := a.startProcess()
		adb := openDB(t, filepath.Join(a.mountDir, "db"), "_journal_mode=WAL")
		adb.SetMaxOpenConns(1)
		mustExec(t, adb, `CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, v BLOB)`)
		insertRows(t, adb, "a", 100)
		a.waitChildCaughtUp()
		aID := a.volumeID()

		// The second daemon: its own volume (restored from the replica by
		// the init container), mount and proxy, the same replica path.
		b := newS3Env(t, srv, "unclean", "0s")
		b.leaseTTL = "2s"
		bp := s3test.StartProxy(t, srv.Endpoint)
		b.endpoint = bp.URL
		b.restoreInto()
		b.start()
		bStart := b.db().ReplicaPos()
		bdb := b.open("_journal_mode=WAL")
		bdb.SetMaxOpenConns(1)
		insertRows(t, bdb, "b", 10)
		waitFor(t, 15*time.Second, "the second daemon to log that the lease is held", func() bool {
			return strings.Contains(b.logs.String(), "leased by "+aID)
		})
		for _, want := range []string{"another litefs is writing it", "waiting for the lease"} {
			if !strings.Contains(b.logs.String(), want) {
				t.Fatalf("the second daemon's log does not say %q:\n%s", want, b.logs)
			}
		}

		// The first goes on; the replica stays its one chain.
		insertRows(t, adb, "a", 50)
		aLast := a.waitChildCaughtUp()
		checkChain(t, a.client())
		out, rpos := a.restore(0)
		if rpos.TXID != aLast {
			t.Fatalf("restored TXID %d, the first daemon is at %d", rpos.TXID, aLast)
		}
		checkRestored(t, out, a.liveChecksum(), dump(t, adb))
		if got := b.db().Metrics.UploadOK.Load(); got != 0 {
			t.Fatalf("the second daemon uploaded %d objects without the lease", got)
		}
		if puts := ltxPuts(bp); len(puts) != 0 || bp.CountFunc(func(r s3test.Record) bool { return s3test.IsObjectPut(r, ".ltx") }) != 0 {
			t.Fatalf("the second daemon sent LTX PUTs without the lease: %+v", puts)
		}
		if got := b.db().ReplicaPos(); got != bStart {
			t.Fatalf("the second daemon's replica position moved from %d to %d", bStart.TXID, got.TXID)
		}
		if st, err := b.db().State(); st != litefs.StateReplicating {
			t.Fatalf("the waiting daemon is %s (%v): waiting for a lease is not fencing", st, err)
		}
		if l := readLease(t, b.client()); l.Owner != aID || l.Released {
			t.Fatalf("lease %+v, want held by %s", l, aID)
		}

		// kill -9 the first: its lease blocks the second until it expires.
		adb.Close()
		if err := acmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-a.done
		killed := time.Now()
		lease := readLease(t, b.client())
		if lease.Owner != aID || lease.Released {
			t.Fatalf("lease after kill -9: %+v", lease)
		}
		waitFor(t, 30*time.Second, "the second daemon to take over", func() bool {
			return b.db().ReplicaPos().TXID > aLast
		})
		puts := ltxPuts(bp)
		if len(puts) == 0 {
			t.Fatal("the second daemon's replica position moved with no PUT")
		}
		firstPut := puts[0].Start
		t.Logf("kill -9 at %s, the dead lease expired at %s, the second daemon's first upload at %s (%v after the kill, %v after expiry)",
			killed.Format("15:04:05.000"), lease.Expires.Format("15:04:05.000"), firstPut.Format("15:04:05.000"),
			firstPut.Sub(killed).Round(time.Millisecond), firstPut.Sub(lease.Expires).Round(time.Millisecond))
		if firstPut.Before(lease.Expires) {
			t.Fatalf("the second daemon uploaded at %s, before the dead owner's lease expired at %s", firstPut, lease.Expires)
		}
		if d := firstPut.Sub(lease.Expires); d > 12*time.Second {
			t.Fatalf("the second daemon took %v after the lease expired to take over", d)
		}
		if l := readLease(t, b.client()); l.Owner != b.volumeID() {
			t.Fatalf("lease after takeover: %+v, want %s", l, b.volumeID())
		}
		if !strings.Contains(b.logs.String(), "another writer advanced the replica") {
			t.Fatalf("the second daemon did not say it continues after the first's history:\n%s", b.logs)
		}

		// After the takeover the replica is the second's database.
		insertRows(t, bdb, "b", 20)
		b.verify(bdb)
		checkChain(t, b.client())
		if st, _ := b.db().State(); st != litefs.StateReplicating {
			t.Fatalf("state %s after takeover", st)
		}
	})

	// The owner is the volume: a daemon restarted on the same volume after
	// a kill -9 takes its own lease back at once, without waiting the TTL.
	t.Run("same-volume", func(t *testing.T) {
		const ttl = 30 * time.Second
		a := newS3Env(t, srv, "same", "0s")
		a.leaseTTL = ttl.String()
		acmd := a.startProcess()
		adb := openDB(t, filepath.Join(a.mountDir, "db"), "_journal_mode=WAL")
		adb.SetMaxOpenConns(1)
		mustExec(t, adb, `CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, v BLOB)`)
		insertRows(t, adb, "a", 20)
		a.waitChildCaughtUp()
		adb.Close()
		if err := acmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-a.done
		if l := readLease(t, a.client()); l.Owner != a.volumeID() || l.Released || time.Until(l.Expires) < ttl/2 {
			t.Fatalf("lease after kill -9: %+v; want ours, unexpired for a while", l)
		}
		a.start() // detaches the dead mount
		db := a.open("_journal_mode=WAL")
		db.SetMaxOpenConns(1)
		insertRows(t, db, "a", 5)
		t0 := time.Now()
		a.verify(db)
		if d := time.Since(t0); d > ttl/4 {
			t.Fatalf("the restarted daemon took %v to upload on its own volume's lease", d)
		}
		checkChain(t, a.client())
	})

	t.Run("clean", func(t *testing.T) {
		const ttl = 30 * time.Second
		x := newS3Env(t, srv, "clean", "0s")
		x.leaseTTL = ttl.String()
		x.start()
		xdb := x.open("_journal_mode=WAL")
		xdb.SetMaxOpenConns(1)
		mustExec(t, xdb, `CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, v BLOB)`)
		insertRows(t, xdb, "x", 50)
		x.flush()
		xID := x.volumeID()

		y := newS3Env(t, srv, "clean", "0s")
		y.leaseTTL = ttl.String()
		yp := s3test.StartProxy(t, srv.Endpoint)
		y.endpoint = yp.URL
		y.restoreInto()
		y.start()
		ydb := y.open("_journal_mode=WAL")
		ydb.SetMaxOpenConns(1)
		insertRows(t, ydb, "y", 10)
		waitFor(t, 15*time.Second, "the second daemon to log that the lease is held", func() bool {
			return strings.Contains(y.logs.String(), "leased by "+xID)
		})
		insertRows(t, xdb, "x", 10)
		xLast := x.flush()
		if got := y.db().Metrics.UploadOK.Load(); got != 0 {
			t.Fatalf("the second daemon uploaded %d objects without the lease", got)
		}

		// A clean stop releases the lease: no waiting out the TTL.
		xdb.Close()
		x.stop()
		stopped := time.Now()
		if l := readLease(t, y.client()); !l.Released || l.Owner != xID {
			t.Fatalf("lease after a clean stop: %+v, want released by %s", l, xID)
		}
		took := waitFor(t, ttl, "the second daemon to take over after a clean stop", func() bool {
			return y.db().ReplicaPos().TXID > xLast.TXID
		})
		t.Logf("the second daemon took over %v after the first stopped cleanly (lease TTL %v)", took.Round(time.Millisecond), ttl)
		if took > 3*time.Second {
			t.Errorf("the second daemon took %v to take over a released lease; want at once (TTL %v)", took.Round(time.Millisecond), ttl)
		}
		if l := readLease(t, y.client()); l.Owner != y.volumeID() {
			t.Fatalf("lease after takeover: %+v", l)
		}
		insertRows(t, ydb, "y", 10)
		y.verify(ydb)
		checkChain(t, y.client())
		if puts := ltxPuts(yp); len(puts) == 0 || puts[0].Start.Before(stopped) {
			t.Fatalf("the second daemon's first upload is not after the first stopped: %+v", puts)
		}
	})
}

// A writer cut off from S3 longer than its lease: another daemon takes the
// replica over; when the first can reach S3 again it finds its lease taken,
// stops uploading and says so (fenced, /readyz unready), and overwrites
// nothing: the replica stays the second's history.
func TestS3LeaseFencedAfterPartition(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	a := newS3Env(t, srv, "db", "0s")
	a.leaseTTL = "2s"
	pa := s3test.StartProxy(t, srv.Endpoint)
	a.endpoint = pa.URL
	adm := a.start()
	adb := a.open("_journal_mode=WAL")
	adb.SetMaxOpenConns(1)
	mustExec(t, adb, `CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT, v BLOB)`)
	insertRows(t, adb, "a", 20)
	a.flush()

	// The partition: every request of the first daemon is reset. Its app
	// commits more than the second daemon's will (staged, not uploaded).
	cut := pa.Inject(s3test.Fault{Action: s3test.Reset, Times: -1})
	insertRows(t, adb, "a", 60)

	b, bdb := takeOverLapsedLease(t, srv, 20)
	if pa.Applied(cut) == 0 {
		t.Fatal("the first daemon sent nothing during the partition")
	}

	// The partition heals: the first finds the lease taken and stops.
	pa.Remove(cut)
	healed := time.Now()
	waitFor(t, 30*time.Second, "the first daemon to notice it lost the lease", func() bool {
		st, _ := a.db().State()
		return st == litefs.StateStopped
	})
	fencedAt := time.Now()
	_, err := a.db().State()
	t.Logf("fenced %v after the partition healed: %v", time.Since(healed).Round(time.Millisecond), err)
	if err == nil || !strings.Contains(err.Error(), "another writer") {
		t.Fatalf("the first daemon stopped with %v; want it to name another writer", err)
	}
	if v := metric(t, adm.HTTPAddr(), "litefs_fenced"); v != 1 {
		t.Fatalf("litefs_fenced %v on the fenced daemon", v)
	}
	resp, herr := http.Get("http://" + adm.HTTPAddr() + "/readyz")
	if herr != nil {
		t.Fatal(herr)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d on the fenced daemon", resp.StatusCode)
	}
	for _, r := range pa.Records() {
		if r.Start.After(healed) && s3test.IsObjectPut(r, ".ltx") {
			t.Fatalf("the fenced daemon sent %s %s after losing its lease", r.Method, r.Key)
		}
	}
	// The app on the fenced daemon still commits (locally).
	insertRows(t, adb, "a", 5)

	// The replica is the second's.
	insertRows(t, bdb, "b", 10)
	bPos := b.verify(bdb)
	checkChain(t, b.client())
	if a.db().Pos().TXID <= bPos.TXID {
		t.Fatalf("the fenced daemon staged up to %d, the second is at %d: the test wants the fenced one ahead", a.db().Pos().TXID, bPos.TXID)
	}

	// The second goes idle: it renews its lease only while uploading, so
	// the lease lapses. Then the fenced daemon is stopped cleanly (its pod
	// is restarted): a fenced daemon must still upload nothing.
	l := readLease(t, b.client())
	time.Sleep(time.Until(l.Expires) + time.Second)
	adb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serr := adm.Shutdown(ctx)
	a.env.dm = nil
	t.Logf("the fenced daemon's shutdown: %v", serr)
	var late []string
	for _, r := range pa.Records() {
		if r.Start.After(fencedAt) && (s3test.IsObjectPut(r, ".ltx") || s3test.IsObjectPut(r, "lock.json")) {
			late = append(late, fmt.Sprintf("%s %s %v -> %d", r.Method, r.Key, r.Header, r.Status))
		}
	}
	if len(late) > 0 {
		t.Errorf("the fenced daemon took the lapsed lease at shutdown (then released it): %s", strings.Join(late, "; "))
	}
	out := filepath.Join(t.TempDir(), "after.db")
	if _, err := replica.Restore(context.Background(), b.client(), replica.RestoreOptions{OutputPath: out}); err != nil {
		t.Fatalf("restore of the latest state after the fenced daemon's shutdown: %v", err)
	}
	checkRestored(t, out, bPos.Checksum, dump(t, bdb))

	// The second, the rightful writer, goes on replicating.
	insertRows(t, bdb, "b", 5)
	if err := b.db().Flush(context.Background()); err != nil {
		t.Errorf("the second daemon's next upload after the fenced one shut down: %v", err)
	}
	if st, err := b.db().State(); st != litefs.StateReplicating {
		t.Fatalf("the second daemon is %s after the fenced one shut down: %v", st, err)
	}
	b.verify(bdb)
}

// takeOverLapsedLease starts a second daemon (lease-ttl 2s) on a volume
// restored from the replica, commits rows rows as "b", and waits until it
// took the first daemon's lapsed lease and uploaded them. It returns the
// daemon's env and its app's connection.
func takeOverLapsedLease(t *testing.T, srv *s3test.Server, rows int) (*s3env, *sql.DB) {
	t.Helper()
	b := newS3Env(t, srv, "db", "0s")
	b.leaseTTL = "2s"
	b.restoreInto()
	b.start()
	bStart := b.db().ReplicaPos().TXID
	bdb := b.open("_journal_mode=WAL")
	bdb.SetMaxOpenConns(1)
	insertRows(t, bdb, "b", rows)
	waitFor(t, 20*time.Second, "the second daemon to take over the lapsed lease", func() bool {
		return b.db().ReplicaPos().TXID > bStart
	})
	return b, bdb
}
