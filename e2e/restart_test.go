package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"time"

	"github.com/litefs-dev/litefs/internal/testenv"
	"github.com/superfly/ltx"
)

// startProcess runs `litefs mount` as a child process and waits for /readyz.
func (e *env) startProcess() *exec.Cmd {
	e.t.Helper()
	addr := testenv.FreeAddr(e.t)
	e.procAddr = addr
	cfgPath := filepath.Join(e.root, "litefs.toml")
	text := e.configText()
	text = replaceHTTP(text, addr)
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(testenv.Binaries(e.t), "litefs"), "mount", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if !testing.Verbose() {
		cmd.Stdout, cmd.Stderr = nil, nil
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		_ = syscall.Unmount(e.mountDir, syscall.MNT_DETACH)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("litefs mount not ready after 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func replaceHTTP(text, addr string) string {
	return strings.Replace(text, `addr = "127.0.0.1:0"`, fmt.Sprintf("addr = %q", addr), 1)
}

// Segments staged but not uploaded when the daemon stops arrive after the
// restart, in order, once, with no new snapshot.
func TestRestartWithStagedSegments(t *testing.T) {
	e := newEnv(t, "1h")
	e.start()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
	e.flush()
	for i := 0; i < 50; i++ {
		mustExec(t, db, `INSERT INTO t (v) VALUES (?)`, fmt.Sprint(i))
	}
	staged := e.db().Pos()
	db.Close()
	// A cancelled context: the shutdown cannot upload, staging keeps it all.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = e.dm.Shutdown(ctx)
	e.dm = nil
	if got := e.replicaMaxTXID(); got >= uint64(staged.TXID) {
		t.Fatalf("replica already has TXID %d; the test needs staged segments", got)
	}

	e.start()
	if p := e.db().Pos(); p.TXID != staged.TXID || p.Checksum != staged.Checksum {
		t.Fatalf("restarted at %d/%s, stopped at %d/%s", p.TXID, p.Checksum, staged.TXID, staged.Checksum)
	}
	db = e.open("_journal_mode=WAL")
	mustExec(t, db, `INSERT INTO t (v) VALUES ('after')`)
	e.verify(db)
	e.checkOneHistory(1)
}

// kill -9 right after commits: a restarted daemon resumes the same history.
func TestKillAfterCommits(t *testing.T) {
	e := newEnv(t, "1h")
	cmd := e.startProcess()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
	for i := 0; i < 200; i++ {
		mustExec(t, db, `INSERT INTO t (v) VALUES (?)`, fmt.Sprint(i))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = cmd.Process.Wait()
	db.Close()

	e.start() // detaches the dead mount
	db = e.open("_journal_mode=WAL")
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil || n != 200 {
		t.Fatalf("after kill -9: %d rows (%v), want 200", n, err)
	}
	mustExec(t, db, `INSERT INTO t (v) VALUES ('after')`)
	e.verify(db)
	e.checkOneHistory(1)
}

func (e *env) replicaMaxTXID() uint64 {
	e.t.Helper()
	var max uint64
	for _, level := range []int{0, 9} {
		infos, err := e.client().LTXFiles(context.Background(), level, 0)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, i := range infos {
			if uint64(i.MaxTXID) > max {
				max = uint64(i.MaxTXID)
			}
		}
	}
	return max
}

// checkOneHistory asserts the replica holds the given number of histories
// and that each is an unbroken chain. A history starts at a snapshot no
// segment covers (1-1, or 1-<N+1> after a mismatch); snapshots inside the
// chain (snapshot-interval, size-triggered) do not start one.
func (e *env) checkOneHistory(histories int) {
	e.t.Helper()
	ctx := context.Background()
	snaps, err := e.client().LTXFiles(ctx, 9, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	segs, err := e.client().LTXFiles(ctx, 0, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	covered := func(txid ltx.TXID) bool {
		for _, s := range segs {
			if s.MinTXID <= txid && txid <= s.MaxTXID {
				return true
			}
		}
		return false
	}
	starts := map[ltx.TXID]bool{}
	for _, s := range snaps {
		if !covered(s.MaxTXID) {
			starts[s.MaxTXID] = true
		}
	}
	if len(starts) != histories {
		e.t.Fatalf("%d histories in the replica (snapshots %v), want %d", len(starts), snaps, histories)
	}
	if len(snaps) == 0 {
		return
	}
	prev := snaps[0].MaxTXID
	for _, s := range segs {
		if s.MinTXID != prev+1 && !(starts[s.MinTXID-1] && s.MinTXID-1 > prev) {
			e.t.Fatalf("segment %s-%s after %s: gap or duplicate", s.MinTXID, s.MaxTXID, prev)
		}
		prev = s.MaxTXID
	}
}
