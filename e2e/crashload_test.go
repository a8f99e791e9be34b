package e2e

import (
	"database/sql"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The crash workload: writers commit numbered transactions (writer, seq),
// each of crashParts(seq) rows, deleting the rows of the transaction
// crashKeep before it (so the database stays small however long the soak),
// setting the writer's row in last and adding one to counter: a
// transaction is all there or not at all, and counter counts every
// transaction ever committed.
const crashSchema = `
CREATE TABLE IF NOT EXISTS w (writer INTEGER, seq INTEGER, part INTEGER, v BLOB, PRIMARY KEY (writer, seq, part));
CREATE TABLE IF NOT EXISTS last (writer INTEGER PRIMARY KEY, seq INTEGER);
CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, n INTEGER);
INSERT OR IGNORE INTO counter VALUES (1, 0);
`

const (
	crashWriters = 3
	crashKeep    = 40
)

// crashParts is how many rows transaction seq holds, and how big each is:
// single-row commits, multi-page transactions, and now and then one big
// enough to spill the page cache (the writers' cache_size is 50 pages).
func crashParts(seq int64) (n, size int) {
	switch {
	case seq%53 == 0:
		return 120, 1500
	case seq%7 == 0:
		return 20, 700
	default:
		return 1, 40 + int(seq%13)*30
	}
}

// crashState is what the app saw: per writer, the highest commit
// acknowledged and the highest attempted (an attempt after the last
// acknowledged one may or may not have committed: in doubt).
type crashState struct {
	acked, tried [crashWriters]int64
	commits      atomic.Int64
	inDoubt      int // failed commits found committed after a kill
}

// crashLoad runs writers and a checkpointer through the mount until stop
// is closed or the mount dies.
func crashLoad(t *testing.T, mnt string, st *crashState, stop <-chan struct{}) (wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	var dbs []*sql.DB
	for w := 0; w < crashWriters; w++ {
		params := "_journal_mode=WAL&_synchronous=NORMAL&_cache_size=50"
		if w == 1 {
			params = "_journal_mode=WAL&_synchronous=FULL&_cache_size=50"
		}
		db := openDB(t, filepath.Join(mnt, "db"), params)
		db.SetMaxOpenConns(1)
		dbs = append(dbs, db)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for seq := st.acked[w] + 1; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				st.tried[w] = seq
				if err := crashCommit(db, w, seq, rng); err != nil {
					return // the mount died
				}
				st.acked[w] = seq
				st.commits.Add(1)
			}
		}()
	}
	ck := openDB(t, filepath.Join(mnt, "db"), "_journal_mode=WAL")
	dbs = append(dbs, ck)
	wg.Add(1)
	go func() {
		defer wg.Done()
		modes := []string{"RESTART", "TRUNCATE", "PASSIVE", "RESTART", "TRUNCATE"}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(15+rand.IntN(40)) * time.Millisecond):
			}
			if _, err := ck.Exec(`PRAGMA wal_checkpoint(` + modes[i%len(modes)] + `)`); err != nil {
				var n int
				if ck.QueryRow(`SELECT 1`).Scan(&n) != nil {
					return // the mount died
				}
			}
		}
	}()
	return func() {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("the app's connections are still blocked 30 s after the daemon died")
		}
		for _, db := range dbs {
			db.Close()
		}
	}
}

func crashCommit(db *sql.DB, w int, seq int64, rng *rand.Rand) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	n, size := crashParts(seq)
	for p := 0; p < n; p++ {
		blob := make([]byte, size)
		for i := range blob {
			blob[i] = byte(rng.Uint32())
		}
		if _, err := tx.Exec(`INSERT INTO w (writer, seq, part, v) VALUES (?, ?, ?, ?)`, w, seq, p, blob); err != nil {
			return err
		}
	}
	for _, q := range []string{
		`DELETE FROM w WHERE writer = ?1 AND seq = ?2 - ` + strconv.Itoa(crashKeep),
		`INSERT OR REPLACE INTO last (writer, seq) VALUES (?1, ?2)`,
		`UPDATE counter SET n = n + 1 WHERE id = 1 AND ?1 IS NOT NULL AND ?2 IS NOT NULL`,
	} {
		if _, err := tx.Exec(q, w, seq); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// checkCrashDB checks a database after a kill: every acknowledged
// transaction is there (the last crashKeep of each writer whole, the
// counter counting all), the one in doubt whole or absent; it returns the
// last transaction present per writer.
func checkCrashDB(t *testing.T, db *sql.DB, st *crashState, where string) (present [crashWriters]int64) {
	t.Helper()
	integrity(t, db)
	var total int64
	for w := range crashWriters {
		var last sql.NullInt64
		if err := db.QueryRow(`SELECT seq FROM last WHERE writer = ?`, w).Scan(&last); err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatalf("%s: %v", where, err)
		}
		present[w] = last.Int64
		total += last.Int64
		if present[w] < st.acked[w] {
			t.Fatalf("%s: writer %d: the app saw transaction %d commit, the database holds up to %d: acknowledged commits lost", where, w, st.acked[w], present[w])
		}
		if present[w] > st.tried[w] {
			t.Fatalf("%s: writer %d: transaction %d present, only %d attempted", where, w, present[w], st.tried[w])
		}
		rows, err := db.Query(`SELECT seq, count(*) FROM w WHERE writer = ? GROUP BY seq ORDER BY seq`, w)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		next := max(1, present[w]-crashKeep+1)
		for rows.Next() {
			var seq, n int64
			if err := rows.Scan(&seq, &n); err != nil {
				t.Fatal(err)
			}
			if seq != next {
				t.Fatalf("%s: writer %d: rows of transaction %d where %d was due (last is %d): a transaction is missing or was not whole", where, w, seq, next, present[w])
			}
			if want, _ := crashParts(seq); int64(want) != n {
				t.Fatalf("%s: writer %d transaction %d has %d of its %d rows: torn", where, w, seq, n, want)
			}
			next++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if next != present[w]+1 {
			t.Fatalf("%s: writer %d: rows end at transaction %d, last says %d: a transaction is torn across tables", where, w, next-1, present[w])
		}
	}
	var counter int64
	if err := db.QueryRow(`SELECT n FROM counter WHERE id = 1`).Scan(&counter); err != nil {
		t.Fatal(err)
	}
	if counter != total {
		t.Fatalf("%s: counter %d, the writers' last transactions add up to %d", where, counter, total)
	}
	return present
}

// copyDBFiles copies the data dir's database and WAL (not the shm) into a
// new directory, so opening it cannot change what the restarted daemon
// finds on the volume (SQLite would checkpoint and delete the WAL on close).
func copyDBFiles(t *testing.T, dataDir string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"db", "db-wal"} {
		b, err := os.ReadFile(filepath.Join(dataDir, name))
		if errors.Is(err, os.ErrNotExist) && name == "db-wal" {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "db")
}
