package fs

import (
	"strconv"
	"strings"
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
	run := func(b *testing.B, dir string) {
		b.StopTimer()
		cmd, out := startChild(b, envChildBench, dir+"/db\n"+strconv.Itoa(b.N))
		line, err := out.ReadString('\n')
		if werr := cmd.Wait(); err != nil || werr != nil {
			b.Fatalf("bench child: %q, %v, %v", line, err, werr)
		}
		ns, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(ns, "ns/op") // the child's own clock: no process start-up
	}
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
