package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/litefs-dev/litefs/internal/daemon"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/config"
)

func startErr(t *testing.T, e *env) error {
	t.Helper()
	dm := daemon.New(e.config(), testLogger(t))
	err := dm.Start(context.Background())
	if err == nil {
		_ = dm.Shutdown(context.Background())
		t.Fatal("daemon started; want an error")
	}
	return err
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not say %q", err, p)
		}
	}
}

func TestBadInputMissingDataDir(t *testing.T) {
	e := newEnv(t, "1s")
	os.RemoveAll(e.dataDir)
	wantErr(t, startErr(t, e), "data.dir "+e.dataDir+" does not exist", "create it")
}

func TestBadInputLiveMount(t *testing.T) {
	e := newEnv(t, "1s")
	e.start()
	other := *e
	other.dataDir = filepath.Join(e.root, "data2")
	other.replicaDir = filepath.Join(e.root, "replica2")
	os.MkdirAll(other.dataDir, 0o755)
	wantErr(t, startErr(t, &other), e.mountDir+" is already a live mount", "unmount it first")
}

func TestBadInputMissingDBReplicaHasData(t *testing.T) {
	e := newEnv(t, "1s")
	e.start()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (x)`)
	e.flush()
	db.Close()
	e.stop()
	for _, f := range []string{"db", "db-wal", "db-shm"} {
		os.Remove(filepath.Join(e.dataDir, f))
	}
	wantErr(t, startErr(t, e), "does not exist but its replica holds TXID", "run `litefs restore` first", "allow-empty-db")

	// allow-empty-db starts a new history whose TXIDs continue the replica's.
	e.extra = "allow-empty-db = true"
	e.start()
	db = e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE u (x)`)
	e.verify(db)
	e.checkOneHistory(2)
}

func TestBadInputUnknownScheme(t *testing.T) {
	_, err := config.Parse("x.toml", `
[fuse]
dir = "/mnt/a"
[data]
dir = "/data/a"
[[dbs]]
path = "/mnt/a/db"
[dbs.replica]
url = "gs://bucket/db"
`)
	if err == nil {
		t.Fatal("no error")
	}
	wantErr(t, err, `unknown scheme "gs"`, "s3://bucket/path or file:///dir")
}

// A database that leaves WAL mode stops replicating, loudly: /readyz says
// why, and nothing of the rollback-mode state reaches the replica.
func TestBadInputLeavesWALMode(t *testing.T) {
	e := newEnv(t, "0s")
	dm := e.start()
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (x)`)
	mustExec(t, db, `INSERT INTO t VALUES (1)`)
	before := e.flush()
	mustExec(t, db, `PRAGMA journal_mode=DELETE`)
	mustExec(t, db, `INSERT INTO t VALUES (2)`)
	st, err := e.db().State()
	if st != litefs.StateStopped || err == nil || !strings.Contains(err.Error(), "left WAL mode") {
		t.Fatalf("state %s, err %v; want stopped because it left WAL mode", st, err)
	}
	resp, herr := http.Get("http://" + dm.HTTPAddr() + "/readyz")
	if herr != nil {
		t.Fatal(herr)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "left WAL mode") {
		t.Fatalf("/readyz: %d %s", resp.StatusCode, body)
	}
	if err := e.db().Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := e.db().ReplicaPos(); r.TXID != before.TXID {
		t.Fatalf("replica moved from %d to %d after the database left WAL mode", before.TXID, r.TXID)
	}
}
