package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/replica/replicatest"
)

// checkNotFenced asserts the database replicates and /metrics says
// litefs_fenced 0.
func (e *s3env) checkNotFenced() {
	e.t.Helper()
	if st, err := e.db().State(); st != litefs.StateReplicating {
		e.t.Fatalf("state %s (%v), want replicating", st, err)
	}
	if v := metric(e.t, e.dm.HTTPAddr(), "litefs_fenced"); v != 0 {
		e.t.Fatalf("litefs_fenced %v", v)
	}
}

// A PUT whose reply is lost is retried and recognised as ours, not
// reported as fencing: the first PUT of the lease, of a lease renewal and
// of the first LTX objects (the snapshot and segments) all lose their
// replies after versitygw stored them. Then 503s, 500s, a reset and a slow
// reply on LTX PUTs: retried, never fencing. Restore = live throughout.
func TestS3LostReply(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	p := s3test.StartProxy(t, srv.Endpoint)
	e := newS3Env(t, srv, "db", "0s")
	e.endpoint = p.URL
	e.leaseTTL = "2s"

	var mu sync.Mutex
	seen := map[string]bool{}
	firstPut := func(r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if seen[r.URL.Path] {
			return false
		}
		seen[r.URL.Path] = true
		return true
	}
	ltxDrop := p.Inject(s3test.Fault{Method: "PUT", Key: ".ltx", Match: firstPut, Times: 3, Action: s3test.DropResponse})
	leaseDrop := p.Inject(s3test.Fault{Method: "PUT", Key: "lock.json", Action: s3test.DropResponse,
		Match: func(r *http.Request) bool { return r.Header.Get("If-None-Match") == "*" }})

	e.start()
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	e.flush()
	// The lease is held now: the next If-Match PUT of it is a renewal.
	renewDrop := p.Inject(s3test.Fault{Method: "PUT", Key: "lock.json", Action: s3test.DropResponse,
		Match: func(r *http.Request) bool { return r.Header.Get("If-Match") != "" }})
	// Long enough for the 2 s lease to need a renewal (after half its TTL).
	start := time.Now()
	for time.Since(start) < 1500*time.Millisecond || p.Applied(ltxDrop) < 3 || p.Applied(renewDrop) < 1 {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("faults applied: ltx %d/3, lease %d/1, renewal %d/1", p.Applied(ltxDrop), p.Applied(leaseDrop), p.Applied(renewDrop))
		}
		mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(200))`)
		e.flush()
		time.Sleep(50 * time.Millisecond)
	}
	e.checkNotFenced()
	e.verify(db)
	if p.Applied(leaseDrop) != 1 {
		t.Fatalf("the lease's first PUT was not dropped (%d)", p.Applied(leaseDrop))
	}

	// Each dropped object PUT was sent again, answered 412 (it exists), and
	// resolved as ours by a HEAD.
	recs := p.Records()
	for _, dropped := range recs {
		if dropped.Action != s3test.DropResponse {
			continue
		}
		if dropped.Status != http.StatusOK {
			t.Fatalf("dropped request %s %s: versitygw answered %d, want 200 (stored)", dropped.Method, dropped.Key, dropped.Status)
		}
		var again, pf, head int
		for _, r := range recs[dropped.Seq-recs[0].Seq+1:] {
			if r.Key != dropped.Key {
				continue
			}
			switch {
			case r.Method == "PUT":
				again++
				if r.ClientStatus == http.StatusPreconditionFailed {
					pf++
				}
			case r.Method == "HEAD" || r.Method == "GET":
				head++
			}
		}
		t.Logf("dropped reply of PUT %s (%v): then %d PUTs (%d answered 412), %d HEAD/GET", dropped.Key, dropped.Header, again, pf, head)
		if again == 0 || pf == 0 || head == 0 {
			t.Fatalf("PUT %s lost its reply: %d more PUTs, %d answered 412, %d HEAD/GET; want a retry, a 412 and a look at the object", dropped.Key, again, pf, head)
		}
	}
	t.Logf("upload errors seen by the uploader: %d", e.db().Metrics.UploadErr.Load())

	// Errors the SDK and the uploader retry: 503 SlowDown and 500 on every
	// attempt of one upload (more than the SDK's own retries), a reset
	// connection, a slow reply.
	for _, f := range []s3test.Fault{
		{Method: "PUT", Key: ".ltx", Times: 4, Action: s3test.Status, Status: http.StatusServiceUnavailable},
		{Method: "PUT", Key: ".ltx", Times: 4, Action: s3test.Status, Status: http.StatusInternalServerError},
		{Method: "PUT", Key: ".ltx", Action: s3test.Reset},
		{Method: "PUT", Key: ".ltx", Action: s3test.Delay, Delay: 1500 * time.Millisecond},
	} {
		fault := p.Inject(f)
		for i := 0; p.Applied(fault) == 0; i++ {
			if i == 100 {
				t.Fatalf("fault %v never applied", f.Action)
			}
			mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(200))`)
			time.Sleep(10 * time.Millisecond)
		}
		t0 := time.Now()
		pos := e.verify(db)
		e.checkNotFenced()
		t.Logf("%v %d: replica caught up at TXID %d in %v (fault applied %d times)", f.Action, f.Status, pos.TXID, time.Since(t0).Round(time.Millisecond), p.Applied(fault))
		p.Remove(fault)
	}
	checkChain(t, e.client())
	if up := e.db().Metrics.UploadErr.Load(); up == 0 {
		t.Fatalf("no upload error counted after four rounds of injected failures")
	}
}

