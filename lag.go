package litefs

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/superfly/ltx"
)

// Metrics are a database's upload counters, read by the daemon's /metrics
// handler and by tests.
type Metrics struct {
	UploadOK      atomic.Uint64
	UploadErr     atomic.Uint64
	UploadedBytes atomic.Uint64
	// HistoryGaps counts overflows whose lost restore points were closed by
	// a new snapshot (overflow.go).
	HistoryGaps atomic.Uint64
	// Durable is the latency of commits (and fsyncs) that waited for the
	// replica (durable.go).
	Durable latencyHist
	unsent  unsentQueue
}

// unsentQueue remembers when each transaction the replica does not hold yet
// was committed, so lag is the age of the oldest one, not of the last batch.
type unsentQueue struct {
	mu    sync.Mutex
	items []unsent
	head  int
}

type unsent struct {
	txid ltx.TXID
	at   time.Time
}

func (q *unsentQueue) push(txid ltx.TXID, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(q.items, unsent{txid, at})
}

// confirmed drops what the replica now holds (TXIDs <= max).
func (q *unsentQueue) confirmed(max ltx.TXID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head < len(q.items) && q.items[q.head].txid <= max {
		q.head++
	}
	if q.head == len(q.items) || q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
}

// reset replaces everything with one pending transaction (a rebase).
func (q *unsentQueue) reset(txid ltx.TXID, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items, q.head = append(q.items[:0], unsent{txid, at}), 0
}

func (q *unsentQueue) oldest() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return time.Time{}, false
	}
	return q.items[q.head].at, true
}

// Lag is the age of the oldest committed transaction the replica does not
// hold yet; 0 when it holds everything.
func (d *DB) Lag(now time.Time) time.Duration {
	if t, ok := d.Metrics.unsent.oldest(); ok {
		return now.Sub(t)
	}
	return 0
}
