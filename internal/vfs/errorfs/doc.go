// Package errorfs wraps a vfs.FS and injects errors below the code under
// test, in the shape of Pebble's errorfs: every operation is an Op (a kind
// and a path) and an Injector decides whether it fails.
//
// An injected write error is a short write: half of the buffer reaches the
// file before the error returns, as a disk that fills up mid-write leaves
// it, so the code under test must cope with a torn record, not only with a
// clean refusal. Other injected errors leave the file untouched.
//
// Callers: the staging tests.
package errorfs
