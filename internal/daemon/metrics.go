package daemon

import (
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/fs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

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
	descGaps        = prometheus.NewDesc("litefs_history_gaps_total", "Times staging overflowed staging-max-bytes and a new snapshot closed the gap: restore points in the range the log names are gone (no commit is).", []string{"db"}, nil)
	descWaiting     = prometheus.NewDesc("litefs_commits_waiting", "Durable commits (durability replica or replica-on-fsync) waiting for the replica now.", []string{"db"}, nil)
	descWaitOldest  = prometheus.NewDesc("litefs_commit_wait_seconds", "How long the oldest waiting durable commit has waited; 0 when none waits.", []string{"db"}, nil)
	descDurable     = prometheus.NewDesc("litefs_durable_commit_seconds", "Time a durable commit (or WAL fsync) waited for the replica.", []string{"db"}, nil)
	descReplicating = prometheus.NewDesc("litefs_db_replicating", "1 while the database is replicated; 0 while waiting for it or after replication stopped.", []string{"db"}, nil)
)

// opHistogram is litefs_fuse_op_seconds{op}: one observer per operation,
// looked up once, so a request pays an atomic add and no label lookup.
type opHistogram struct {
	vec *prometheus.HistogramVec
	obs []prometheus.Observer // by fs.Op
}

func newOpHistogram() *opHistogram {
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "litefs_fuse_op_seconds",
		Help: "Time the daemon took to answer a FUSE request, by operation (passthrough reads and writes of db and shm files never reach it).",
		// 10 µs to 0.7 s: a WAL write is ~40 µs, a barrier's fsync milliseconds.
		Buckets: prometheus.ExponentialBuckets(10e-6, 4, 9),
	}, []string{"op"})
	h := &opHistogram{vec: vec}
	for _, op := range fs.Ops() {
		h.obs = append(h.obs, vec.WithLabelValues(op.String()))
	}
	return h
}

func (h *opHistogram) observe(op fs.Op, d time.Duration) { h.obs[op].Observe(d.Seconds()) }

type collector struct{ dm *Daemon }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDBTXID, descDBSize, descWALSize, descReplicaTXID, descLag, descStaging, descUploads, descUploadBytes, descFenced, descReplicating, descGaps, descWaiting, descWaitOldest, descDurable} {
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
		gauge(descDBSize, float64(fileSize(db.Path())))
		gauge(descWALSize, float64(fileSize(db.Path()+"-wal")))
		gauge(descReplicaTXID, float64(db.ReplicaPos().TXID))
		gauge(descLag, db.Lag(now).Seconds())
		gauge(descStaging, float64(db.StagingBytes()))
		counter(descUploads, float64(db.Metrics.UploadOK.Load()), "ok")
		counter(descUploads, float64(db.Metrics.UploadErr.Load()), "error")
		counter(descUploadBytes, float64(db.Metrics.UploadedBytes.Load()))
		counter(descGaps, float64(db.Metrics.HistoryGaps.Load()))
		n, oldest := db.Waiting(now)
		gauge(descWaiting, float64(n))
		gauge(descWaitOldest, oldest.Seconds())
		if db.Durability() != litefs.DurabilityVolume {
			buckets, count, sum := db.Metrics.Durable.Snapshot()
			ch <- prometheus.MustNewConstHistogram(descDurable, count, sum, buckets, name)
		}
		st, err := db.State()
		fenced := 0.0
		if st == litefs.StateStopped && errors.Is(err, litefs.ErrFenced) {
			fenced = 1
		}
		gauge(descFenced, fenced)
		rep := 0.0
		if st == litefs.StateReplicating {
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
	if dm.ops != nil {
		reg.MustRegister(dm.ops.vec)
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
