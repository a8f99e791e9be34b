package fs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckMountDirEmpty(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := checkMountDirEmpty(dir, "/data"); err != nil {
		t.Fatalf("empty dir (but lost+found) refused: %v", err)
	}
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err := checkMountDirEmpty(dir, "/data")
	if err == nil {
		t.Fatal("dir with files accepted")
	}
	for _, want := range []string{"holds files (a, b, c, d, e and 2 more)", "mv " + dir + "/* /data/"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
}
