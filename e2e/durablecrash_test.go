package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/internal/testenv"
	"github.com/litefs-dev/litefs/replica"
)

// durableRounds is how many kill-and-lose-the-volume rounds a durable
// crash test runs (LITEFS_DURABLE_ROUNDS, default 5).
func durableRounds(t *testing.T) int { return envRounds(t, "LITEFS_DURABLE_ROUNDS", 5) }

// counterApp runs the guide's counter app through the mount and visits it
// until stopped, keeping the highest count it acknowledged.
type counterApp struct {
	cmd    *exec.Cmd
	acked  atomic.Int64
	killed atomic.Bool
	done   chan struct{}
}

func startCounterApp(t *testing.T, dbPath, synchronous string) *counterApp {
	t.Helper()
	addr := testenv.FreeAddr(t)
	a := &counterApp{done: make(chan struct{})}
	a.cmd = exec.Command(filepath.Join(testenv.Binaries(t), "myapp"), "-addr", addr, "-db", dbPath, "-synchronous", synchronous)
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.cmd.Process.Kill(); _ = a.cmd.Wait() })
	client := &http.Client{Timeout: 30 * time.Second}
	go func() {
		defer close(a.done)
		for {
			resp, err := client.Get("http://" + addr + "/")
			if err != nil {
				if a.killed.Load() {
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				continue // an I/O error from a commit litefs could not confirm
			}
			n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err == nil && n > a.acked.Load() {
				a.acked.Store(n)
			}
		}
	}()
	return a
}

func (a *counterApp) kill() {
	a.killed.Store(true)
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	_ = a.cmd.Wait()
	<-a.done
}

// Kill -9 of the daemon and the app at a random moment under a durable
// writer, then the volume is lost and restored from S3 (versitygw): every
// commit the app acknowledged is in the restored database, round after
// round, each going on from the restored volume. durability "replica" with
// a synchronous=NORMAL writer, and "replica-on-fsync" with a FULL writer.
func TestDurableKillAndLoseVolume(t *testing.T) {
	for _, tc := range []struct{ durability, synchronous string }{
		{"replica", "NORMAL"},
		{"replica-on-fsync", "FULL"},
	} {
		t.Run(tc.durability, func(t *testing.T) {
			srv := s3test.StartVersityGW(t)
			e := newS3Env(t, srv, "db", "1s")
			e.repExtra = fmt.Sprintf("durability = %q", tc.durability)
			e.leaseTTL = "2s" // a lost volume's lease lapses fast
			for round := 1; round <= durableRounds(t); round++ {
				cmd := e.startProcess()
				app := startCounterApp(t, filepath.Join(e.mountDir, "db"), tc.synchronous)
				waitFor(t, 30*time.Second, "the app's first commit", func() bool { return app.acked.Load() > 0 })
				time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond) // a random moment: not synchronisation
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-e.done
				app.kill()
				acked := app.acked.Load()
				_ = syscall.Unmount(e.mountDir, syscall.MNT_DETACH)

				// The volume is gone; a new one is restored from S3.
				e.env.dataDir = filepath.Join(e.root, fmt.Sprintf("data%d", round))
				if err := os.MkdirAll(e.env.dataDir, 0o755); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(e.env.dataDir, "db")
				if _, err := replica.Restore(context.Background(), e.client(), replica.RestoreOptions{OutputPath: out}); err != nil {
					t.Fatalf("round %d: restore: %v", round, err)
				}
				got := queryInt(t, out, `SELECT n FROM counter WHERE id = 1`)
				t.Logf("round %d: app acknowledged %d, restored %d", round, acked, got)
				if got < acked {
					t.Fatalf("round %d: the app acknowledged count %d, the restored volume has %d: acknowledged commits lost", round, acked, got)
				}
			}
		})
	}
}
