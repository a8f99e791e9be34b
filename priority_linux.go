package litefs

import "golang.org/x/sys/unix"

// uploaderNice is the nice value of the uploader's thread: under contention
// it gets about a third of the CPU time an app thread gets (CFS weights 335
// against 1024), and all of it when the app leaves a core idle.
const uploaderNice = 5

// lowerThreadPriority lowers the calling thread's CPU priority (Linux nice
// values are per thread). Best effort: an error leaves it as it was.
func lowerThreadPriority() {
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), uploaderNice)
}
