// Package daemon is `litefs mount`: it opens every configured database in
// config order (each with its replica client and lease), mounts the FUSE
// loopback over them, runs one uploader per database and serves HTTP
// (/healthz, /readyz and /metrics open; POST /debug/snapshot and pprof only
// for a bearer of [http] token, or for loopback clients when none is set).
//
// Invariants: one daemon per data dir (a flock on <data dir>/.litefs/lock,
// taken before staging is read, held until exit). Start leaves nothing
// mounted or running when it fails. Shutdown first refuses new WAL writes (a
// commit acknowledged after that could not be uploaded before exit), then
// stops the uploaders, unmounts, uploads what staging still holds within its
// deadline (retrying with backoff, unless another writer holds the lease) and
// makes staging durable; whatever is left stays staged for the next start. An
// S3 outage alone never makes the daemon unready; a fenced database or one
// out of WAL mode does.
//
// Callers: cmd/litefs (mount), the system tests in e2e/ and bench/.
package daemon
