// Package e2e holds the system tests: each builds the real binaries or
// runs the daemon in-process, mounts FUSE over a temporary data dir and
// replicates to a file replica or a real S3 server on loopback (versitygw,
// installed by `make deps`), sometimes through internal/s3test's fault
// proxy. They kill -9 daemons mid-commit, fill disks, cut S3 off, run two
// daemons on one replica path, walk through the Kubernetes guide with the
// shipped manifests and check every restore against the live database.
//
// Files by scenario: walkthrough (the guide end to end), crash (kill -9
// rounds, crash between WAL and staging), s3 (5000 transactions, an
// outage), s3lease (two daemons, a partitioned writer), faults (random S3
// faults and TCP cuts), corrupt (damaged replicas), diskfull, restart,
// badinput, writtenbehind, interop (Litestream reads what litefs writes),
// datapath, daemon, cmd, proxy, soak; and for what production throws at
// it: s3down (S3 refused or hanging at start-up), stagingcap (the staging
// cap during an outage), shutdown (uploads retried until the timeout),
// exec (-exec's process group), volume (one daemon per data dir, a fuse dir
// holding files), httpauth (the control endpoints' token), cli (-h, extra
// arguments, status, ltx -json), wait (/txid, /wait, litefs wait). The
// shared harness is
// internal/testenv; env (helpers_test.go) and s3env (s3env_test.go) set
// up one daemon.
//
// `make test` runs them; `make soak` runs the long variants.
package e2e
