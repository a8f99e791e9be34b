package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/staging"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/internal/s3test"
)

// 5,000 transactions through a real mount to versitygw; the latest state,
// a -txid boundary and a -timestamp in the middle restore exactly.
func TestS3FiveThousandTransactions(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	e := newS3Env(t, srv, "app/db", "0s")
	e.start()
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)`)
	mustExec(t, db, `CREATE INDEX t_k ON t (k)`)
	first := e.flush()

	type mark struct {
		pos  staging.Pos
		at   time.Time
		dump string
	}
	var marks []mark
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	const phases, perPhase = 5, 1000
	for phase := 0; phase < phases; phase++ {
		for i := 0; i < perPhase; i++ {
			switch {
			case i%100 == 99: // a multi-row transaction: still one TXID
				tx, err := db.Begin()
				if err != nil {
					t.Fatal(err)
				}
				for j := 0; j < 20; j++ {
					mustExec(t, tx, `INSERT INTO t (k, v) VALUES (?, ?)`, rng.IntN(1000), strings.Repeat("m", rng.IntN(300)))
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			case i%10 == 3:
				// Always matches a row: an UPDATE that changes nothing
				// commits nothing.
				mustExec(t, db, `UPDATE t SET v = v || 'u' WHERE id = coalesce((SELECT max(id) FROM t WHERE id <= ?), (SELECT max(id) FROM t))`, rng.IntN(5000))
			case i%25 == 7:
				mustExec(t, db, `DELETE FROM t WHERE id = (SELECT min(id) FROM t)`)
			default:
				mustExec(t, db, `INSERT INTO t (k, v) VALUES (?, ?)`, rng.IntN(1000), strings.Repeat("x", rng.IntN(200)))
			}
		}
		pos := e.flush()
		// A timestamp strictly between this phase's last commit and the
		// next phase's first (timestamps are milliseconds).
		time.Sleep(3 * time.Millisecond)
		at := time.Now()
		time.Sleep(3 * time.Millisecond)
		marks = append(marks, mark{pos: pos, at: at, dump: dump(t, db)})
	}
	elapsed := time.Since(start)
	last := marks[len(marks)-1].pos
	if n := last.TXID - first.TXID; n != phases*perPhase {
		t.Fatalf("%d transactions made %d TXIDs (%d..%d)", phases*perPhase, n, first.TXID, last.TXID)
	}
	t.Logf("%d transactions in %v (%.0f/s, flushes included)", phases*perPhase, elapsed.Round(time.Millisecond), float64(phases*perPhase)/elapsed.Seconds())

	// Latest: identical content and checksum.
	final := e.verify(db)
	if final.TXID != last.TXID {
		t.Fatalf("verify at TXID %d, last mark %d", final.TXID, last.TXID)
	}
	snaps, segs := checkChain(t, e.client())
	t.Logf("replica: %d snapshots, %d level-0 objects", len(snaps), len(segs))

	// Every mark is an object boundary: restore at it, through the CLI with
	// the config (TXID as Litestream prints it, and in decimal).
	for i, m := range []mark{marks[1], marks[3]} {
		out := filepath.Join(t.TempDir(), "txid.db")
		arg := m.pos.TXID.String()
		if i == 1 {
			arg = strconv.FormatUint(uint64(m.pos.TXID), 10)
		}
		code, msg := runRestoreCLI(t, "-config", e.cfgPath, "-o", out, "-txid", arg, "-v", filepath.Join(e.mountDir, "db"))
		if code != 0 {
			t.Fatalf("restore -txid %s: exit %d: %s", arg, code, msg)
		}
		checkRestored(t, out, m.pos.Checksum, m.dump)
	}

	// A timestamp in the middle gives the state committed at or before it.
	m := marks[2]
	out := filepath.Join(t.TempDir(), "ts.db")
	ts := m.at.UTC().Format(time.RFC3339Nano)
	if code, msg := runRestoreCLI(t, "-config", e.cfgPath, "-o", out, "-timestamp", ts, filepath.Join(e.mountDir, "db")); code != 0 {
		t.Fatalf("restore -timestamp %s: exit %d: %s", ts, code, msg)
	}
	checkRestored(t, out, m.pos.Checksum, m.dump)

	// A TXID inside an object is refused, naming the nearest boundaries.
	tried := false
	ends := map[ltx.TXID]bool{}
	for _, f := range append(append([]*ltx.FileInfo{}, snaps...), segs...) {
		ends[f.MaxTXID] = true
	}
	for _, s := range segs {
		if s.MinTXID < s.MaxTXID && !ends[s.MinTXID] {
			out := filepath.Join(t.TempDir(), "inside.db")
			code, msg := runRestoreCLI(t, "-config", e.cfgPath, "-o", out, "-txid", s.MinTXID.String(), filepath.Join(e.mountDir, "db"))
			if code == 0 || !strings.Contains(msg, "boundar") {
				t.Fatalf("restore -txid %s inside object %s-%s: exit %d: %s", s.MinTXID, s.MinTXID, s.MaxTXID, code, msg)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatalf("failed restore left %s", out)
			}
			tried = true
			break
		}
	}
	if !tried {
		t.Logf("no level-0 object holds more than one transaction: -txid inside an object not tried")
	}
}

// versitygw SIGSTOPped for 5 s during a write load: the app's commits go on,
// staging grows, and once it is back the replica catches up with no gap.
func TestS3Outage(t *testing.T) {
	srv := s3test.StartVersityGW(t)
	e := newS3Env(t, srv, "db", "0s")
	dm := e.start()
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	e.flush()

	const (
		before = iota
		during
		after
	)
	var phase atomic.Int32
	var committed atomic.Int64
	var mu sync.Mutex
	lats := [3]durations{}
	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		defer close(werr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			p := phase.Load()
			t0 := time.Now()
			if _, err := db.Exec(`INSERT INTO t (v) VALUES (randomblob(300))`); err != nil {
				werr <- fmt.Errorf("commit %d (phase %d): %w", committed.Load(), p, err)
				return
			}
			d := time.Since(t0)
			mu.Lock()
			lats[p] = append(lats[p], d)
			mu.Unlock()
			committed.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	stopWriter := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	})

	time.Sleep(time.Second)
	stagingBefore := metric(t, dm.HTTPAddr(), "litefs_staging_bytes")
	repBefore := e.db().ReplicaPos().TXID
	phase.Store(during)
	srv.Pause(t)
	paused := time.Now()
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			srv.Resume(t)
		}
	})
	// Commits keep going during the outage: every second shows progress.
	maxStaging := stagingBefore
	for time.Since(paused) < 5*time.Second {
		n := committed.Load()
		time.Sleep(time.Second)
		select {
		case err := <-werr:
			t.Fatalf("writer failed during the outage: %v", err)
		default:
		}
		if committed.Load() == n {
			t.Errorf("no commit for 1s while S3 is down (at %v): the app is blocked", time.Since(paused).Round(time.Millisecond))
		}
		maxStaging = max(maxStaging, metric(t, dm.HTTPAddr(), "litefs_staging_bytes"))
		// An outage alone is not unreadiness: the lag metric says it.
		if resp, err := http.Get("http://" + dm.HTTPAddr() + "/readyz"); err != nil {
			t.Fatal(err)
		} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
			t.Errorf("/readyz %d during the S3 outage; want ready", resp.StatusCode)
		}
	}
	posAtResume := e.db().Pos()
	repDuring := e.db().ReplicaPos().TXID
	srv.Resume(t)
	resumed = true
	resumedAt := time.Now()
	phase.Store(after)
	time.Sleep(time.Second)
	stopWriter()
	if t.Failed() {
		return
	}

	// The uploader catches up promptly.
	live := e.db().Pos()
	caughtUp := waitFor(t, 60*time.Second, "the replica to catch up after the outage", func() bool {
		return e.db().ReplicaPos().TXID >= live.TXID
	})
	sinceResume := time.Since(resumedAt)
	t.Logf("outage: %d commits before, %d during, %d after; staging %.0f bytes before, up to %.0f during; replica TXID %d before, %d at resume (staged %d); caught up %v after the writer stopped, %v after resume",
		len(lats[before]), len(lats[during]), len(lats[after]), stagingBefore, maxStaging, repBefore, repDuring, posAtResume.TXID,
		caughtUp.Round(time.Millisecond), sinceResume.Round(time.Millisecond))
	for p, name := range []string{"before", "during", "after"} {
		t.Logf("commit latency %s the outage: %v", name, lats[p])
	}
	if len(lats[during]) < 100 {
		t.Fatalf("only %d commits during the 5 s outage", len(lats[during]))
	}
	if maxStaging <= stagingBefore || maxStaging < 100*300 {
		t.Fatalf("staging did not grow during the outage: %.0f before, max %.0f during", stagingBefore, maxStaging)
	}
	if repDuring >= posAtResume.TXID {
		t.Fatalf("replica at %d while S3 was stopped, staged %d: the outage did not hold uploads back", repDuring, posAtResume.TXID)
	}
	if sinceResume > 15*time.Second {
		t.Errorf("the replica took %v after S3 came back to catch up: the uploader is stuck on a request sent during the outage", sinceResume)
	}
	if st, err := e.db().State(); st != litefs.StateReplicating {
		t.Fatalf("state %s after the outage: %v", st, err)
	}
	e.verify(db)
	checkChain(t, e.client())
	if got := metric(t, dm.HTTPAddr(), "litefs_staging_bytes"); got != 0 {
		t.Fatalf("litefs_staging_bytes %v after catching up", got)
	}
}
