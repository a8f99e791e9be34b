// Package s3 is the replica.ReplicaClient for S3 and S3-compatible stores
// (AWS, MinIO, R2, Tigris, versitygw), plus the lease that fences a replica
// path to one writer (docs/design.md, "Fencing with the lease").
//
// # Layout
//
// Objects live under the path of s3://bucket/path, in Litestream 0.5's
// layout so either tool can restore the other's replica:
//
//	<path>/<level %04x>/<min %016x>-<max %016x>.ltx   e.g. db/0000/…, db/0009/… (snapshots)
//	<path>/lock.json                                  the lease
//
// There is no ltx/ segment on S3. Each LTX object carries the header's
// timestamp as user metadata litestream-timestamp (RFC3339Nano, UTC), which
// Litestream selects by for restore -timestamp.
//
// # Writes
//
// WriteLTXFile checks that the body is an LTX file with the named TXIDs,
// then creates the object: in one PUT from memory up to 16 MiB (seekable, so
// the payload is signed and the SDK can resend it, over http too), else as a
// multipart upload holding one part in memory (snapshots of any size).
//
// With ConditionalWrites (the default in the config layer) every create
// carries If-None-Match: * (on CompleteMultipartUpload for multipart; a HEAD
// first avoids uploading GiBs that cannot land). A 412 is not yet a
// conflict: the reply to our own request may have been lost and the SDK
// resent it. The existing object is compared with what we sent (size, then
// its ETag against our MD5 or multipart MD5, else its bytes, for ETags that
// are not MD5s such as SSE-KMS): the same bytes are a success, different
// ones wrap replica.ErrConflict (another writer: stop, alert, never
// overwrite). A 409 ConditionalRequestConflict (a concurrent conditional
// write) is retried with backoff. With ConditionalWrites off, a write is a
// plain PUT that overwrites, and leases are refused: nothing fences then.
//
// # Reads and listings
//
// LTXFiles returns what the ReplicaClient contract asks: the header
// timestamp as CreatedAt and the pre/post-apply checksums. A listing holds
// none of those, so each object the client has not seen costs one GET (whole
// up to 256 KiB) or two ranged GETs (header, trailer), 16 at a time, cached
// for the client's life (objects are immutable; the cache key includes the
// ETag). LTXFileNames is the cheap listing (LastModified, no checksums) for
// callers that need only names; FileTimestamp reads one object's metadata
// with a HEAD. OpenLTXFile sends a Range header for partial reads; a
// missing object wraps replica.ErrNotFound, a missing bucket ErrNoSuchBucket,
// 401/403 ErrAccessDenied. DeleteLTXFiles sends DeleteObjects in batches of
// 1000.
//
// # Lease
//
// AcquireLease creates lock.json ({"owner", "expires"}) with If-None-Match,
// or replaces a released, expired or own lease with If-Match on its ETag;
// otherwise it returns a *LeaseHeldError (ErrLeaseHeld) naming the holder
// and expiry. RenewLease and ReleaseLease write with If-Match; a changed
// lock is ErrLeaseLost. Release writes a released lease rather than
// deleting: conditional PUTs are honoured wherever conditional writes
// exist, If-Match on DELETE is not (gofakes3 ignores it and deletes).
//
// # Configuration
//
// Credentials: Config, else LITEFS_ACCESS_KEY_ID/LITEFS_SECRET_ACCESS_KEY,
// else LITESTREAM_*, else the SDK chain (AWS_*, shared config, IRSA,
// instance roles); when the chain finds none, the first request's error
// lists every one of those places. Custom endpoints get region us-east-1 by default,
// checksums "when required" (R2 and older MinIO reject the SDK's default
// CRC headers) and path-style addressing when the host is an IP or
// localhost. The HTTP client is the SDK's buildable client, so
// AWS_CA_BUNDLE keeps working, with a response-header timeout (Config's; replica/backends sets 10 s) so a
// hung server cannot hang a request forever; overall deadlines come from
// the caller's context. Secrets never appear in errors or in Config's
// String/LogValue.
//
// Callers: the uploader (writes, lease) and retention (deletes) in the root
// package, restore and `litefs ltx` (reads); internal/s3test starts
// versitygw and gofakes3 servers for tests.
package s3
