package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/superfly/ltx"
)

// What BenchmarkDurable watches while it runs: the proxy's record of the
// PUTs (to split a commit's latency around its PUT) and a watchdog that
// turns a stall into a failure with every stack.

// putLog keeps the proxy's record of every LTX object PUT, by replica path
// (the key's first element).
type putLog struct {
	mu   sync.Mutex
	objs map[string][]putRec
}

type putRec struct {
	min, max   ltx.TXID
	start, end time.Time
}

func (l *putLog) hook(r s3test.Record) {
	if !s3test.IsObjectPut(r, ".ltx") || r.Status != 200 {
		return
	}
	min, max, err := ltx.ParseFilename(filepath.Base(r.Key))
	if err != nil {
		return
	}
	prefix, _, _ := strings.Cut(r.Key, "/")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.objs == nil {
		l.objs = map[string][]putRec{}
	}
	l.objs[prefix] = append(l.objs[prefix], putRec{min, max, r.Start, r.End})
}

// split divides each commit's latency at the proxy's record of the first
// PUT that carried it (the commit's database name is its replica path): before it reached the proxy, the PUT (proxy to
// versitygw and back), and after the proxy's reply.
func (l *putLog) split(cs []commitRec) (pre, put, post latencies, unmatched int) {
	byDB := map[string][]putRec{}
	l.mu.Lock()
	for _, c := range cs {
		if _, ok := byDB[c.db]; !ok {
			objs := slices.Clone(l.objs[c.db])
			sort.Slice(objs, func(i, j int) bool { return objs[i].max < objs[j].max })
			byDB[c.db] = objs
		}
	}
	l.mu.Unlock()
	for _, c := range cs {
		objs := byDB[c.db]
		i := sort.Search(len(objs), func(i int) bool { return objs[i].max >= c.txid })
		if i == len(objs) || objs[i].min > c.txid || objs[i].start.Before(c.start) {
			unmatched++
			continue
		}
		o := objs[i]
		pre, put, post = append(pre, o.start.Sub(c.start)), append(put, o.end.Sub(o.start)), append(post, c.end.Sub(o.end))
	}
	return pre, put, post, unmatched
}

// snapshots counts the snapshot objects (TXID 1 to N) PUT under prefix
// within the windows.
func (l *putLog) snapshots(prefix string, windows [][2]time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, o := range l.objs[prefix] {
		for _, w := range windows {
			if o.min == 1 && !o.start.Before(w[0]) && !o.end.After(w[1]) {
				n++
			}
		}
	}
	return n
}

// overlap is how many of the prefixes' PUTs were in flight at once within
// the windows: the mean (PUT time ÷ window time) and the maximum.
func (l *putLog) overlap(prefixes []string, windows [][2]time.Time) (mean float64, peak, count int) {
	type ev struct {
		at time.Time
		d  int
	}
	l.mu.Lock()
	var evs []ev
	var busy, span time.Duration
	for _, w := range windows {
		span += w[1].Sub(w[0])
		for _, p := range prefixes {
			for _, o := range l.objs[p] {
				if o.start.Before(w[0]) || o.end.After(w[1]) {
					continue
				}
				count++
				busy += o.end.Sub(o.start)
				evs = append(evs, ev{o.start, 1}, ev{o.end, -1})
			}
		}
	}
	l.mu.Unlock()
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].at.Equal(evs[j].at) {
			return evs[i].d < evs[j].d
		}
		return evs[i].at.Before(evs[j].at)
	})
	cur := 0
	for _, e := range evs {
		cur += e.d
		peak = max(peak, cur)
	}
	return busy.Seconds() / span.Seconds(), peak, count
}

// stallAfter: no commit, PUT or freeze for this long and the benchmark
// fails instead of hanging. A daemon that deadlocked holds the app inside
// a FUSE request of its own mount, so the process could not even exit
// (seen: under replica-on-fsync, a checkpoint's WAL fsync waits for an
// upload whose snapshot waits, in pinWAL, for that checkpoint's lock).
const stallAfter = 20 * time.Second

// watchdog notices a stall, writes every goroutine's stack to a file, shuts
// the daemons down (which answers the waiting requests) and fails the
// benchmark with what it saw.
type watchdog struct {
	progress atomic.Int64
	msg      atomic.Pointer[string]
	mu       sync.Mutex
	stops    []func()
	done     chan struct{}
}

func newWatchdog() *watchdog { return &watchdog{done: make(chan struct{})} }

func (w *watchdog) tick()  { w.progress.Add(1) }
func (w *watchdog) close() { close(w.done) }

func (w *watchdog) onStall(stop func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stops = append(w.stops, stop)
}

// check fails b if the watchdog fired.
func (w *watchdog) check(b *testing.B) {
	if m := w.msg.Load(); m != nil {
		b.Fatal(*m)
	}
}

func (w *watchdog) run() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last, since := w.progress.Load(), time.Now()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		if p := w.progress.Load(); p != last {
			last, since = p, time.Now()
			continue
		}
		if time.Since(since) < stallAfter {
			continue
		}
		buf := make([]byte, 16<<20)
		buf = buf[:runtime.Stack(buf, true)]
		path := filepath.Join(os.TempDir(), fmt.Sprintf("litefs-bench-durable-stall-%d.txt", os.Getpid()))
		_ = os.WriteFile(path, buf, 0o644)
		m := fmt.Sprintf("STALL: nothing completed for %v; goroutines in Capture.SyncWAL→waitDurable: %d, in uploader.takeSnapshot→pinWAL→ofdLock: %d, in Capture.WriteWAL→waitDurable: %d (all stacks in %s); daemons shut down to release the app",
			stallAfter, stacksWith(buf, "litefs.(*Capture).SyncWAL"), stacksWith(buf, "litefs.ofdLock"), stacksWith(buf, "litefs.(*Capture).WriteWAL"), path)
		w.msg.Store(&m)
		report("durable: %s", m)
		w.mu.Lock()
		stops := slices.Clone(w.stops)
		w.mu.Unlock()
		for _, stop := range stops {
			stop()
		}
		return
	}
}

// stacksWith counts the goroutines whose stack has fn.
func stacksWith(dump []byte, fn string) int {
	n := 0
	for _, g := range bytes.Split(dump, []byte("\n\ngoroutine ")) {
		if bytes.Contains(g, []byte(fn)) {
			n++
		}
	}
	return n
}
