package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs"
)

// The wait API lets an app that keeps commits at volume durability
// acknowledge one request only once its commit is in the replica: it reads
// GET /txid after the commit, then GET /wait for that TXID.

const (
	// DefaultWait is how long GET /wait waits without ?timeout=.
	DefaultWait = 5 * time.Second
	// MaxWait is the longest ?timeout= GET /wait accepts.
	MaxWait = 5 * time.Minute
)

// TXIDs is the answer of GET /txid and of a GET /wait that succeeded.
type TXIDs struct {
	// DB is the database's name (its path relative to fuse.dir), Path the
	// path the app opens under fuse.dir.
	DB   string `json:"db"`
	Path string `json:"path"`
	// TXID is the database's last commit on this volume (staged, as
	// litefs status shows it), ReplicaTXID the newest TXID this daemon's
	// uploads confirmed in the replica (16 hex digits each).
	TXID        ltx.TXID `json:"txid"`
	ReplicaTXID ltx.TXID `json:"replica_txid"`
}

// ParseTXID takes 16 hex digits as /txid and `litefs ltx` print them, or a
// decimal number.
func ParseTXID(s string) (ltx.TXID, error) {
	if len(s) == 16 {
		if v, err := ltx.ParseTXID(s); err == nil {
			return v, nil
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("txid %q: write 16 hex digits (0000000000000042) or a decimal number (66)", s)
	}
	return ltx.TXID(v), nil
}

// handleTXID answers GET /txid?db=PATH with the database's TXIDs.
func (dm *Daemon) handleTXID(w http.ResponseWriter, r *http.Request) {
	db, ok := dm.queryDB(w, r)
	if !ok {
		return
	}
	writeJSON(w, dm.txids(db))
}

// handleWait answers GET /wait?db=PATH&txid=N[&timeout=D]: 200 with the
// TXIDs once the replica holds TXID N, 504 when the timeout passes first,
// 409 when replication of the database stopped (fenced, out of WAL mode),
// 400 for a bad argument, 404 for a database that is not replicated. It
// forces no upload: N goes with the next one (sync-interval), which the
// wait wakes if the uploader is idle.
func (dm *Daemon) handleWait(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("txid") == "" {
		http.Error(w, "give txid=N: the TXID to wait for, as GET /txid answers it after the commit", http.StatusBadRequest)
		return
	}
	txid, err := ParseTXID(q.Get("txid"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	timeout := DefaultWait
	if s := q.Get("timeout"); s != "" {
		if timeout, err = time.ParseDuration(s); err != nil || timeout < 0 || timeout > MaxWait {
			http.Error(w, fmt.Sprintf("timeout %q: give a duration from 0s to %s, like 5s", s, MaxWait), http.StatusBadRequest)
			return
		}
	}
	db, ok := dm.queryDB(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	err = db.WaitReplicated(ctx, txid)
	have := db.ReplicatedTXID()
	switch {
	case err == nil && have >= txid:
		writeJSON(w, dm.txids(db))
	case r.Context().Err() != nil:
		// The client went away: nobody reads an answer.
	case errors.Is(err, context.DeadlineExceeded):
		msg := fmt.Sprintf("timed out after %s: the replica holds TXID %s of %s, not yet %s", timeout, have, db.Name(), txid)
		if local := db.Pos().TXID; txid > local {
			msg += fmt.Sprintf(" (the database's last commit is %s)", local)
		}
		http.Error(w, msg, http.StatusGatewayTimeout)
	default:
		if err == nil {
			_, err = db.State()
		}
		http.Error(w, fmt.Sprintf("replication of %s stopped (%v): the replica holds TXID %s, short of %s", db.Name(), err, have, txid), http.StatusConflict)
	}
}

// queryDB finds the database ?db= names: the path the app opens (under
// fuse.dir), its file under data.dir, or its name relative to fuse.dir. It
// answers 400 or 404 itself when there is none.
func (dm *Daemon) queryDB(w http.ResponseWriter, r *http.Request) (*litefs.DB, bool) {
	p := r.URL.Query().Get("db")
	if p == "" {
		http.Error(w, "give db=PATH: the database's path as the app opens it", http.StatusBadRequest)
		return nil, false
	}
	name := path.Clean(filepath.ToSlash(p))
	if filepath.IsAbs(p) {
		for _, dir := range []string{dm.cfg.FUSE.Dir, dm.cfg.Data.Dir} {
			if rel, err := filepath.Rel(dir, filepath.Clean(p)); dir != "" && err == nil {
				if name = filepath.ToSlash(rel); name != ".." && !strings.HasPrefix(name, "../") {
					break
				}
			}
		}
	}
	var have []string
	for _, db := range dm.dbs {
		if db.Name() == name {
			return db, true
		}
		have = append(have, dm.appPath(db))
	}
	http.Error(w, fmt.Sprintf("no such database: %s (this daemon replicates %s)", p, strings.Join(have, ", ")), http.StatusNotFound)
	return nil, false
}

// appPath is where the app opens db: under fuse.dir.
func (dm *Daemon) appPath(db *litefs.DB) string {
	return filepath.Join(dm.cfg.FUSE.Dir, filepath.FromSlash(db.Name()))
}

func (dm *Daemon) txids(db *litefs.DB) TXIDs {
	return TXIDs{DB: db.Name(), Path: dm.appPath(db), TXID: db.Pos().TXID, ReplicaTXID: db.ReplicatedTXID()}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
