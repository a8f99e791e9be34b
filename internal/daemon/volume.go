package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/litefs-dev/litefs/staging"
)

// lockFileName is the flock that makes a data dir one daemon's: two daemons
// staging into one volume would each think they own its history (seen: the
// replica held 2 rows while the volume had 21, and nothing was logged).
const lockFileName = "lock"

// dataDirLock is a held flock on <data.dir>/.litefs/lock. The kernel drops
// it when the process dies, so a kill -9 leaves no stale lock behind.
type dataDirLock struct{ f *os.File }

// lockDataDir takes the data dir's lock, or says who holds it. The holder's
// pid is written into the file for that message; it is advice, the flock is
// the lock.
func lockDataDir(dataDir string) (*dataDirLock, error) {
	dir := filepath.Join(dataDir, staging.DirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = fmt.Sprintf("pid %d", pid)
				}
			}
			return nil, fmt.Errorf("data.dir %s is in use by another litefs (%s holds %s): one daemon per volume; "+
				"stop that one, or give this one its own data.dir", dataDir, holder, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dataDirLock{f: f}, nil
}

// release drops the lock (closing the file does).
func (l *dataDirLock) release() {
	if l != nil && l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}
