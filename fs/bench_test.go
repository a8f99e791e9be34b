package fs

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// nopDB does each operation and nothing else: the cost of the mount alone.
type nopDB struct{}

func (nopDB) WriteWAL(off int64, p []byte, write func() (int, error)) (int, error) { return write() }
func (nopDB) TruncateWAL(size int64, truncate func() error) error                  { return truncate() }
func (nopDB) SyncWAL(sync func() error) error                                      { return sync() }
func (nopDB) RemoveWAL(remove func() error) error                                  { return remove() }
func (nopDB) JournalCreated()                                                      {}

// BenchmarkCommit is one-row commits (synchronous=NORMAL) natively and through
// the mount, with and without passthrough for the db and shm files. SQLite
// runs in a child process (see envChildSQL for why); the metric is the
// child's own time per commit.
func BenchmarkCommit(b *testing.B) {
	run := func(b *testing.B, dir string) { childNsPerOp(b, envChildBench, dir+"/db") }
	b.Run("native", func(b *testing.B) { run(b, b.TempDir()) })
	for _, pt := range []bool{false, true} {
		name := "mount"
		if pt {
			name = "mount+passthrough"
		}
		b.Run(name, func(b *testing.B) {
			_, mnt := mountT(b, pt, map[string]DB{"db": nopDB{}})
			run(b, mnt)
		})
	}
}

// BenchmarkRoundTrip is the floor under every commit through the mount: a
// 24-byte pwrite to a WAL (one FUSE WRITE round trip, nothing else done by
// the daemon) against the same pwrite natively and against a round trip
// between two processes over pipes (two wakeups, no file system at all).
// ns/op is one round trip.
func BenchmarkRoundTrip(b *testing.B) {
	pwrite := func(b *testing.B, path string) { childNsPerOp(b, envChildPwrite, path) }
	b.Run("pipe", func(b *testing.B) { pipeRoundTrip(b) })
	b.Run("native-pwrite", func(b *testing.B) { pwrite(b, b.TempDir()+"/db-wal") })
	b.Run("mount-wal-pwrite", func(b *testing.B) {
		_, mnt := mountT(b, true, map[string]DB{"db": nopDB{}})
		pwrite(b, mnt+"/db-wal")
	})
}

// childNsPerOp runs a child that does b.N operations on path and reports
// its own time per operation: no process start-up in the figure.
func childNsPerOp(b *testing.B, env, path string) {
	b.StopTimer()
	cmd, out := startChild(b, env, path+"\n"+strconv.Itoa(b.N))
	line, err := out.ReadString('\n')
	if werr := cmd.Wait(); err != nil || werr != nil {
		b.Fatalf("bench child: %q, %v, %v", line, err, werr)
	}
	ns, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(ns, "ns/op")
}

func pipeRoundTrip(b *testing.B) {
	var there, back [2]int
	if err := syscall.Pipe2(there[:], syscall.O_CLOEXEC); err != nil {
		b.Fatal(err)
	}
	if err := syscall.Pipe2(back[:], syscall.O_CLOEXEC); err != nil {
		b.Fatal(err)
	}
	r, w := os.NewFile(uintptr(there[0]), "there"), os.NewFile(uintptr(back[1]), "back")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildEcho+"=1")
	cmd.ExtraFiles = []*os.File{r, w} // fds 3 and 4
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	r.Close()
	w.Close()
	defer func() {
		syscall.Close(there[1])
		syscall.Close(back[0])
		cmd.Wait()
	}()
	var c [1]byte
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := syscall.Write(there[1], c[:]); err != nil {
			b.Fatal(err)
		}
		if n, err := syscall.Read(back[0], c[:]); n != 1 || err != nil {
			b.Fatalf("echo: %d, %v", n, err)
		}
	}
}
