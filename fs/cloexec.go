package fs

import (
	"os"
	"strconv"
	"syscall"
)

// closeFUSEOnExec marks every descriptor of this process open on /dev/fuse
// close-on-exec. go-fuse's direct mount opens /dev/fuse with a bare
// syscall.Open and sets FD_CLOEXEC only on its fusermount path, so without
// this a child (`litefs mount -exec`) inherits the FUSE connection: it could
// read the kernel's requests, and it keeps the connection alive after the
// daemon dies, so the mount hangs instead of failing with ENOTCONN.
func closeFUSEOnExec() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}
