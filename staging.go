package litefs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/internal/durable"
)

// staging holds what is committed but not yet confirmed by the replica, on
// the data volume, in <data dir>/.litefs/<db>/:
//
//	log                    segments appended as committed: [8-byte length][LTX file]...
//	sealed                 a log being frozen (at most one)
//	frozen/L<level>-<min>-<max>.ltx   objects with their final name and bytes
//	pos                    the last position (JSON), durable at WAL barriers
//
// Appending is on the commit path, so it never fsyncs and writes a batch of
// records at a time (see pendMax); sync makes the log durable before the
// WAL frames it copies can disappear. A frozen file is
// written (fsync, rename) before its first upload, so every retry, even
// after a restart, sends the same key and bytes.
type staging struct {
	dir string

	mu         sync.Mutex
	log        *os.File
	logSize    int64  // bytes in the log file
	pend       []byte // records appended after them, not yet written
	logRecords int    // in the file and in pend
	dirty      bool
	frozenSize int64

	// onFrozen is told the position of a frozen batch's last record (the
	// DB writes it to the position file). Set before use; nil at start-up.
	onFrozen func(Pos)
}

// pendMax bounds the records appended but not yet written to the log. They
// are written together, one syscall per pendMax instead of one per commit,
// at the latest before a freeze or a sync. Losing them to a crash loses no
// commit, exactly as losing the DB's queue does not: the WAL still holds
// them (only a barrier, which syncs, lets WAL frames go), and start-up
// stages the WAL's commits past the last record the log holds (the first
// one is always written at once, see append). They are also written when
// the applier goes idle, when the app syncs the WAL (before every
// checkpoint) and before a snapshot is staged.
const pendMax = 256 << 10

type frozenFile struct {
	Level    int
	Min, Max ltx.TXID
	Path     string
	Size     int64
}

const recordHeaderSize = 8

func openStaging(dir string) (*staging, Pos, error) {
	s := &staging{dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "frozen"), 0o700); err != nil {
		return nil, Pos{}, fmt.Errorf("create staging: %w", err)
	}
	// A sealed log means a freeze was interrupted: finish it first, it is older
	// than the log.
	var sealedPos Pos
	if _, err := os.Stat(s.sealedPath()); err == nil {
		if sealedPos, err = s.freezeSealed(); err != nil {
			return nil, Pos{}, err
		}
	}
	pos, err := s.recoverLog()
	if err != nil {
		return nil, Pos{}, err
	}
	pos = newer(sealedPos, pos)
	ff, err := s.frozen()
	if err != nil {
		return nil, Pos{}, err
	}
	for _, f := range ff {
		s.frozenSize += f.Size
		if f.Max > pos.TXID {
			post, err := readPostApply(f.Path)
			if err != nil {
				return nil, Pos{}, err
			}
			pos = newer(pos, Pos{TXID: f.Max, Checksum: post})
		}
	}
	return s, pos, nil
}

func (s *staging) logPath() string    { return filepath.Join(s.dir, "log") }
func (s *staging) sealedPath() string { return filepath.Join(s.dir, "sealed") }
func (s *staging) posPath() string    { return filepath.Join(s.dir, "pos") }

// recoverLog opens the log, keeps its valid records and cuts a torn tail
// (a crash mid-append: those commits are still in the WAL).
func (s *staging) recoverLog() (Pos, error) {
	f, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return Pos{}, fmt.Errorf("open staging log: %w", err)
	}
	var pos Pos
	valid, n, err := scanRecords(f, func(r record, _ int64) {
		pos = posFromHeader(r.hdr, r.post)
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
		return Pos{}, err
	}
	s.log, s.logSize, s.logRecords = f, valid, n
	return pos, nil
}

// scanRecords verifies each record and returns the length of the valid
// prefix; fn sees each record and its offset in the file.
func scanRecords(f *os.File, fn func(r record, off int64)) (valid int64, n int, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	size := fi.Size()
	// One read per 256 KiB, not two per record: a freeze scans every record
	// of the batch on the uploader's core.
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 256<<10)
	var lenbuf [recordHeaderSize]byte
	var buf []byte
	for valid+recordHeaderSize <= size {
		if _, err := io.ReadFull(br, lenbuf[:]); err != nil {
			return 0, 0, fmt.Errorf("read staging log: %w", err)
		}
		l := int64(binary.BigEndian.Uint64(lenbuf[:]))
		if l <= 0 || l > size-valid-recordHeaderSize { // no overflow on a torn length
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
		fn(r, valid+recordHeaderSize)
		valid += recordHeaderSize + l
		n++
	}
	return valid, n, nil
}

