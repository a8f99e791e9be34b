package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/staging"

	"github.com/litefs-dev/litefs/internal/testenv"

	"github.com/litefs-dev/litefs/wal"
)

// kill -9 the daemon at random moments under a write load: several
// writers (single-row commits, multi-page and cache-spilling transactions,
// synchronous NORMAL and FULL), checkpoints of every mode restarting and
// truncating the WAL, uploads in flight every 50 ms, and in some rounds a
// snapshot every 100 ms. After each kill the volume's database (read from
// the data dir, the mount detached) passes integrity_check and holds every
// transaction the app saw commit; the restarted daemon resumes the same
// history (no snapshot, no gap), and restore = live. Every other round
// the next child is the restart, so kills also land on a daemon that had
// just recovered from one.
func TestCrashKill9(t *testing.T) {
	ce := &crashEnv{env: newEnv(t, "50ms")}
	rounds := crashRounds(t)
	var st crashState
	started := time.Now()
	var recovered, snapRounds, verified int
	var prevChild *crashChild
	var diag string
	var stuckKills int
	bugs := map[string]bool{}
	for round := 0; round < rounds; round++ {
		ce.replicaExtra = ""
		if round%5 == 2 {
			ce.replicaExtra = "snapshot-interval = \"100ms\"\n"
			snapRounds++
		}
		t0 := time.Now()
		ch := ce.startChild()
		tStart := time.Since(t0)
		if prevChild != nil {
			recovered += checkResumed(t, round, ch.log.String(), diag)
		}
		if round == 0 {
			db := openDB(t, filepath.Join(ce.mountDir, "db"), "_journal_mode=WAL")
			mustExec(t, db, crashSchema)
			db.Close()
		}
		stop := make(chan struct{})
		wait := crashLoad(t, ce.mountDir, &st, stop)
		before := st.commits.Load()
		time.Sleep(time.Duration(150+rand.IntN(1000)) * time.Millisecond)
		if !ce.kill(ch) {
			stuckKills++
		}
		close(stop)
		wait()
		tLoad := time.Since(t0)
		if st.commits.Load() == before {
			t.Fatalf("round %d: no commit before the kill", round)
		}

		// The volume alone, daemon dead: everything acknowledged is there.
		copyPath := copyDBFiles(t, ce.dataDir)
		cdb := openDB(t, copyPath, "")
		present := checkCrashDB(t, cdb, &st, fmt.Sprintf("round %d, data dir after kill -9", round))
		cdb.Close()
		diag = crashDiag(t, ce.dataDir, ce.replicaMaxTXID())
		for w := range crashWriters {
			if present[w] > st.acked[w] {
				st.inDoubt++
			}
			st.acked[w], st.tried[w] = present[w], present[w]
		}

		if round%2 == 1 && round != rounds-1 {
			prevChild = ch // the next child is the restart
			t.Logf("round %d: started in %v, killed and checked after %v; %d commits so far", round, tStart.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), st.commits.Load())
			continue
		}
		prevChild = nil
		// Restart in this process: same history, nothing lost, restore = live.
		var logs testenv.LogBuffer
		ce.startInProcess(&logs)
		recovered += checkResumed(t, round, logs.String(), diag)
		live := ce.open("_journal_mode=WAL")
		if got := checkCrashDB(t, live, &st, fmt.Sprintf("round %d, through the restarted mount", round)); got != present {
			t.Fatalf("round %d: the restarted mount holds %v, the volume held %v", round, got, present)
		}
		ce.flushOrNudge(live, round, bugs)
		ce.verify(live)
		ce.checkOneHistory(1)
		verified++
		live.Close()
		ce.stop()
		t.Logf("round %d: started in %v, load until kill %v, restarted and verified after %v; %d commits so far", round, tStart.Round(time.Millisecond), tLoad.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), st.commits.Load())
	}
	snaps, _ := ce.client().LTXFiles(context.Background(), 9, 0)
	segs, _ := ce.client().LTXFiles(context.Background(), 0, 0)
	t.Logf("%d kill -9 rounds in %v: %d commits acknowledged, %d in-doubt commits found committed, %d commits recovered from the WAL at start-up, %d rounds with a 100ms snapshot-interval, %d restore=live checks, %d kills left the daemon stuck; replica: %d snapshots, %d level-0 objects",
		rounds, time.Since(started).Round(time.Millisecond), st.commits.Load(), st.inDoubt, recovered, snapRounds, verified, stuckKills, len(snaps), len(segs))
}

// crashDiag describes what a kill left on the volume: the pos file, the
// staging files and the WAL's transactions.
func crashDiag(t *testing.T, dataDir string, replicaMax uint64) string {
	t.Helper()
	var b strings.Builder
	stage := filepath.Join(dataDir, staging.DirName, "db")
	pos, _ := os.ReadFile(filepath.Join(stage, "pos"))
	fmt.Fprintf(&b, "replica max TXID %d\npos file: %s\n", replicaMax, pos)
	_ = filepath.WalkDir(stage, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			fmt.Fprintf(&b, "staging %s: %d bytes\n", strings.TrimPrefix(path, stage+"/"), fi.Size())
		}
		return nil
	})
	f, err := os.Open(filepath.Join(dataDir, "db-wal"))
	if err != nil {
		fmt.Fprintf(&b, "WAL: %v\n", err)
		return b.String()
	}
	defer f.Close()
	fi, _ := f.Stat()
	n := 0
	var first, last string
	hdr, end, err := wal.Scan(f, fi.Size(), func(txn *wal.Txn) error {
		s := fmt.Sprintf("salts %d/%d offset %d size %d", txn.Salt1, txn.Salt2, txn.Offset, txn.Size)
		if n == 0 {
			first = s
		}
		last = s
		n++
		return nil
	})
	fmt.Fprintf(&b, "WAL: %d bytes, header salts %d/%d, %d valid transactions (first %s, last %s), valid to %d, err %v\n",
		fi.Size(), hdr.Salt1, hdr.Salt2, n, first, last, end, err)
	return b.String()
}

