// Command myapp is the counter app of the Kubernetes guide: each HTTP
// request increments a counter in a SQLite database and returns it.
//
// GET /healthz is the exception: it reads the counter without incrementing
// it and returns it, or 503 if the database cannot be read or its mount is
// gone; the pod's readiness and liveness probes use it.
package main

import (
	"database/sql"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	_ "github.com/mattn/go-sqlite3"
)

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	dsn := flag.String("db", "/var/lib/myapp/db", "database path")
	syncMode := flag.String("synchronous", "NORMAL", "PRAGMA synchronous: NORMAL or FULL (with litefs's durability = \"replica-on-fsync\", FULL commits return once in the replica)")
	flag.Parse()
	if *syncMode != "NORMAL" && *syncMode != "FULL" {
		log.Fatalf("-synchronous %q: use NORMAL or FULL", *syncMode)
	}

	db, err := sql.Open("sqlite3", "file:"+*dsn+"?_journal_mode=WAL&_busy_timeout=5000&_synchronous="+*syncMode)
	if err != nil {
		log.Fatalf("open %s: %v", *dsn, err)
	}
	defer db.Close()
	// One connection: a counter needs no concurrency, and SQLite's writer
	// lock then never makes a request wait on another.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
		log.Fatalf("create table in %s: %v", *dsn, err)
	}

	// A handle held for /healthz. Under litefs the database is on a FUSE
	// mount; if the litefs sidecar dies, this process keeps handles on the
	// dead mount (a restarted sidecar mounts anew, but not under open
	// files). Reads can still succeed then (SQLite's cache, FUSE
	// passthrough) while every write fails; fstat on a handle opened
	// through the mount fails at once (ENOTCONN), so the liveness probe
	// restarts the app.
	f, err := os.Open(*dsn)
	if err != nil {
		log.Fatalf("open %s: %v", *dsn, err)
	}
	defer f.Close()

	// The probes' endpoint: a cheap read of the database, never a write, so
	// probing does not count as a visit. It returns the counter.
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := f.Stat(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		var n int64
		err := db.QueryRowContext(r.Context(), `SELECT COALESCE((SELECT n FROM counter WHERE id = 1), 0)`).Scan(&n)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%d\n", n)
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var n int64
		err := db.QueryRow(`INSERT INTO counter (id, n) VALUES (1, 1)
			ON CONFLICT(id) DO UPDATE SET n = n + 1 RETURNING n`).Scan(&n)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%d\n", n)
	})
	srv := &http.Server{Addr: *addr}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		_ = srv.Close()
	}()
	log.Printf("myapp listening on %s, database %s", *addr, *dsn)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
