package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/internal/checksum"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/s3test"
	"github.com/litefs-dev/litefs/internal/testenv"
	"github.com/litefs-dev/litefs/replica"
	lfs3 "github.com/litefs-dev/litefs/replica/s3"
)

// litestreamBin finds the litestream binary `make deps` installs.
func litestreamBin(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("litestream"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", "litestream")
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	t.Fatalf("litestream (v0.5.18) not installed: run make deps")
	return ""
}

// litestreamCmd runs litestream without AWS_CA_BUNDLE (its SDK setup fails
// on the bundle this environment exports) and with extra environment.
func litestreamCmd(t testing.TB, ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, litestreamBin(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

func runLitestream(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := litestreamCmd(t, ctx, env, args...).CombinedOutput()
	return string(out), err
}

// litestreamYAML is a Litestream 0.5 config replicating dbPath to
// s3://bucket/path on srv.
func litestreamYAML(srv *s3test.Server, dbPath, path string) string {
	return fmt.Sprintf(`dbs:
  - path: %s
    monitor-interval: 100ms
    replica:
      type: s3
      bucket: %s
      path: %s
      endpoint: %s
      region: %s
      force-path-style: true
      access-key-id: %s
      secret-access-key: %s
      sync-interval: 100ms
`, dbPath, srv.Bucket, path, srv.Endpoint, srv.Region, srv.AccessKey, srv.SecretKey)
}

// tableDump renders one table's rows in rowid order.
func tableDump(t testing.TB, db *sql.DB, table string) string {
	t.Helper()
	rows, err := db.Query(fmt.Sprintf("SELECT * FROM %q ORDER BY rowid", table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var b strings.Builder
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%v;", vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Litestream 0.5's restore reads a replica litefs wrote on S3: the latest
// state (config and URL forms) and a -txid boundary.
func TestInteropLitestreamRestoresLitefs(t *testing.T) {
	litestreamBin(t)
	srv := s3test.StartVersityGW(t)
	e := newS3Env(t, srv, "apps/db", "0s")
	e.start()
	db := e.open("_journal_mode=WAL")
	db.SetMaxOpenConns(1)
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)`)
	for i := 0; i < 300; i++ {
		mustExec(t, db, `INSERT INTO t (v, b) VALUES (?, randomblob(?))`, fmt.Sprint("row ", i), 100+i*20)
	}
	mark := e.flush()
	markDump := dump(t, db)
	time.Sleep(5 * time.Millisecond)
	markAt := time.Now()
	time.Sleep(5 * time.Millisecond)
	mustExec(t, db, `UPDATE t SET v = v || ' updated' WHERE id % 7 = 0`)
	mustExec(t, db, `DELETE FROM t WHERE id % 11 = 0`)
	for i := 0; i < 100; i++ {
		mustExec(t, db, `INSERT INTO t (v, b) VALUES (?, randomblob(5000))`, fmt.Sprint("late ", i))
	}
	pos := e.verify(db)
	liveDump := dump(t, db)
	snaps, segs := checkChain(t, e.client())
	t.Logf("litefs replica: %d snapshots, %d level-0 objects, TXID %d", len(snaps), len(segs), pos.TXID)

	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db") // the path litestream's config names
	cfg := filepath.Join(dir, "litestream.yml")
	if err := os.WriteFile(cfg, []byte(litestreamYAML(srv, dbPath, e.path)), 0o644); err != nil {
		t.Fatal(err)
	}

	// The config form.
	out := filepath.Join(dir, "latest.db")
	if msg, err := runLitestream(t, nil, "restore", "-config", cfg, "-o", out, dbPath); err != nil {
		t.Fatalf("litestream restore -config: %v\n%s", err, msg)
	}
	checkRestored(t, out, pos.Checksum, liveDump)

	// The URL form, credentials from LITESTREAM_* as the guide shows.
	out = filepath.Join(dir, "url.db")
	url := fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s&forcePathStyle=true", srv.Bucket, e.path, srv.Endpoint, srv.Region)
	env := []string{"LITESTREAM_ACCESS_KEY_ID=" + srv.AccessKey, "LITESTREAM_SECRET_ACCESS_KEY=" + srv.SecretKey}
	if msg, err := runLitestream(t, env, "restore", "-o", out, url); err != nil {
		t.Fatalf("litestream restore %s: %v\n%s", url, err, msg)
	}
	checkRestored(t, out, pos.Checksum, liveDump)

	// A TXID boundary, 16 hex digits.
	out = filepath.Join(dir, "txid.db")
	if msg, err := runLitestream(t, nil, "restore", "-config", cfg, "-o", out, "-txid", mark.TXID.String(), dbPath); err != nil {
		t.Fatalf("litestream restore -txid %s: %v\n%s", mark.TXID, err, msg)
	}
	checkRestored(t, out, mark.Checksum, markDump)

	// A timestamp between the mark and the next commit (Litestream selects
	// by the litestream-timestamp metadata).
	out = filepath.Join(dir, "ts.db")
	ts := markAt.UTC().Format(time.RFC3339Nano)
	if msg, err := runLitestream(t, nil, "restore", "-config", cfg, "-o", out, "-timestamp", ts, dbPath); err != nil {
		t.Fatalf("litestream restore -timestamp %s: %v\n%s", ts, err, msg)
	}
	checkRestored(t, out, mark.Checksum, markDump)
}

// litefs restores a replica Litestream 0.5 wrote (files flagged
// NoChecksum), through the library and through the restore CLI.
func TestInteropLitefsRestoresLitestream(t *testing.T) {
	litestreamBin(t)
	srv := s3test.StartVersityGW(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	const path = "litestream/app"
	cfg := filepath.Join(dir, "litestream.yml")
	if err := os.WriteFile(cfg, []byte(litestreamYAML(srv, dbPath, path)), 0o644); err != nil {
		t.Fatal(err)
	}
	local := openDB(t, dbPath, "_journal_mode=WAL")
	local.SetMaxOpenConns(1)
	mustExec(t, local, `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)`)
	for i := 0; i < 200; i++ {
		mustExec(t, local, `INSERT INTO t (v, b) VALUES (?, randomblob(?))`, fmt.Sprint("row ", i), 50+i*10)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cmd := litestreamCmd(t, ctx, nil, "replicate", "-config", cfg)
	lw := &testenv.LogBuffer{}
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cancel()
			<-done
			t.Errorf("litestream did not exit 15s after SIGTERM")
		}
	}
	t.Cleanup(func() {
		stop()
		cancel()
		if t.Failed() {
			t.Logf("litestream output:\n%s", lw)
		}
	})

	c := srv.Client(t, path)
	maxTXID := func() ltx.TXID {
		var m ltx.TXID
		for level := 0; level <= replica.SnapshotLevel; level++ {
			infos, err := c.LTXFileNames(context.Background(), level, 0)
			if err != nil {
				return 0
			}
			for _, i := range infos {
				m = max(m, i.MaxTXID)
			}
		}
		return m
	}
	waitFor(t, 30*time.Second, "Litestream's LTX files in versitygw", func() bool { return maxTXID() > 0 })

	// Writes while Litestream replicates, each round in its own files.
	for round := 0; round < 3; round++ {
		before := maxTXID()
		mustExec(t, local, `UPDATE t SET v = v || ' updated' WHERE id % 5 = ?`, round)
		tx, err := local.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			mustExec(t, tx, `INSERT INTO t (v, b) VALUES (?, randomblob(3000))`, fmt.Sprint("tx ", round, i))
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		mustExec(t, local, `DELETE FROM t WHERE id % 9 = ?`, round)
		waitFor(t, 30*time.Second, "Litestream to upload the next round", func() bool { return maxTXID() > before })
	}
	want := tableDump(t, local, "t")

	// Until Litestream has sent the last write, a restore is behind.
	var restored string
	waitFor(t, 30*time.Second, "a litefs restore of Litestream's replica to hold every write", func() bool {
		out := filepath.Join(t.TempDir(), "poll.db")
		if _, err := replica.Restore(context.Background(), c, replica.RestoreOptions{OutputPath: out}); err != nil {
			t.Logf("restore while Litestream runs: %v", err)
			return false
		}
		db := openDB(t, out, "mode=ro")
		defer db.Close()
		restored = tableDump(t, db, "t")
		return restored == want
	})
	stop()

	// Every file Litestream wrote carries no checksums.
	var files []*ltx.FileInfo
	for level := 0; level <= replica.SnapshotLevel; level++ {
		infos, err := c.LTXFiles(context.Background(), level, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, infos...)
	}
	for _, f := range files {
		hdr := readHeader(t, c, f)
		if !hdr.NoChecksum() {
			t.Fatalf("Litestream's %s has flags %#x, want NoChecksum", replica.Key(f), hdr.Flags)
		}
	}
	if len(files) < 3 {
		t.Fatalf("Litestream wrote %d LTX files; the test wants a chain of several", len(files))
	}
	t.Logf("Litestream wrote %d LTX files, all flagged NoChecksum", len(files))

	// The restore CLI with a litefs config naming the same replica.
	e := newS3Env(t, srv, path, "1s")
	cfgPath := e.writeConfig(e.configText())
	out := filepath.Join(t.TempDir(), "cli.db")
	code, msg := runRestoreCLI(t, "-config", cfgPath, "-o", out, "-v", filepath.Join(e.mountDir, "db"))
	if code != 0 {
		t.Fatalf("restore CLI from Litestream's replica: exit %d\n%s", code, msg)
	}
	db := openDB(t, out, "mode=ro")
	integrity(t, db)
	if got := tableDump(t, db, "t"); got != want {
		t.Fatalf("restored from Litestream's replica:\n%.300s\nwant:\n%.300s", got, want)
	}
	// `litefs restore -o OUT s3://…`, Litestream's positional form, with the
	// endpoint and Litestream's credentials from the environment.
	out = filepath.Join(t.TempDir(), "url.db")
	rcmd := exec.Command(filepath.Join(testenv.Binaries(t), "litefs"), "restore", "-o", out, fmt.Sprintf("s3://%s/%s", srv.Bucket, path))
	rcmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL_S3="+srv.Endpoint, "AWS_REGION="+srv.Region,
		"LITESTREAM_ACCESS_KEY_ID="+srv.AccessKey, "LITESTREAM_SECRET_ACCESS_KEY="+srv.SecretKey)
	if msg, err := rcmd.CombinedOutput(); err != nil {
		t.Fatalf("litefs restore -o OUT s3://%s/%s: %v\n%s", srv.Bucket, path, err, msg)
	}
	db = openDB(t, out, "mode=ro")
	if got := tableDump(t, db, "t"); got != want {
		t.Fatalf("litefs restore by URL differs:\n%.300s\nwant:\n%.300s", got, want)
	}

	// And the latest database's checksum equals the local file's, once the
	// local WAL is checkpointed (Litestream's own tables included).
	local.Close()
	lsum, err := checksum.DatabaseChecksum(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	rsum, err := checksum.DatabaseChecksum(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("local checksum %s, restored %s", lsum, rsum)

	// Migrating: litefs takes over Litestream's replica path. The init
	// container restores, the daemon resumes on a replica without checksums
	// (a new snapshot whose TXID continues Litestream's), the app goes on,
	// and both restores see the new state.
	lsMax := files[0].MaxTXID
	for _, f := range files {
		lsMax = max(lsMax, f.MaxTXID)
	}
	e.restoreInto()
	e.start()
	if p := e.db().Pos(); p.TXID <= lsMax {
		t.Fatalf("litefs resumed Litestream's replica at TXID %d, Litestream's max is %d: TXIDs must never go back", p.TXID, lsMax)
	}
	app := e.open("_journal_mode=WAL")
	app.SetMaxOpenConns(1)
	mustExec(t, app, `INSERT INTO t (v, b) VALUES ('after migration', randomblob(10))`)
	pos := e.verify(app)
	checkChain(t, e.client())
	mig := filepath.Join(t.TempDir(), "migrated.db")
	if msg, err := runLitestream(t, nil, "restore", "-config", cfg, "-o", mig, dbPath); err != nil {
		t.Fatalf("litestream restore after litefs took over its replica: %v\n%s", err, msg)
	}
	checkRestored(t, mig, pos.Checksum, dump(t, app))
}

func readHeader(t testing.TB, c *lfs3.Client, f *ltx.FileInfo) ltx.Header {
	t.Helper()
	rc, err := c.OpenLTXFile(context.Background(), f.Level, f.MinTXID, f.MaxTXID, 0, ltx.HeaderSize)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	var hdr ltx.Header
	if err := hdr.UnmarshalBinary(b); err != nil {
		t.Fatalf("header of %s: %v", replica.Key(f), err)
	}
	return hdr
}
