package daemon

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs"
)

// DBStatus is one database in GET /status, the answer `litefs status`
// prints.
type DBStatus struct {
	// Name is the path relative to the data dir (and the FUSE dir); Path is
	// the real file in the data dir.
	Name string `json:"name"`
	Path string `json:"path"`
	// State is waiting, replicating or stopped; Error says why when stopped.
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// TXID is the last staged transaction, ReplicaTXID the newest the
	// replica confirmed (16 hex digits, as `litefs ltx` prints them).
	TXID        ltx.TXID `json:"txid"`
	ReplicaTXID ltx.TXID `json:"replica_txid"`
	// LagSeconds is the age of the oldest committed transaction the replica
	// does not hold yet, 0 when caught up (litefs_replica_lag_seconds).
	LagSeconds float64 `json:"lag_seconds"`
	// StagedBytes is what staging holds that the replica has not confirmed.
	StagedBytes int64 `json:"staged_bytes"`
}

// handleStatus answers GET /status: a JSON array of DBStatus, in config
// order. It only reads, like /metrics, and needs no token.
func (dm *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if dm.Now != nil {
		now = dm.Now()
	}
	out := make([]DBStatus, 0, len(dm.dbs))
	for _, db := range dm.dbs {
		st, err := db.State()
		s := DBStatus{
			Name: db.Name(), Path: db.Path(), State: st.String(),
			TXID: db.Pos().TXID, ReplicaTXID: db.ReplicaPos().TXID,
			LagSeconds: db.Lag(now).Seconds(), StagedBytes: db.StagingBytes(),
		}
		if st == litefs.StateStopped && err != nil {
			s.Error = err.Error()
		}
		out = append(out, s)
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}
