package litefs

import (
	"errors"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/superfly/ltx"
)

// dbMetrics are a database's counters, read by the HTTP metrics handler.
type dbMetrics struct {
	StagedTXID      atomic.Uint64
	StagedTxns      atomic.Uint64
	StagedBytes     atomic.Uint64
	StageNanos      atomic.Uint64 // time spent encoding and appending
	UploadOK        atomic.Uint64
	UploadErr       atomic.Uint64
	UploadedBytes   atomic.Uint64
	unsent          unsentQueue
	LastUploadNanos atomic.Int64
}

func (m *dbMetrics) staged(start, end time.Time, n int, txid ltx.TXID) {
	m.StagedTXID.Store(uint64(txid))
	m.StagedTxns.Add(1)
	m.StagedBytes.Add(uint64(n))
	m.StageNanos.Add(uint64(end.Sub(start)))
	m.unsent.push(txid, start)
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

var (
	descDBTXID      = prometheus.NewDesc("litefs_db_txid", "Last transaction ID staged from the database's WAL.", []string{"db"}, nil)
	descDBSize      = prometheus.NewDesc("litefs_db_size_bytes", "Size of the database file in the data dir.", []string{"db"}, nil)
	descWALSize     = prometheus.NewDesc("litefs_wal_bytes", "Size of the database's WAL file.", []string{"db"}, nil)
	descReplicaTXID = prometheus.NewDesc("litefs_replica_txid", "Newest transaction ID the replica confirmed.", []string{"db"}, nil)
	descLag         = prometheus.NewDesc("litefs_replica_lag_seconds", "Age of the oldest committed transaction not yet in the replica; 0 when caught up.", []string{"db"}, nil)
	descStaging     = prometheus.NewDesc("litefs_staging_bytes", "Bytes staged on the volume, not yet confirmed by the replica.", []string{"db"}, nil)
	descUploads     = prometheus.NewDesc("litefs_upload_total", "Uploads to the replica by result.", []string{"db", "result"}, nil)
	descUploadBytes = prometheus.NewDesc("litefs_upload_bytes_total", "Bytes uploaded to the replica.", []string{"db"}, nil)
	descFenced      = prometheus.NewDesc("litefs_fenced", "1 when another writer owns the replica and uploads stopped.", []string{"db"}, nil)
	descReplicating = prometheus.NewDesc("litefs_db_replicating", "1 while the database is replicated; 0 while waiting for it or after replication stopped.", []string{"db"}, nil)
)

type collector struct{ dm *Daemon }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDBTXID, descDBSize, descWALSize, descReplicaTXID, descLag, descStaging, descUploads, descUploadBytes, descFenced, descReplicating} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, db := range c.dm.dbs {
		name := db.Name()
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{name}, labels...)...)
		}
		counter := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append([]string{name}, labels...)...)
		}
		gauge(descDBTXID, float64(db.Pos().TXID))
		gauge(descDBSize, float64(fileSize(db.path)))
		gauge(descWALSize, float64(fileSize(db.path+"-wal")))
		gauge(descReplicaTXID, float64(db.ReplicaPos().TXID))
		gauge(descLag, db.Lag(now).Seconds())
		gauge(descStaging, float64(db.stage.bytes()))
		counter(descUploads, float64(db.Metrics.UploadOK.Load()), "ok")
		counter(descUploads, float64(db.Metrics.UploadErr.Load()), "error")
		counter(descUploadBytes, float64(db.Metrics.UploadedBytes.Load()))
		st, err := db.State()
		fenced := 0.0
		if st == StateStopped && errors.Is(err, errFenced) {
			fenced = 1
		}
		gauge(descFenced, fenced)
		rep := 0.0
		if st == StateReplicating {
			rep = 1
		}
		gauge(descReplicating, rep)
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (dm *Daemon) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{dm}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// Lag is the age of the oldest committed transaction the replica does not
// hold yet; 0 when it holds everything.
func (d *DB) Lag(now time.Time) time.Duration {
	if t, ok := d.Metrics.unsent.oldest(); ok {
		return now.Sub(t)
	}
	return 0
}
