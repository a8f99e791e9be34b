package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/replica/file"
)

// GET /status reports each database from its accessors; like /metrics it
// needs no token, from any address.
func TestStatus(t *testing.T) {
	dataDir := t.TempDir()
	sdb, err := sql.Open("sqlite3", "file:"+filepath.Join(dataDir, "db")+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sdb.Exec(`CREATE TABLE t (x)`); err != nil {
		t.Fatal(err)
	}
	sdb.Close()
	ctx := context.Background()
	// A database that exists is snapshotted at open: TXID 1, staged, not
	// yet in the replica; one that does not waits.
	var dbs []*litefs.DB
	for _, name := range []string{"db", "later"} {
		db, err := litefs.OpenDB(ctx, litefs.DBOptions{Name: name, DataDir: dataDir, Client: file.NewClient(filepath.Join(t.TempDir(), name))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close(ctx) })
		dbs = append(dbs, db)
	}
	dm := New(&config.Config{HTTP: config.HTTPConfig{Token: "tok"}}, nil)
	dm.dbs = dbs

	req := httptest.NewRequest("GET", "/status", nil)
	req.RemoteAddr = "10.1.2.3:5000"
	rec := httptest.NewRecorder()
	dm.handler().ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status: %d %s %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
	var got []DBStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	if len(got) != 2 {
		t.Fatalf("%d databases, want 2: %+v", len(got), got)
	}
	g := got[0]
	if g.Name != "db" || g.Path != filepath.Join(dataDir, "db") || g.State != "replicating" || g.Error != "" ||
		g.TXID != dbs[0].Pos().TXID || g.TXID == 0 || g.ReplicaTXID != 0 || g.StagedBytes != dbs[0].StagingBytes() || g.StagedBytes == 0 || g.LagSeconds <= 0 {
		t.Errorf("db: %+v", g)
	}
	if w := got[1]; w.Name != "later" || w.State != "waiting" || w.TXID != 0 || w.StagedBytes != 0 || w.LagSeconds != 0 {
		t.Errorf("later: %+v", w)
	}

	// After an upload the replica holds it all: no lag, nothing staged.
	if err := dbs[0].Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	dm.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	got = nil
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if g := got[0]; g.ReplicaTXID != g.TXID || g.LagSeconds != 0 || g.StagedBytes != 0 {
		t.Errorf("after flush: %+v", g)
	}

	rec = httptest.NewRecorder()
	dm.handler().ServeHTTP(rec, httptest.NewRequest("POST", "/status", nil))
	if rec.Code != 405 {
		t.Errorf("POST /status: %d, want 405", rec.Code)
	}
}