// An outage where requests get no answer at all (a black hole: a dropped
// connection behind a NAT or load balancer, a partition) rather than a
// stopped server whose kernel still queues them: for 5 s every request
// hangs. The app's commits go on; once the network is back, the uploader
// must give up the hung request and catch up promptly, not after the SDK's
// 2-minute response-header timeout. LITEFS_TEST_BLACKHOLE_WAIT=1 waits up
// to 3 minutes instead of 20 s, to see when it does recover.
func TestS3OutageBlackHole(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	p := s3test.StartProxy(t, srv.Endpoint)
	e := newS3Env(t, srv, "db", "0s")
	e.endpoint = p.URL
	e.start()
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	e.flush()

	hole := p.Inject(s3test.Fault{Action: s3test.Delay, Delay: 10 * time.Minute, Times: -1})
	start := time.Now()
	var lats durations
	for time.Since(start) < 5*time.Second {
		t0 := time.Now()
		mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(300))`)
		lats = append(lats, time.Since(t0))
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("commit latency while every S3 request hangs: %v", lats)
	if p.Applied(hole) == 0 {
		t.Fatal("no request reached the black hole during 5 s of commits")
	}
	staged := e.db().Pos()
	if r := e.db().ReplicaPos(); r.TXID >= staged.TXID {
		t.Fatalf("replica at %d during the outage, staged %d", r.TXID, staged.TXID)
	}
	p.Remove(hole)
	back := time.Now()
	limit := 20 * time.Second
	if os.Getenv("LITEFS_TEST_BLACKHOLE_WAIT") != "" {
		limit = 3 * time.Minute
	}
	for e.db().ReplicaPos().TXID < staged.TXID {
		if time.Since(back) > limit {
			t.Fatalf("replica still at TXID %d (staged %d) %v after S3 answers again: the upload sent during the outage hangs (requests in flight: %d)",
				e.db().ReplicaPos().TXID, staged.TXID, limit, p.CountFunc(func(r s3test.Record) bool { return !r.Done() }))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("caught up %v after S3 answered again", time.Since(back).Round(time.Millisecond))
	e.checkNotFenced()
	e.verify(db)
}

// The contrast to TestS3LostReply: a 412 on an object that is NOT ours
// (another writer put different bytes at the next key) is fencing: uploads
// stop, the daemon says so (litefs_fenced 1), the other object is not
// overwritten, and a clean stop uploads nothing more.
func TestS3ForeignObjectFences(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	p := s3test.StartProxy(t, srv.Endpoint)
	e := newS3Env(t, srv, "db", "0s")
	e.endpoint = p.URL
	e.start()
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(200))`)
	e.verify(db)

	next := e.db().Pos().TXID + 1
	foreign := replicatest.NewFile(t, next, next, time.Now())
	if _, err := e.client().WriteLTXFile(context.Background(), 0, next, next, bytes.NewReader(foreign)); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(200))`)
	if got := e.db().Pos().TXID; got != next {
		t.Fatalf("one commit made TXID %d, want %d", got, next)
	}
	waitFor(t, 20*time.Second, "the daemon to stop at a foreign object", func() bool {
		st, _ := e.db().State()
		return st == litefs.StateStopped
	})
	fencedAt := time.Now()
	_, err := e.db().State()
	t.Logf("stopped at a foreign object: %v", err)
	if v := metric(t, e.dm.HTTPAddr(), "litefs_fenced"); v != 1 {
		t.Fatalf("litefs_fenced %v after a conflict with another writer's object (%v)", v, err)
	}
	// A fenced daemon uploads nothing more, not even when it is stopped
	// cleanly (releasing the lease it still holds is fine).
	db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serr := e.dm.Shutdown(ctx)
	e.env.dm = nil
	t.Logf("the fenced daemon's shutdown: %v", serr)
	for _, r := range p.Records() {
		if r.Start.After(fencedAt) && s3test.IsObjectPut(r, ".ltx") {
			t.Errorf("the fenced daemon sent PUT %s %v (-> %d) after it stopped uploading", r.Key, r.Header, r.ClientStatus)
		}
	}
	rc, err := e.client().OpenLTXFile(context.Background(), 0, next, next, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, foreign) {
		t.Fatalf("the other writer's object %s was overwritten (%v)", next, err)
	}
}
