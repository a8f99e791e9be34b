package daemon

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestLockDataDir(t *testing.T) {
	dir := t.TempDir()
	l1, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// flock is per open file: a second open in this process conflicts as a
	// second daemon would.
	_, err = lockDataDir(dir)
	if err == nil {
		t.Fatal("second lock on one data dir succeeded")
	}
	for _, want := range []string{"data.dir " + dir + " is in use by another litefs", fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	l1.release()
	l2, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.release()
	l2.release() // idempotent
}
