package s3

// SetPartSize sets the multipart part size (and single-PUT threshold); for
// tests that need a multipart upload without GiBs of data.
func SetPartSize(c *Client, n int64) { c.partSize = n }

// SetPartCRC turns the AWS-default CRC32 part checksums on or off.
func SetPartCRC(c *Client, on bool) { c.partCRC = on }
