package wal

import (
	"bufio"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// A trace is the sequence of pwrite64/ftruncate/unlink calls real SQLite
// made on a -wal file, recorded with strace: what fs/ would hand the tracker
// (before the kernel splits writes further). Stored as records:
//
//	'W' offset:u64 length:u32 bytes   a write
//	'T' size:u64                      a truncate
//	'U'                               an unlink
type traceOp struct {
	kind byte
	off  int64 // offset, or size for 'T'
	data []byte
}

// traceScenarios: the corpus files whose making exercises the traps, plus
// one for journal_size_limit and wal_checkpoint(TRUNCATE). commits counts
// every transaction of the whole run, across WAL generations.
var traceScenarios = []struct {
	name    string
	commits int
	c       corpusFile
}{
	{"spill", 3, corpusByName("spill")},
	{"pad1024", 5, corpusByName("pad1024")},
	{"rollback", 3, corpusByName("rollback")},
	{"restart", 4, corpusByName("restart")},
	{"limit", 5, corpusFile{name: "limit", pageSize: 1024, setup: []string{"PRAGMA journal_size_limit=0"},
		run: func(db *sql.DB) error {
			if err := execAll(db,
				"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
				`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20)
				   INSERT INTO t(v) SELECT printf('%.300c', 'o') FROM n`,
				"PRAGMA wal_checkpoint(PASSIVE)",
				// Restart; the first commit truncates the WAL to its end.
				"UPDATE t SET v = 'a' WHERE id = 1",
				"UPDATE t SET v = 'b' WHERE id = 2",
				"PRAGMA wal_checkpoint(TRUNCATE)", // ftruncate(0)
			); err != nil {
				return err
			}
			return execAll(db, "UPDATE t SET v = 'c' WHERE id = 3")
		}}},
}

func corpusByName(name string) corpusFile {
	for _, c := range corpus {
		if c.name == name {
			return c
		}
	}
	panic("no corpus file " + name)
}

// TestGenerateTraces re-runs the scenarios under strace and rebuilds
// testdata/wal/*.trace (needs strace):
//
//	LITEFS_GEN_WAL=1 go test -run TestGenerateTraces ./wal/
func TestGenerateTraces(t *testing.T) {
	if os.Getenv("LITEFS_GEN_WAL") == "" {
		t.Skip("set LITEFS_GEN_WAL=1 to rebuild testdata/wal/*.trace")
	}
	straceBin, err := exec.LookPath("strace")
	if err != nil {
		t.Fatal("strace not found")
	}
	for _, s := range traceScenarios {
		dir := t.TempDir()
		out := filepath.Join(dir, "strace.txt")
		cmd := exec.Command(straceBin, "-f", "-qq", "-e", "trace=pwrite64,ftruncate,unlink,unlinkat",
			"-xx", "-s", "70000", "-y", "-o", out, os.Args[0], "-test.run=^TestTraceChild$")
		cmd.Env = append(os.Environ(), "LITEFS_TRACE_CHILD="+s.name, "LITEFS_TRACE_DIR="+dir)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", s.name, err, b)
		}
		ops, err := parseStrace(out, "/"+s.name+".db-wal")
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if err := os.WriteFile(filepath.Join(corpusDir, s.name+".trace"), encodeTrace(ops), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d operations", s.name, len(ops))
	}
}

// TestTraceChild is the process strace watches.
func TestTraceChild(t *testing.T) {
	name := os.Getenv("LITEFS_TRACE_CHILD")
	if name == "" {
		t.Skip("run by TestGenerateTraces")
	}
	for _, s := range traceScenarios {
		if s.name == name {
			c := s.c
			c.post = nil
			if _, _, err := generate(os.Getenv("LITEFS_TRACE_DIR"), c); err != nil {
				t.Fatal(err)
			}
			return // generate closed the db: checkpoint and unlink are traced too
		}
	}
	t.Fatalf("no scenario %q", name)
}

var (
	reWrite    = regexp.MustCompile(`^\d+ +pwrite64\(\d+<([^>]*)>, "([^"]*)", (\d+), (\d+)\) = (\d+)$`)
	reTruncate = regexp.MustCompile(`^\d+ +ftruncate\(\d+<([^>]*)>, (\d+)\) = 0$`)
	reUnlink   = regexp.MustCompile(`^\d+ +unlink(?:at)?\((?:AT_FDCWD, )?"([^"]*)"(?:, 0)?\) = 0$`)
)

func unescape(s string) ([]byte, error) {
	return hex.DecodeString(strings.ReplaceAll(s, `\x`, ""))
}

func parseStrace(path, suffix string) ([]traceOp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ops []traceOp
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "unfinished") || strings.Contains(line, "resumed") {
			return nil, fmt.Errorf("interleaved syscalls: %.100s", line)
		}
		var m []string
		var kind byte
		switch {
		case reWrite.MatchString(line):
			m, kind = reWrite.FindStringSubmatch(line), 'W'
		case reTruncate.MatchString(line):
			m, kind = reTruncate.FindStringSubmatch(line), 'T'
		case reUnlink.MatchString(line):
			m, kind = reUnlink.FindStringSubmatch(line), 'U'
		default:
			continue // other files, failed calls
		}
		p, err := unescape(m[1])
		if err != nil {
			return nil, err
		}
		if !strings.HasSuffix(string(p), suffix) {
			continue
		}
		op := traceOp{kind: kind}
		switch kind {
		case 'W':
			if op.data, err = unescape(m[2]); err != nil {
				return nil, err
			}
			op.off, _ = strconv.ParseInt(m[4], 10, 64)
			if n, _ := strconv.Atoi(m[5]); n != len(op.data) {
				return nil, fmt.Errorf("short write: %.100s", line)
			}
		case 'T':
			op.off, _ = strconv.ParseInt(m[2], 10, 64)
		}
		ops = append(ops, op)
	}
	return ops, sc.Err()
}