// flushOrNudge flushes twice, 150 ms apart (so a 100 ms snapshot-interval
// has passed by the second); when a flush fails it reports the failure
// (once per kind) and writes one row through the mount, which starts a new
// WAL generation, before the verify's own flush.
func (c *crashEnv) flushOrNudge(live *sql.DB, round int, bugs map[string]bool) {
	c.t.Helper()
	for try := 0; try < 2; try++ {
		if try > 0 {
			time.Sleep(150 * time.Millisecond)
		}
		err := c.db().Flush(context.Background())
		if err == nil {
			continue
		}
		msg := err.Error()
		if i := strings.Index(msg, "TXID "); i >= 0 {
			msg = msg[:i] // one report per kind of failure
		}
		if !bugs[msg] {
			bugs[msg] = true
			c.t.Errorf("BUG: round %d: a flush after the restart failed: %v\n(the WAL commits recovered at start-up were indexed by their WAL offsets, then the start-up checkpoint truncated the WAL; with a snapshot due, Flush takes it before uploading anything, so nothing is uploaded while this persists; one write through the mount lets it go on)", round, err)
		}
		mustExec(c.t, live, `CREATE TABLE IF NOT EXISTS nudge (x)`)
		mustExec(c.t, live, `INSERT INTO nudge VALUES (1)`)
		return
	}
}

// myappCommits runs the guide's counter app (examples/myapp) directly on
// the data dir's database, makes n commits (visits), and kills it with
// SIGKILL so its connection never checkpoints: the commits stay in the WAL
// exactly as the app's commits through the mount do when the daemon is
// killed after their WAL writes and before staging them. It returns the
// counter.
func myappCommits(t *testing.T, dbPath string, n int) int64 {
	t.Helper()
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(filepath.Join(testenv.Binaries(t), "myapp"), "-addr", addr, "-db", dbPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	get := func(path string) (int64, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := get("/healthz"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("myapp not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var v int64
	for i := 0; i < n; i++ {
		var err error
		if v, err = get("/"); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// A kill -9 between the app's WAL write and its staging loses nothing and
// costs no snapshot (docs/design.md, "Start-up"): the restarted daemon stages the WAL's
// commits past its position and resumes the same history. Made
// deterministic: the daemon is killed while idle, then commits land in the
// WAL it would have been tracking (the counter app writing the data dir's
// database, itself killed before it can checkpoint), either continuing the
// WAL generation of the last staged commit, or in a new generation after a
// WAL restart (here a TRUNCATE checkpoint through the mount: a barrier, so
// staging and the position were durable and the database file held exactly
// the last staged state when the new generation began).
func TestCrashBetweenWALAndStaging(t *testing.T) {
	for _, tc := range []struct {
		name       string
		checkpoint bool
	}{{"SameGeneration", false}, {"NewGeneration", true}} {
		t.Run(tc.name, func(t *testing.T) {
			// With a snapshot due at the restart, its first flush snapshots.
			ce := &crashEnv{env: newEnv(t, "1h"), replicaExtra: "snapshot-interval = \"1s\"\n"}
			ch := ce.startChild()
			app := openDB(t, filepath.Join(ce.mountDir, "db"), "_journal_mode=WAL")
			mustExec(t, app, `CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)`)
			mustExec(t, app, `INSERT INTO counter VALUES (1, 0)`)
			for i := 0; i < 20; i++ {
				mustExec(t, app, `UPDATE counter SET n = n + 1 WHERE id = 1`)
			}
			if tc.checkpoint {
				mustExec(t, app, `PRAGMA wal_checkpoint(TRUNCATE)`)
			}
			// Let the daemon apply everything (it answers writes before
			// staging them), then kill it.
			time.Sleep(200 * time.Millisecond)
			ce.kill(ch)
			app.Close()
			diag := crashDiag(t, ce.dataDir, ce.replicaMaxTXID())

			got := myappCommits(t, filepath.Join(ce.dataDir, "db"), 5)
			if got != 25 {
				t.Fatalf("counter %d after 5 more visits, want 25", got)
			}
			after := crashDiag(t, ce.dataDir, ce.replicaMaxTXID())

			var logs testenv.LogBuffer
			ce.startInProcess(&logs)
			if strings.Contains(logs.String(), "taking a snapshot") || !strings.Contains(logs.String(), "resuming replication") {
				t.Fatalf("BUG: five commits left in the WAL past the staged position (%s) were not recovered into the same history:\n%s\nthe volume after the daemon's kill:\n%s\nafter the commits:\n%s",
					map[bool]string{false: "same WAL generation", true: "a new WAL generation after a restart"}[tc.checkpoint], logs.String(), diag, after)
			}
			// At least those five: commits the daemon had staged only in
			// memory (see pendMax) when it was killed are recovered too.
			if n := checkResumed(t, 0, logs.String(), diag); n < 5 {
				t.Fatalf("recovered %d commits from the WAL, want at least 5:\n%s", n, logs.String())
			}
			live := ce.open("_journal_mode=WAL")
			var n int64
			if err := live.QueryRow(`SELECT n FROM counter WHERE id = 1`).Scan(&n); err != nil || n != 25 {
				t.Fatalf("counter %d (%v) through the restarted mount, want 25", n, err)
			}
			time.Sleep(time.Second) // the snapshot interval passes
			ce.flushOrNudge(live, 0, map[string]bool{})
			ce.verify(live)
			ce.checkOneHistory(1)
		})
	}
}
