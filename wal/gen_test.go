package wal

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	"testing"

	_ "github.com/mattn/go-sqlite3"
)

// corpusFile is one WAL file in testdata/wal, made by real SQLite: <name>.db
// is the database file as it was on disk (the state the WAL applies to) and
// <name>.db-wal the WAL beside it, both copied while the connection was open
// (closing the last connection would checkpoint and delete the WAL).
type corpusFile struct {
	name     string
	pageSize uint32
	commits  int  // committed transactions a recovery keeps
	padded   bool // psow=0, synchronous=FULL: commit frames are repeated
	tail     bool // bytes after the last valid commit (torn, stale, rolled back)
	dsn      string
	setup    []string                         // pragmas, before anything is written
	run      func(db *sql.DB) error           // the traffic
	post     func(wal []byte) ([]byte, error) // damage done to the copy
}

var corpus = []corpusFile{
	{name: "p1024", pageSize: 1024, commits: 8, run: mixedTraffic},
	{name: "p4096", pageSize: 4096, commits: 8, run: mixedTraffic},
	{name: "p65536", pageSize: 65536, commits: 2, run: func(db *sql.DB) error {
		return execAll(db,
			"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
			"INSERT INTO t(v) VALUES ('hello')")
	}},
	{name: "pad1024", pageSize: 1024, commits: 5, padded: true,
		dsn: "?psow=0", setup: []string{"PRAGMA synchronous=FULL"}, run: func(db *sql.DB) error {
			return execAll(db,
				"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
				"INSERT INTO t(v) VALUES ('a')",
				"INSERT INTO t(v) SELECT printf('%.300c', 'b') FROM (SELECT 1 UNION SELECT 2 UNION SELECT 3)",
				"UPDATE t SET v = 'c' WHERE id = 1",
				"DELETE FROM t WHERE id = 2")
		}},
	{name: "spill", pageSize: 1024, commits: 3, setup: []string{"PRAGMA cache_size=10"}, run: func(db *sql.DB) error {
		return execAll(db,
			"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
			// Inserting spills; updating the first rows again rewrites
			// spilled frames in place (walRewriteChecksums at commit).
			`BEGIN;
			 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300)
			   INSERT INTO t(v) SELECT printf('%.200c', char(65 + i % 26)) FROM n;
			 UPDATE t SET v = printf('%.150c', 'z') WHERE id <= 60;
			 COMMIT`,
			"UPDATE t SET v = 'small' WHERE id = 7")
	}},
	{name: "rollback", pageSize: 1024, commits: 3, tail: true, setup: []string{"PRAGMA cache_size=10"}, run: func(db *sql.DB) error {
		if err := execAll(db,
			"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
			"INSERT INTO t(v) VALUES ('before')"); err != nil {
			return err
		}
		// A spill then a rollback leaves uncommitted frames; the next
		// commit overwrites only the first of them.
		if err := execAll(db, `BEGIN;
			WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200)
			  INSERT INTO t(v) SELECT printf('%.200c', 'r') FROM n;`); err != nil {
			return err
		}
		if err := execAll(db, "ROLLBACK"); err != nil {
			return err
		}
		return execAll(db, "INSERT INTO t(v) VALUES ('after')")
	}},
	{name: "torn", pageSize: 4096, commits: 2, tail: true, run: func(db *sql.DB) error {
		return execAll(db,
			"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
			"INSERT INTO t(v) VALUES ('kept')",
			"INSERT INTO t(v) SELECT printf('%.3000c', 'x') FROM (SELECT 1 UNION SELECT 2 UNION SELECT 3)")
	}, post: func(wal []byte) ([]byte, error) {
		// Cut the last (commit) frame in half: its transaction is lost.
		return wal[:len(wal)-(FrameHeaderSize+4096)/2], nil
	}},
	{name: "restart", pageSize: 1024, commits: 2, tail: true, run: func(db *sql.DB) error {
		if err := execAll(db,
			"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
			`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 40)
			   INSERT INTO t(v) SELECT printf('%.300c', 'o') FROM n`); err != nil {
			return err
		}
		var busy, logged, ckpt int
		if err := db.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logged, &ckpt); err != nil {
			return err
		}
		if busy != 0 || logged != ckpt {
			return fmt.Errorf("checkpoint incomplete: busy=%d log=%d checkpointed=%d", busy, logged, ckpt)
		}
		// The next writer restarts the WAL: new salts, frames from 32,
		// the older generation's frames left behind the new ones.
		return execAll(db, "UPDATE t SET v = 'new' WHERE id = 3", "UPDATE t SET v = 'newer' WHERE id = 30")
	}},
}

