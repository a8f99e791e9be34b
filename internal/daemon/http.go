package daemon

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
)

func (dm *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	// Probes and metrics are open: the kubelet and Prometheus carry no token.
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
	mux.HandleFunc("GET /status", dm.handleStatus)

	// Control endpoints cost S3 requests and commit stalls (a snapshot), CPU
	// and internals (pprof), or hold a request open (wait): only an
	// authorised client drives them.
	mux.Handle("POST /debug/snapshot", dm.control(http.HandlerFunc(dm.handleSnapshot)))
	mux.Handle("GET /txid", dm.control(http.HandlerFunc(dm.handleTXID)))
	mux.Handle("GET /wait", dm.control(http.HandlerFunc(dm.handleWait)))
	if dm.cfg.HTTP.Pprof {
		mux.Handle("/debug/pprof/", dm.control(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/cmdline", dm.control(http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("/debug/pprof/profile", dm.control(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", dm.control(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", dm.control(http.HandlerFunc(pprof.Trace)))
	} else {
		mux.HandleFunc("/debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "pprof is off: set pprof = true under [http] to serve it", http.StatusNotFound)
		})
	}
	return mux
}

// control admits a request to a control endpoint: with [http] token set, one
// that carries it as a bearer token (from any address, loopback included:
// a shared pod network namespace is not a credential); with no token, a
// loopback client only.
func (dm *Daemon) control(next http.Handler) http.Handler {
	token := dm.cfg.HTTP.Token
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="litefs"`)
				http.Error(w, "unauthorized: send the [http] token as Authorization: Bearer <token>", http.StatusUnauthorized)
				return
			}
		} else if !isLoopback(r.RemoteAddr) {
			http.Error(w, "forbidden: with no [http] token set, control endpoints answer loopback clients only", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
