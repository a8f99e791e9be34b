package replica

// SetChunkSize lets tests force ranged reads inside small files; it returns
// a func restoring the default.
func SetChunkSize(n int64) func() {
	old := chunkSize
	chunkSize = n
	return func() { chunkSize = old }
}