// append adds one framed record (see frame) to the log. No fsync: see sync;
// no write either until pendMax is reached: see pendMax.
func (s *staging) append(buf []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pend)+len(buf) > pendMax {
		if err := s.writePend(); err != nil {
			return err
		}
	}
	// The first record of a log goes to the file at once: start-up resumes
	// from the last record the log holds, and only a record (not a snapshot
	// nor a batch of several) says where in the WAL to resume.
	if len(buf) > pendMax || s.logSize == 0 {
		if err := s.writeLog(buf); err != nil {
			return err
		}
	} else {
		s.pend = append(s.pend, buf...)
	}
	s.logRecords++
	s.dirty = true
	return nil
}

// flush writes the pending records to the log file, without syncing it.
func (s *staging) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return nil
	}
	return s.writePend()
}

// writePend writes the pending records to the log. On failure they stay
// pending, for the next try. Called with mu held.
func (s *staging) writePend() error {
	if len(s.pend) == 0 {
		return nil
	}
	if err := s.writeLog(s.pend); err != nil {
		return err
	}
	s.pend = s.pend[:0]
	return nil
}

// writeLog appends whole records to the log file. Called with mu held.
func (s *staging) writeLog(b []byte) error {
	if _, err := s.log.Write(b); err != nil {
		// A partial record would poison the log: cut it off.
		_ = s.log.Truncate(s.logSize)
		_, _ = s.log.Seek(s.logSize, io.SeekStart)
		return fmt.Errorf("append to staging: %w", err)
	}
	s.logSize += int64(len(b))
	return nil
}

// frame fills in the length prefix of a record built after it in buf.
func frame(buf []byte) {
	binary.BigEndian.PutUint64(buf, uint64(len(buf)-recordHeaderSize))
}

// sync makes every appended segment durable.
func (s *staging) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty {
		return nil
	}
	if err := s.writePend(); err != nil {
		return err
	}
	if err := s.log.Sync(); err != nil {
		return fmt.Errorf("sync staging log: %w", err)
	}
	s.dirty = false
	return nil
}

// bytes is what staging holds on disk, for the metric and the bound.
func (s *staging) bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logSize + int64(len(s.pend)) + s.frozenSize
}

// freeze turns the log's segments into one frozen object. It is called by one
// goroutine at a time (the uploader, or shutdown after it stopped).
func (s *staging) freeze() error {
	// A sealed log left by a freeze that failed (a full disk) is older than
	// the log: finish it first, or sealing again would replace it.
	if _, err := os.Stat(s.sealedPath()); err == nil {
		if _, err := s.freezeSealed(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if s.logRecords == 0 {
		s.mu.Unlock()
		return nil
	}
	if err := s.writePend(); err != nil {
		s.mu.Unlock()
		return err
	}
	if err := s.log.Sync(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("sync staging log: %w", err)
	}
	if err := os.Rename(s.logPath(), s.sealedPath()); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("seal staging log: %w", err)
	}
	old := s.log
	f, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		// Keep appending to the sealed file: nothing is lost, the next freeze
		// retries.
		_ = os.Rename(s.sealedPath(), s.logPath())
		s.mu.Unlock()
		return fmt.Errorf("open staging log: %w", err)
	}
	s.log, s.logSize, s.logRecords, s.dirty = f, 0, 0, false
	s.mu.Unlock()
	old.Close()
	_, err = s.freezeSealed()
	return err
}

// freezeSealed turns the sealed log into one frozen LTX object and removes
// it.
func (s *staging) freezeSealed() (Pos, error) {
	f, err := os.Open(s.sealedPath())
	if err != nil {
		return Pos{}, fmt.Errorf("open sealed staging log: %w", err)
	}
	defer f.Close()
	var recs []record
	var offs []int64
	if _, _, err := scanRecords(f, func(r record, off int64) {
		recs, offs = append(recs, r), append(offs, off)
	}); err != nil {
		return Pos{}, err
	}
	var last Pos
	if len(recs) > 0 {
		min, max := recs[0].hdr.MinTXID, recs[len(recs)-1].hdr.MaxTXID
		if err := s.writeFrozen(0, min, max, func(w io.Writer) error {
			return encodeBatch(w, f, recs, offs)
		}); err != nil {
			return Pos{}, err
		}
		// A frozen batch of several records says nothing of the WAL, and
		// start-up resumes in the WAL from a record's offset: keep the last
		// one's before the sealed log goes.
		last = posFromHeader(recs[len(recs)-1].hdr, recs[len(recs)-1].post)
		if s.onFrozen != nil {
			s.onFrozen(last)
		}
	}
	if err := os.Remove(s.sealedPath()); err != nil {
		return Pos{}, fmt.Errorf("remove sealed staging log: %w", err)
	}
	return last, nil
}