func encodeTrace(ops []traceOp) []byte {
	var b []byte
	for _, op := range ops {
		b = append(b, op.kind)
		switch op.kind {
		case 'W':
			b = binary.BigEndian.AppendUint64(b, uint64(op.off))
			b = binary.BigEndian.AppendUint32(b, uint32(len(op.data)))
			b = append(b, op.data...)
		case 'T':
			b = binary.BigEndian.AppendUint64(b, uint64(op.off))
		}
	}
	return b
}

func decodeTrace(b []byte) ([]traceOp, error) {
	var ops []traceOp
	for len(b) > 0 {
		op := traceOp{kind: b[0]}
		b = b[1:]
		switch op.kind {
		case 'W':
			if len(b) < 12 {
				return nil, fmt.Errorf("truncated trace")
			}
			op.off = int64(binary.BigEndian.Uint64(b))
			n := int(binary.BigEndian.Uint32(b[8:]))
			if len(b) < 12+n {
				return nil, fmt.Errorf("truncated trace")
			}
			op.data, b = b[12:12+n], b[12+n:]
		case 'T':
			if len(b) < 8 {
				return nil, fmt.Errorf("truncated trace")
			}
			op.off, b = int64(binary.BigEndian.Uint64(b)), b[8:]
		case 'U':
		default:
			return nil, fmt.Errorf("bad record %q", op.kind)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// pageCacheSplit cuts a write at 4 KiB file offsets, as the kernel does on
// its way to a FUSE daemon without direct_io.
func pageCacheSplit(off int64, b []byte) []write {
	var ws []write
	for len(b) > 0 {
		n := min(int64(len(b)), 4096-off%4096)
		ws = append(ws, write{off, b[:n]})
		off, b = off+n, b[n:]
	}
	return ws
}

// TestTrackerTraces replays SQLite's own write sequences (cache spills with
// in-place rewrites and the checksum pass, padding written across an fsync,
// rolled-back spills, restarts, journal_size_limit and TRUNCATE checkpoints,
// the unlink at close), split as FUSE would, checking after every write that
// the tracker emitted exactly what Scan finds in the file at that moment.
func TestTrackerTraces(t *testing.T) {
	for _, s := range traceScenarios {
		b, err := os.ReadFile(filepath.Join(corpusDir, s.name+".trace"))
		if err != nil {
			t.Fatal(err)
		}
		ops, err := decodeTrace(b)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		checkTraceShape(t, s.name, ops)
		for _, split := range []string{"whole", "pagecache", "random"} {
			t.Run(s.name+"/"+split, func(t *testing.T) {
				r := rand.New(rand.NewPCG(7, uint64(len(ops))))
				h := newHarness(t, true)
				for _, op := range ops {
					switch op.kind {
					case 'W':
						ws := []write{{op.off, op.data}}
						switch split {
						case "pagecache":
							ws = pageCacheSplit(op.off, op.data)
						case "random":
							ws = splitters[4].split(r, op.off, op.data, 0)
						}
						for _, w := range ws {
							mustWrite(t, h, w.off, w.data)
						}
					case 'T':
						h.truncate(op.off)
					case 'U':
						h.unlink()
					}
				}
				if len(h.emitted) != s.commits {
					t.Fatalf("%d transactions emitted, want %d", len(h.emitted), s.commits)
				}
			})
		}
	}
}

// checkTraceShape makes sure each trace still shows the trap it is kept for.
func checkTraceShape(t *testing.T, name string, ops []traceOp) {
	t.Helper()
	var inPlace, hdrRewrites, truncates, headers int
	var end int64
	for _, op := range ops {
		switch op.kind {
		case 'W':
			switch {
			case op.off == 0:
				headers++
			case op.off+int64(len(op.data)) <= end && len(op.data) == FrameHeaderSize:
				hdrRewrites++
			case op.off+int64(len(op.data)) <= end:
				inPlace++
			}
			end = max(end, op.off+int64(len(op.data)))
		case 'T':
			truncates++
			end = min(end, op.off)
		case 'U':
			end = 0
		}
	}
	if ops[len(ops)-1].kind != 'U' {
		t.Errorf("%s: trace does not end with the unlink at close", name)
	}
	ok := true
	switch name {
	case "spill":
		ok = inPlace > 0 && hdrRewrites > 0
	case "restart":
		ok = headers == 2
	case "limit":
		ok = truncates >= 2 && headers == 3
	}
	if !ok {
		t.Errorf("%s: trace lost its shape: %d in-place page writes, %d header rewrites, %d truncates, %d WAL headers",
			name, inPlace, hdrRewrites, truncates, headers)
	}
}
