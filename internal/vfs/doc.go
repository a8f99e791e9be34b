// Package vfs is the small filesystem interface staging writes through, so
// that tests can put a fault injector (package errorfs) between staging and
// the disk, the way Pebble's vfs and errorfs do.
//
// It holds exactly the operations staging uses; Default is the operating
// system's. A File is what os.File offers for them. SyncDir makes the
// entries of a directory (a create, a rename, a remove) durable.
//
// Callers: staging (every file it touches), its tests through errorfs.
package vfs
