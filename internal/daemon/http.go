package daemon

import (
	"fmt"
	"net/http"
	"net/http/pprof"
)

func (dm *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := dm.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("/metrics", dm.metricsHandler())
	mux.HandleFunc("POST /debug/snapshot", dm.handleSnapshot)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// handleSnapshot stages a snapshot of every database (or of ?db=NAME) now,
// as snapshot-interval would, and answers with the TXIDs.
func (dm *Daemon) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	want := r.URL.Query().Get("db")
	found := false
	for _, db := range dm.dbs {
		if want != "" && db.Name() != want {
			continue
		}
		found = true
		txid, err := db.Snapshot(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s %s\n", db.Name(), txid)
	}
	if !found {
		http.Error(w, "no such database: "+want, http.StatusNotFound)
	}
}
