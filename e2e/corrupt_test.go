package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/testenv"
	"github.com/litefs-dev/litefs/replica"
)

// A replica produced by litefs is damaged one object at a time (a flipped
// byte in a page or in the checksum, truncated, deleted): restore through
// the CLI fails naming that object and leaves no database and no temp
// file at the target; with -txid at the boundary before the damage it
// restores exactly the state the app had then. Once more through the
// standalone restore binary, for its exit status.
func TestCorruptReplicaRestore(t *testing.T) {
	e := newEnv(t, "0s")
	e.start()
	db := e.open("_journal_mode=WAL")
	mustExec(t, db, `CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)`)
	type state struct {
		sum  ltx.Checksum
		dump string
	}
	states := map[ltx.TXID]state{}
	record := func() {
		p := e.flush()
		states[p.TXID] = state{p.Checksum, dump(t, db)}
	}
	record()
	for i := 0; i < 12; i++ {
		mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(?))`, 500+i*700)
		record()
		if i%3 == 2 {
			mustExec(t, db, `UPDATE t SET v = randomblob(300) WHERE id = ?`, i/2)
			record()
		}
	}
	// The damaged object must be one a restore of the latest state reads:
	// after the newest snapshot (size-triggered snapshots come often in a
	// small database, the shutdown's flush may take one). Small commits
	// until three follow it.
	ctx := context.Background()
	var segs []*ltx.FileInfo
	for i := 0; ; i++ {
		db.Close()
		e.stop()
		snaps, err := e.client().LTXFiles(ctx, replica.SnapshotLevel, 0)
		if err != nil || len(snaps) == 0 {
			t.Fatalf("%d snapshots (%v)", len(snaps), err)
		}
		if segs, err = e.client().LTXFiles(ctx, 0, snaps[len(snaps)-1].MaxTXID+1); err != nil {
			t.Fatal(err)
		}
		if len(segs) >= 3 {
			break
		}
		if i == 10 {
			t.Fatalf("%d level-0 objects after the newest snapshot %s", len(segs), snaps[len(snaps)-1].MaxTXID)
		}
		e.start()
		db = e.open("_journal_mode=WAL")
		for j := 0; j < 5; j++ {
			mustExec(t, db, `INSERT INTO t (v) VALUES (randomblob(50))`)
			record()
		}
	}
	// Not the newest object: without it the replica simply ends earlier
	// (a valid, older state), which no restore can tell from a short history.
	target := segs[(len(segs)-1)/2]
	before := target.MinTXID - 1
	if _, ok := states[before]; !ok {
		t.Fatalf("no recorded state at TXID %s", before)
	}
	name := ltx.FormatFilename(target.MinTXID, target.MaxTXID)
	key := "0/" + name
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte // nil deletes
		want   string              // what the error must name
	}{
		{"FlipPageByte", func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }, key},
		{"FlipFileChecksum", func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }, key},
		{"TruncateHalf", func(b []byte) []byte { return b[:len(b)/2] }, key},
		{"TruncateLastByte", func(b []byte) []byte { return b[:len(b)-1] }, key},
		// A deleted object has no key to read; the error names the TXIDs
		// it held and the objects around the gap.
		{"Delete", nil, target.MinTXID.String() + "-" + target.MaxTXID.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyTree(t, e.replicaDir)
			path := filepath.Join(dir, "ltx", "0", name)
			if tc.damage == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, tc.damage(b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			outDir := t.TempDir()
			out := filepath.Join(outDir, "restored.db")
			code, msg := runRestoreCLI(t, "-o", out, "-replica", "file://"+dir)
			if code == 0 {
				t.Fatalf("restore of a replica with %s damaged succeeded:\n%s", key, msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("restore failed without naming %s:\n%s", tc.want, msg)
			}
			checkEmptyDir(t, outDir)
			t.Logf("restore failed: %s", strings.TrimSpace(msg))

			code, msg = runRestoreCLI(t, "-o", out, "-replica", "file://"+dir, "-txid", before.String())
			if code != 0 {
				t.Fatalf("restore -txid %s, before the damage: exit %d:\n%s", before, code, msg)
			}
			checkRestored(t, out, states[before].sum, states[before].dump)

			for _, suffix := range []string{"", "-wal", "-shm"} {
				os.Remove(out + suffix) // checkRestored's connection made the -wal and -shm
			}
			if tc.name == "FlipPageByte" {
				bin := filepath.Join(testenv.Binaries(t), "restore")
				cmd := exec.Command(bin, "-o", out, "-replica", "file://"+dir)
				outb, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(outb), key) {
					t.Fatalf("restore binary: %v (want exit status 1 naming %s):\n%s", err, key, outb)
				}
				checkEmptyDir(t, outDir)
			}
		})
	}
}

func checkEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("a failed restore left %s in %s", e.Name(), dir)
	}
}

// copyTree copies a directory of regular files into a new temp dir.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
