package replica_test

import (
	"database/sql"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/litefs-dev/litefs/internal/checksum"

	_ "github.com/mattn/go-sqlite3"

	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/replicatest"
	"github.com/superfly/ltx"
)

// sqliteHistory runs real SQLite transactions and records the database file
// after each one (checkpointed, so the file holds the whole state) as one
// TXID of a chain: a snapshot plus segments that modify real b-tree pages,
// grow the file, and shrink it with VACUUM.
func sqliteHistory(t *testing.T, pageSize int) (*replicatest.Chain, map[ltx.TXID]int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{"PRAGMA page_size=" + strconv.Itoa(pageSize), "PRAGMA journal_mode=WAL"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}

	const insert = `WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x < ?)
		INSERT INTO t(v) SELECT hex(randomblob(200)) FROM n`
	steps := []struct {
		q    string
		args []any
	}{
		{q: "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"},
		{q: insert, args: []any{300}},
		{q: "UPDATE t SET v = upper(v) || 'x' WHERE id % 7 = 0"},
		{q: "CREATE INDEX t_v ON t(v)"},
		{q: insert, args: []any{50}},
		{q: "DELETE FROM t WHERE id > 40"},
		{q: "VACUUM"},
		{q: insert, args: []any{20}},
		{q: "UPDATE t SET v = 'one' WHERE id = 3"},
	}
	ch := replicatest.NewChain(uint32(pageSize))
	rows := make(map[ltx.TXID]int)
	for _, step := range steps {
		if _, err := db.Exec(step.q, step.args...); err != nil {
			t.Fatalf("%s: %v", step.q, err)
		}
		if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			t.Fatal(err)
		}
		img, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if n := binary.BigEndian.Uint32(img[28:32]); int(n)*pageSize != len(img) {
			t.Fatalf("after %q the file is %d bytes but the header says %d pages", step.q, len(img), n)
		}
		txid, err := ch.CommitImage(commitTime(ch.TXID()+1), img)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		rows[txid] = n
	}
	return ch, rows
}

func checkSQLite(t *testing.T, path string, wantRows int) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		t.Fatal(err)
	}
	if res != "ok" {
		t.Fatalf("integrity_check: %s", res)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != wantRows {
		t.Fatalf("restored %d rows, want %d", n, wantRows)
	}
}

func TestRestoreSQLite(t *testing.T) {
	for _, pageSize := range []int{1024, 4096, 65536} {
		t.Run(strconv.Itoa(pageSize), func(t *testing.T) {
			ch, rows := sqliteHistory(t, pageSize)
			last := ch.TXID()
			c := newFileReplica(t)
			// A snapshot, segments, a compaction overlapping them, and a
			// newer snapshot the restore to latest starts from.
			writeChain(t, c, ch, "9:1-2", "0:3-3", "0:4-4", "0:5-5", "0:6-6", "0:7-7", "0:8-8", "0:9-9",
				"1:3-6", "9:1-7")
			for txid := ltx.TXID(2); txid <= last; txid++ {
				if txid == 2 || txid >= 6 {
					out := restoreOK(t, c, ch, replica.RestoreOptions{TXID: txid}, txid)
					checkSQLite(t, out, rows[txid])
				}
			}
			out := restoreOK(t, c, ch, replica.RestoreOptions{}, last)
			checkSQLite(t, out, rows[last])

			// The rolling checksum of the real file agrees with the chain's.
			chk, err := checksum.DatabaseChecksum(out)
			if err != nil {
				t.Fatal(err)
			}
			if chk != ch.Checksum(last) {
				t.Fatalf("DatabaseChecksum = %s, want %s", chk, ch.Checksum(last))
			}
		})
	}
}

func TestRestoreSQLiteDamaged(t *testing.T) {
	ch, rows := sqliteHistory(t, 4096)
	c := newFileReplica(t)
	writeChain(t, c, ch, "9:1-4", "0:5-5", "0:6-7", "0:8-9")
	path := c.Path(0, 6, 7)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x55
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	restoreFails(t, c, replica.RestoreOptions{}, "0/0000000000000006-0000000000000007.ltx", nil)
	out := restoreOK(t, c, ch, replica.RestoreOptions{TXID: 5}, 5)
	checkSQLite(t, out, rows[5])
}
