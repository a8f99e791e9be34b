// Package restorecmd is the restore command shared by `litefs restore` and
// the standalone `restore` binary that init containers run. It maps a
// database path the app sees to the data dir through the config (or takes a
// replica URL and -o), and exits 0 only when a verified database is in
// place, or when an -if-* flag made nothing to do.
//
// Invariants: it never replaces or modifies an existing database (the
// output checks are replica.Restore's; the command only decides whether an
// existing database makes -if-db-not-exists a success, and words the
// failures for whoever sets up the init container); every failure is one
// line on stderr, with exit status 2 for a mistake in the command line (a
// bad flag, a missing or extra argument) and 1 for anything else; -h prints
// the usage and exits 0. Relative paths (DB, -o) are taken from the working
// directory before DB is matched against the config. A file:// replica
// whose directory does not exist is an error naming it, not an empty
// replica; with -if-replica-exists both are a success with nothing done.
//
// Callers: cmd/litefs (the restore subcommand) and cmd/restore.
package restorecmd
