// Package fs is litefs's FUSE layer: a loopback of the data dir (the real
// volume) mounted where the application expects its SQLite files, so every
// write to a configured database's -wal file passes through the daemon before
// the application's pwrite returns.
//
// Files are classified by their path relative to the data dir: a configured
// database "<db>", its "<db>-wal", "<db>-shm" and "<db>-journal", and
// everything else. Only the WAL and the journal are special:
//
//   - WAL handles are never FUSE passthrough and are opened with direct_io, so
//     the daemon sees exactly one WRITE per SQLite pwrite. Each write,
//     truncate, fsync and unlink is handed to that database's DB as a func
//     the DB must call; the DB orders its barriers before the call and its
//     bookkeeping after it.
//   - Creating a "<db>-journal" calls DB.JournalCreated: the database may be
//     leaving WAL mode.
//
// Everything else is a plain loopback; with Options.Passthrough the kernel
// may serve database and shm I/O without the daemon (kernel 6.9+; older
// kernels refuse and go-fuse falls back by itself).
//
// Invariants:
//   - A WAL write reaches the real file (the write func) before the DB does any
//     bookkeeping that depends on it; the FUSE reply waits for the DB's return,
//     so the application never sees a write the DB has not been shown.
//   - Barrier ordering (staging made durable before a WAL restart, truncate or
//     unlink) is the DB's job, not this package's: it only guarantees the
//     operation happens inside the DB method.
//   - The staging directory ".litefs" at the data dir's root is invisible
//     through the mount: lookups fail, listings omit it, and nothing can be
//     created, renamed or removed under that name.
//   - Entry and attribute timeouts are 0 and there is no writeback cache, so
//     the kernel never answers with stale sizes of files the daemon writes.
//   - go-fuse's EnableLocks stays off: the kernel then keeps POSIX locks per
//     FUSE inode across processes, which is what SQLite needs.
//
// The process serving a mount must never open a SQLite database through it
// (tests run SQLite in child processes): WAL mode mmaps the -shm file, and a
// page fault on a FUSE mapping waits for the daemon while holding the
// process's mm lock, which the daemon's own threads (the Go runtime mapping
// memory, a fault of their own) may need: the process deadlocks, at random.
// Passthrough for the shm hides it on 6.9+ kernels; older kernels do not.
// Likewise a process must not exit with files open on its own lazily detached
// mount: closing them at exit sends FLUSH to a daemon that no longer serves.
//
// Callers: cmd/litefs mounts it through the root package, which implements DB
// for each configured database on top of wal.Tracker.
package fs
