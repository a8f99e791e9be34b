package staging

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func (l *Log) logPath() string { return filepath.Join(l.dir, "log") }

// recoverLog opens the log, keeps its valid records and cuts a torn tail
// (a crash mid-append: those commits are still in the WAL).
func (l *Log) recoverLog() (Pos, error) {
	f, err := l.fs.OpenFile(l.logPath(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return Pos{}, fmt.Errorf("open staging log: %w", err)
	}
	var pos Pos
	valid, n, err := scanRecords(f, func(r record, _ int64) {
		pos = PosOf(r.hdr, r.post)
	})
	if err != nil {
		f.Close()
		return Pos{}, err
	}
	if err := f.Truncate(valid); err != nil {
		f.Close()
		return Pos{}, fmt.Errorf("cut torn staging log: %w", err)
	}
	if _, err := f.Seek(valid, io.SeekStart); err != nil {
		f.Close()
		return Pos{}, fmt.Errorf("cut torn staging log: %w", err)
	}
	l.log, l.logSize, l.logRecords = f, valid, n
	return pos, nil
}

// file is what scanRecords reads: a staging file.
type file interface {
	io.ReaderAt
	Stat() (os.FileInfo, error)
}

// scanRecords verifies each record and returns the length of the valid
// prefix: it stops at the first length that overruns the file or record
// that does not decode. fn sees each record and its offset in the file.
func scanRecords(f file, fn func(r record, off int64)) (valid int64, n int, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	size := fi.Size()
	// One read per 256 KiB, not two per record: a freeze scans every record
	// of the batch on the uploader's core.
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 256<<10)
	var lenbuf [lenPrefixSize]byte
	var buf []byte
	for valid+lenPrefixSize <= size {
		if _, err := io.ReadFull(br, lenbuf[:]); err != nil {
			return 0, 0, fmt.Errorf("read staging log: %w", err)
		}
		l := int64(binary.BigEndian.Uint64(lenbuf[:]))
		if l <= 0 || l > size-valid-lenPrefixSize { // no overflow on a torn length
			break
		}
		if int64(cap(buf)) < l {
			buf = make([]byte, l)
		}
		buf = buf[:l]
		if _, err := io.ReadFull(br, buf); err != nil {
			return 0, 0, fmt.Errorf("read staging log: %w", err)
		}
		r, err := decodeRecord(buf)
		if err != nil {
			break
		}
		fn(r, valid+lenPrefixSize)
		valid += lenPrefixSize + l
		n++
	}
	return valid, n, nil
}
