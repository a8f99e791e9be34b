package main

import (
	"bytes"
	"strings"
	"testing"
)

// runCLI runs litefs with args and returns the exit status and outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// Every command answers -h and -help with its usage and exit status 0.
func TestHelp(t *testing.T) {
	if code, _, stderr := runCLI(t, "restore", "-h"); code != 0 || !strings.HasPrefix(stderr, "usage: litefs restore [flags] DB\n") {
		t.Errorf("litefs restore -h: exit %d, %q", code, stderr)
	}
	for _, cmd := range []string{"mount", "restore", "ltx", "status", "wait", "version"} {
		for _, h := range []string{"-h", "-help", "--help"} {
			code, stdout, stderr := runCLI(t, cmd, h)
			want := "-config" // every command's flags but version's
			if cmd == "version" {
				want = "usage: litefs version"
			}
			if code != 0 || !strings.Contains(stdout+stderr, want) || strings.Contains(stderr, "flag provided but not defined") {
				t.Errorf("litefs %s %s: exit %d\nstdout: %s\nstderr: %s", cmd, h, code, stdout, stderr)
			}
		}
	}
	for _, h := range []string{"-h", "help"} {
		if code, stdout, _ := runCLI(t, h); code != 0 || !strings.Contains(stdout, "status   ask the running daemon") {
			t.Errorf("litefs %s: exit %d, %q", h, code, stdout)
		}
	}
}

// Mistakes in the command line exit 2 with one line that names them.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"version", "x"}, "litefs version: unexpected argument \"x\": version takes none (run 'litefs version -h' for the usage)\n"},
		{[]string{"ltx", "-config", "/nonexistent.toml", "/mnt/db", "extra"}, "litefs ltx: unexpected argument \"extra\": give one database path (run 'litefs ltx -h' for the usage)\n"},
		{[]string{"ltx", "-replica", "file:///tmp/r", "/mnt/db"}, "litefs ltx: unexpected argument \"/mnt/db\": give -replica URL or a database path, not both (run 'litefs ltx -h' for the usage)\n"},
		{[]string{"ltx"}, "litefs ltx: give the database path (DB), or -replica URL (run 'litefs ltx -h' for the usage)\n"},
		{[]string{"status", "db"}, "litefs status: unexpected argument \"db\": status reports every database (run 'litefs status -h' for the usage)\n"},
		{[]string{"status", "-addr", "9090"}, "litefs status: -addr: address \"9090\": want HOST:PORT, like 127.0.0.1:9090 or :9090 (run 'litefs status -h' for the usage)\n"},
		{[]string{"restore", "/mnt/a", "/mnt/b"}, "litefs restore: expected one argument (the database path, or a replica URL), got 2: /mnt/a /mnt/b (run 'litefs restore -h' for the usage)\n"},
	} {
		code, stdout, stderr := runCLI(t, tc.args...)
		if code != 2 || stdout != "" || stderr != tc.want {
			t.Errorf("litefs %q: exit %d, stdout %q, stderr %q; want 2, %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
	for _, cmd := range []string{"ltx", "status", "version", "restore"} {
		if code, _, stderr := runCLI(t, cmd, "-nope"); code != 2 || !strings.Contains(stderr, "flag provided but not defined: -nope") {
			t.Errorf("litefs %s -nope: exit %d, %q", cmd, code, stderr)
		}
	}
	if code, _, stderr := runCLI(t, "nope"); code != 2 || !strings.HasPrefix(stderr, `litefs: unknown command "nope"`) {
		t.Errorf("litefs nope: exit %d, %q", code, stderr)
	}
	if code, stdout, _ := runCLI(t, "version"); code != 0 || stdout != "litefs dev\n" {
		t.Errorf("litefs version: exit %d, %q", code, stdout)
	}
}
