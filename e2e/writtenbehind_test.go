package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/litefs-dev/litefs"
	"github.com/litefs-dev/litefs/internal/testenv"
	"github.com/litefs-dev/litefs/replica"
)

// Someone writes the data dir's database directly while litefs runs (a
// second SQLite connection on the data path, not through the mount; the
// app had closed its own, so SQLite itself stays consistent). The forced
// snapshot detects it and says so: the database stops replicating with a
// reason naming the write behind litefs's back, /readyz answers 503. The
// replica never mixes the two histories: a restore is a state the database
// really had, or fails. A restart then starts a new history from the
// volume, restore = live.
func TestWrittenBehindWhileMounted(t *testing.T) {
	e := newEnv(t, "0s")
	var logs testenv.LogBuffer
	dm := e.startLogged(&logs)
	ctx := context.Background()
	app := e.open("_journal_mode=WAL")
	mustExec(t, app, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT)`)
	for i := 0; i < 20; i++ {
		mustExec(t, app, `INSERT INTO t (v) VALUES (?)`, fmt.Sprint("t ", i))
		mustExec(t, app, `INSERT INTO u (v) VALUES (?)`, fmt.Sprint("u ", i))
	}
	replicated := e.flush()
	states := []string{dump(t, app)} // every state the database had
	app.Close()                      // the last connection: SQLite checkpoints and unlinks the WAL through the mount

	direct := openDB(t, filepath.Join(e.dataDir, "db"), "_journal_mode=WAL")
	mustExec(t, direct, `INSERT INTO u (v) VALUES ('written behind litefs''s back')`)
	direct.Close()

	// The app goes on through the mount before anything notices.
	app = e.open("_journal_mode=WAL")
	states = append(states, dump(t, app))
	for i := 0; i < 3; i++ {
		mustExec(t, app, `INSERT INTO t (v) VALUES (?)`, fmt.Sprint("after ", i))
		states = append(states, dump(t, app))
	}
	staged := e.db().Pos()

	// A snapshot forced now must notice (one mismatch may be retried once).
	var serr error
	var st litefs.DBState
	var why error
	for try := 1; try <= 3; try++ {
		_, serr = e.db().Snapshot(ctx)
		st, why = e.db().State()
		t.Logf("forced snapshot %d: %v; state %s: %v", try, serr, st, why)
		if st == litefs.StateStopped {
			break
		}
	}
	if serr == nil || st != litefs.StateStopped || why == nil || !strings.Contains(why.Error(), "written behind litefs's back") {
		t.Errorf("after a write behind the mount, the snapshot returned %v and the state is %s (%v); want stopped, saying it was written behind litefs's back", serr, st, why)
	}
	resp, err := http.Get("http://" + dm.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "written behind litefs's back") {
		t.Errorf("/readyz: %d %s", resp.StatusCode, body)
	}

	// Nothing the app commits from now on reaches the replica.
	if err := e.db().Flush(ctx); err != nil {
		t.Logf("flush after detection: %v", err)
	}
	atDetection := e.db().ReplicaPos()
	mustExec(t, app, `INSERT INTO t (v) VALUES ('after detection')`)
	states = append(states, dump(t, app))
	if err := e.db().Flush(ctx); err != nil {
		t.Logf("flush after detection: %v", err)
	}
	if r := e.db().ReplicaPos(); r.TXID != atDetection.TXID {
		t.Errorf("the replica moved from TXID %d to %d after replication stopped", atDetection.TXID, r.TXID)
	}
	t.Logf("replicated TXID %d before the write behind; staged %d before detection; replica at %d", replicated.TXID, staged.TXID, atDetection.TXID)

	out := filepath.Join(t.TempDir(), "restored.db")
	pos, rerr := replica.Restore(ctx, e.client(), replica.RestoreOptions{OutputPath: out})
	if rerr != nil {
		t.Logf("restore fails loudly: %v", rerr)
	} else {
		rdb := openDB(t, out, "mode=ro")
		integrity(t, rdb)
		got := dump(t, rdb)
		rdb.Close()
		match := -1
		for i, s := range states {
			if s == got {
				match = i
			}
		}
		if match < 0 {
			t.Errorf("BUG: the replica's latest state (TXID %d) is a blend of two histories, a state the database never had: "+
				"the app's commits after the write behind litefs's back were replicated on top of the state before it.\nrestored:    %.400s\nlast real:   %.400s\nbefore it:   %.400s",
				pos.TXID, got, states[len(states)-1], states[0])
		} else {
			t.Logf("restore gives the state the database had at step %d of %d", match, len(states)-1)
		}
	}

	// A restart takes a new snapshot of the volume and says why.
	app.Close()
	e.stop()
	logs.Reset()
	e.startLogged(&logs)
	if !strings.Contains(logs.String(), "written behind litefs's back") {
		t.Errorf("the restart did not say why it took a snapshot:\n%s", logs.String())
	}
	app = e.open("_journal_mode=WAL")
	e.verify(app)
	e.checkOneHistory(2)
}