func mixedTraffic(db *sql.DB) error {
	return execAll(db,
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
		"INSERT INTO t(v) VALUES ('one')",
		`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 30)
		   INSERT INTO t(v) SELECT printf('%.100c', char(97 + i % 26)) FROM n`,
		"UPDATE t SET v = 'two' WHERE id % 3 = 0",
		"CREATE INDEX t_v ON t(v)",
		"DELETE FROM t WHERE id > 10",
		"VACUUM", // shrinks the database: commit size drops
		"INSERT INTO t(v) VALUES ('last')")
}

func execAll(db *sql.DB, stmts ...string) error {
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
	}
	return nil
}

const corpusDir = "../testdata/wal"

// TestGenerateTestdata rebuilds testdata/wal with real SQLite. Salts are
// random, so every run changes the bytes but not the shape.
//
//	LITEFS_GEN_WAL=1 go test -run TestGenerateTestdata ./wal/
func TestGenerateTestdata(t *testing.T) {
	if os.Getenv("LITEFS_GEN_WAL") == "" {
		t.Skip("set LITEFS_GEN_WAL=1 to rebuild testdata/wal")
	}
	for _, c := range corpus {
		dbb, walb, err := generate(t.TempDir(), c)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := os.WriteFile(filepath.Join(corpusDir, c.name+".db"), dbb, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(corpusDir, c.name+".db-wal"), walb, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: db %d bytes, wal %d bytes", c.name, len(dbb), len(walb))
	}
}

// generate runs c's traffic through SQLite and returns copies of the db and
// WAL files taken with the connection still open.
func generate(dir string, c corpusFile) (dbBytes, walBytes []byte, err error) {
	path := filepath.Join(dir, c.name+".db")
	db, err := sql.Open("sqlite3", "file:"+path+c.dsn)
	if err != nil {
		return nil, nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // pragmas are per connection
	setup := append([]string{
		fmt.Sprintf("PRAGMA page_size=%d", c.pageSize),
		"PRAGMA journal_mode=WAL",
		"PRAGMA wal_autocheckpoint=0",
	}, c.setup...)
	if err := execAll(db, setup...); err != nil {
		return nil, nil, err
	}
	if err := c.run(db); err != nil {
		return nil, nil, err
	}
	if dbBytes, err = os.ReadFile(path); err != nil {
		return nil, nil, err
	}
	if walBytes, err = os.ReadFile(path + "-wal"); err != nil {
		return nil, nil, err
	}
	if c.post != nil {
		if walBytes, err = c.post(walBytes); err != nil {
			return nil, nil, err
		}
	}
	return dbBytes, walBytes, nil
}

// checkpointWithSQLite is the oracle: it lets SQLite recover db+wal and
// checkpoint, and returns the resulting database file.
func checkpointWithSQLite(t testing.TB, dbBytes, walBytes []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "o.db")
	if err := os.WriteFile(path, dbBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+"-wal", walBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	var busy, logged, ckpt int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logged, &ckpt); err != nil {
		t.Fatal(err)
	}
	if busy != 0 {
		t.Fatalf("oracle checkpoint busy")
	}
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("oracle integrity_check: %q %v", ok, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func loadCorpus(t testing.TB, c corpusFile) (dbBytes, walBytes []byte) {
	t.Helper()
	dbBytes, err := os.ReadFile(filepath.Join(corpusDir, c.name+".db"))
	if err != nil {
		t.Fatal(err)
	}
	walBytes, err = os.ReadFile(filepath.Join(corpusDir, c.name+".db-wal"))
	if err != nil {
		t.Fatal(err)
	}
	return dbBytes, walBytes
}
