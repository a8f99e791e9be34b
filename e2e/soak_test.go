package e2e

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/s3test"
)

// envDuration reads a duration from the environment, def when unset.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		t.Fatalf("%s=%q: want a duration like 10m", name, s)
	}
	return d
}

// TestSoak runs a mixed read/write load through the mount to versitygw for
// LITEFS_SOAK_DURATION (default 10m), with checkpoints of every mode, the
// S3 proxy failing 1% of requests (500, 503, reset, lost reply, 2 s
// delay) and, halfway, an outage of LITEFS_SOAK_OUTAGE (default 60s) where
// every request is reset. Readers check an invariant through the mount all
// along (transfers keep the total balance constant). At the end the
// replica catches up, is one chain with no TXID uploaded twice, and
// restore = live. It prints transactions, reads, errors and the final
// restore comparison. Skipped unless LITEFS_SOAK=1 (make soak).
func TestSoak(t *testing.T) {
	if os.Getenv("LITEFS_SOAK") == "" {
		t.Skip("set LITEFS_SOAK=1 (make soak) to run the soak test")
	}
	duration := envDuration(t, "LITEFS_SOAK_DURATION", 10*time.Minute)
	outage := envDuration(t, "LITEFS_SOAK_OUTAGE", 60*time.Second)
	srv := s3test.StartVersityGW(t)
	p := s3test.StartProxy(t, srv.Endpoint)
	e := newS3Env(t, srv, "soak/db", "1s")
	e.endpoint = p.URL
	dm := e.start()

	const accounts, initial = 100, 1000
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE account (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)`)
	mustExec(t, db, `CREATE TABLE event (id INTEGER PRIMARY KEY, account INTEGER, v BLOB)`)
	mustExec(t, db, `CREATE INDEX event_account ON event (account)`)
	for i := 1; i <= accounts; i++ {
		mustExec(t, db, `INSERT INTO account VALUES (?, ?)`, i, initial)
	}
	e.flush()

	for _, f := range []s3test.Fault{
		{Action: s3test.Status, Status: http.StatusInternalServerError},
		{Action: s3test.Status, Status: http.StatusServiceUnavailable},
		{Action: s3test.Reset},
		{Action: s3test.DropResponse},
		{Action: s3test.Delay, Delay: 2 * time.Second},
	} {
		f.Match, f.Times = fraction(0.002), -1
		p.Inject(f)
	}

	var (
		commits, reads, bigTxns atomic.Int64
		errMu                   sync.Mutex
		errs                    = map[string]int{}
		latMu                   sync.Mutex
		lats                    durations
	)
	fail := func(what string, err error) {
		errMu.Lock()
		errs[what+": "+err.Error()]++
		errMu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wdb := e.open("_journal_mode=WAL")
		wdb.SetMaxOpenConns(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 1; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				if err := soakTxn(wdb, rng, i, accounts); err != nil {
					fail("commit", err)
					continue
				}
				latMu.Lock()
				lats = append(lats, time.Since(t0))
				latMu.Unlock()
				commits.Add(1)
				if i%250 == 0 {
					bigTxns.Add(1)
				}
				time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
			}
		}()
	}
	for r := 0; r < 2; r++ {
		rdb := e.open("_journal_mode=WAL")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var total int64
				if err := rdb.QueryRow(`SELECT sum(balance) FROM account`).Scan(&total); err != nil {
					fail("read", err)
				} else if total != accounts*initial {
					fail("read", fmt.Errorf("total balance %d, want %d: a torn transaction is visible", total, accounts*initial))
				}
				var n int
				if err := rdb.QueryRow(`SELECT count(*) FROM event WHERE account = ?`, 1+rand.IntN(accounts)).Scan(&n); err != nil {
					fail("read", err)
				}
				reads.Add(2)
				time.Sleep(500 * time.Microsecond)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		modes := []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(500+rand.IntN(3000)) * time.Millisecond):
			}
			if _, err := db.Exec(`PRAGMA wal_checkpoint(` + modes[i%len(modes)] + `)`); err != nil {
				fail("checkpoint", err)
			}
		}
	}()

	start := time.Now()
	report := time.NewTicker(30 * time.Second)
	defer report.Stop()
	outageAt, outageDone := duration/2, outage == 0
	for time.Since(start) < duration {
		select {
		case <-report.C:
			t.Logf("%v: %d commits, %d reads, replica TXID %d of %d, lag %.1fs, staging %.0f bytes, S3 requests %v",
				time.Since(start).Round(time.Second), commits.Load(), reads.Load(), e.db().ReplicaPos().TXID, e.db().Pos().TXID,
				metric(t, dm.HTTPAddr(), "litefs_replica_lag_seconds"), metric(t, dm.HTTPAddr(), "litefs_staging_bytes"), p.Counts())
		case <-time.After(time.Second):
		}
		if !outageDone && time.Since(start) >= outageAt {
			outageDone = true
			t.Logf("S3 outage for %v: every request reset", outage)
			f := p.Inject(s3test.Fault{Times: -1, Action: s3test.Reset})
			time.Sleep(outage)
			p.Remove(f)
			t.Logf("S3 back after %v: replica TXID %d, staged %d", outage, e.db().ReplicaPos().TXID, e.db().Pos().TXID)
		}
	}
	close(stop)
	wg.Wait()
	p.ClearFaults()
	live := e.db().Pos()
	caught := waitFor(t, 2*time.Minute, "the replica to catch up after the soak", func() bool {
		return e.db().ReplicaPos().TXID >= live.TXID
	})

	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	t.Logf("soak %v: %d transactions (%d big), %d reads, commit latency %v; caught up %v after the load stopped; upload errors %d; S3 requests %v",
		duration, commits.Load(), bigTxns.Load(), reads.Load(), lats, caught.Round(time.Millisecond), e.db().Metrics.UploadErr.Load(), p.Counts())
	errMu.Lock()
	for what, n := range errs {
		t.Errorf("%d× %s", n, what)
	}
	errMu.Unlock()
	pos := e.verify(db)
	t.Logf("restore = live at TXID %d, checksum %s: restored and live databases identical", pos.TXID, pos.Checksum)
	checkChain(t, e.client())
	checkUploadedOnce(t, e.client(), p.Records())
	e.checkNotFenced()
}

// soakTxn is one transaction of the soak: a transfer and an event, now and
// then a batch of 100 events and a cleanup.
func soakTxn(db *sql.DB, rng *rand.Rand, i, accounts int) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	a, b, amount := 1+rng.IntN(accounts), 1+rng.IntN(accounts), rng.IntN(50)
	if _, err := tx.Exec(`UPDATE account SET balance = balance - ? WHERE id = ?`, amount, a); err != nil {
		return err
	}
	if _, err := tx.Exec(`UPDATE account SET balance = balance + ? WHERE id = ?`, amount, b); err != nil {
		return err
	}
	n := 1
	if i%250 == 0 {
		n = 100
	}
	for j := 0; j < n; j++ {
		if _, err := tx.Exec(`INSERT INTO event (account, v) VALUES (?, randomblob(?))`, a, 50+rng.IntN(400)); err != nil {
			return err
		}
	}
	if i%500 == 0 {
		if _, err := tx.Exec(`DELETE FROM event WHERE id IN (SELECT id FROM event ORDER BY id LIMIT 2000)`); err != nil {
			return err
		}
	}
	return tx.Commit()
}