func frozenName(level int, min, max ltx.TXID) string {
	return fmt.Sprintf("L%d-%s", level, ltx.FormatFilename(min, max))
}

// writeFrozen writes an object durably under its final name.
func (s *staging) writeFrozen(level int, min, max ltx.TXID, write func(io.Writer) error) error {
	path := filepath.Join(s.dir, "frozen", frozenName(level, min, max))
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("freeze %s: %w", filepath.Base(path), err)
	}
	w := durable.NewPacedWriter(f)
	err = write(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	var size int64
	if err == nil {
		size, err = f.Seek(0, io.SeekCurrent)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = durable.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("freeze %s: %w", filepath.Base(path), err)
	}
	s.mu.Lock()
	s.frozenSize += size
	s.mu.Unlock()
	return nil
}

// frozen lists frozen objects in upload order: by MaxTXID, snapshots first.
func (s *staging) frozen() ([]frozenFile, error) {
	dir := filepath.Join(s.dir, "frozen")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list staging: %w", err)
	}
	var out []frozenFile
	for _, e := range ents {
		var level int
		var name string
		if _, err := fmt.Sscanf(e.Name(), "L%d-%s", &level, &name); err != nil {
			continue
		}
		min, max, err := ltx.ParseFilename(name)
		if err != nil {
			continue // a .tmp left by a crash
		}
		fi, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("list staging: %w", err)
		}
		out = append(out, frozenFile{Level: level, Min: min, Max: max, Path: filepath.Join(dir, e.Name()), Size: fi.Size()})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Max != out[j].Max {
			return out[i].Max < out[j].Max
		}
		return out[i].Level > out[j].Level
	})
	return out, nil
}

// remove deletes a frozen object the replica confirmed.
func (s *staging) remove(f frozenFile) error {
	if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove staged %s: %w", filepath.Base(f.Path), err)
	}
	s.mu.Lock()
	s.frozenSize -= f.Size
	s.mu.Unlock()
	return nil
}

func (s *staging) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return nil
	}
	err := s.writePend()
	if cerr := s.log.Close(); err == nil {
		err = cerr
	}
	s.log = nil
	return err
}

// readPostApply reads an LTX file's post-apply checksum from its trailer.
func readPostApply(path string) (ltx.Checksum, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var t [ltx.TrailerSize]byte
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if _, err := f.ReadAt(t[:], fi.Size()-ltx.TrailerSize); err != nil {
		return 0, fmt.Errorf("read trailer of %s: %w", path, err)
	}
	var tr ltx.Trailer
	if err := tr.UnmarshalBinary(t[:]); err != nil {
		return 0, fmt.Errorf("read trailer of %s: %w", path, err)
	}
	return tr.PostApplyChecksum, nil
}

// discard drops everything staged: a new snapshot replaces it. Called with
// the DB's lock held, so no segment is appended meanwhile.
func (s *staging) discard() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.log.Truncate(0); err != nil {
		return fmt.Errorf("discard staging: %w", err)
	}
	if _, err := s.log.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("discard staging: %w", err)
	}
	s.logSize, s.pend, s.logRecords, s.dirty = 0, s.pend[:0], 0, false
	if err := os.Remove(s.sealedPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("discard staging: %w", err)
	}
	ents, err := os.ReadDir(filepath.Join(s.dir, "frozen"))
	if err != nil {
		return fmt.Errorf("discard staging: %w", err)
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(s.dir, "frozen", e.Name())); err != nil {
			return fmt.Errorf("discard staging: %w", err)
		}
	}
	s.frozenSize = 0
	return nil
}

func (s *staging) removeFrozen(level int, min, max ltx.TXID) error {
	path := filepath.Join(s.dir, "frozen", frozenName(level, min, max))
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return s.remove(frozenFile{Level: level, Min: min, Max: max, Path: path, Size: fi.Size()})
}
