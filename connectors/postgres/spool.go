package postgres

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// spool is the ledger's local, append-only fallback: usage records that could not be written
// to PostgreSQL, one JSON object per line, fsynced per append. Replay moves the file aside
// (path + ".replay") so that appends can go on while the old records are written to the
// database; the moved file is deleted only after every record in it has been committed.
type spool struct {
	path string
	lock *os.File // holds an exclusive flock for the spool's lifetime

	mu   sync.Mutex
	f    *os.File
	size int64 // bytes in the current file
}

// openSpool opens (or creates) the spool at path and takes an exclusive lock on it, so that
// two ledgers never share one spool.
func openSpool(path string) (*spool, error) {
	if path == "" {
		return nil, errors.New("spool path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create spool directory: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open spool lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool %s is in use by another ledger: %w", path, err)
	}
	s := &spool{path: path, lock: lock}
	if err := s.openCurrent(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// openCurrent opens the current spool file for appending. A last line left incomplete by a
// crash is terminated, so that the next record does not merge with it.
func (s *spool) openCurrent() error {
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open spool: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat spool: %w", err)
	}
	size := fi.Size()
	if size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err != nil {
			f.Close()
			return fmt.Errorf("read spool: %w", err)
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte("\n")); err != nil {
				f.Close()
				return fmt.Errorf("repair spool: %w", err)
			}
			size++
		}
	}
	s.f, s.size = f, size
	return nil
}

// append writes records as JSON lines in one write and fsyncs the file.
func (s *spool) append(recs []UsageRecord) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return fmt.Errorf("encode usage record: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("spool is closed")
	}
	n, err := s.f.Write(buf.Bytes())
	s.size += int64(n)
	if err != nil {
		return fmt.Errorf("write spool: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync spool: %w", err)
	}
	return nil
}

// replayPath is where the file being replayed lives.
func (s *spool) replayPath() string { return s.path + ".replay" }

// pending reports whether records wait in the spool (current or being replayed).
func (s *spool) pending() bool {
	s.mu.Lock()
	size := s.size
	s.mu.Unlock()
	if size > 0 {
		return true
	}
	_, err := os.Stat(s.replayPath())
	return err == nil
}

// takeForReplay returns the path of a file to replay: the leftover replay file if there is
// one, otherwise the current file, moved aside and replaced by an empty one. It returns ""
// when there is nothing to replay.
func (s *spool) takeForReplay() (string, error) {
	if _, err := os.Stat(s.replayPath()); err == nil {
		return s.replayPath(), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil || s.size == 0 {
		return "", nil
	}
	if err := os.Rename(s.path, s.replayPath()); err != nil {
		return "", fmt.Errorf("move spool aside: %w", err)
	}
	old := s.f
	if err := s.openCurrent(); err != nil {
		// Put the file back and keep appending to it: nothing is replayed this time.
		if rerr := os.Rename(s.replayPath(), s.path); rerr != nil {
			return "", fmt.Errorf("%w; and moving the spool back failed: %v", err, rerr)
		}
		s.f = old
		return "", err
	}
	old.Close()
	syncDir(filepath.Dir(s.path))
	return s.replayPath(), nil
}

// doneReplay removes a fully replayed file.
func (s *spool) doneReplay(path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove replayed spool: %w", err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

// readSpoolFile decodes a spool file. Lines that do not decode (a write cut short by a crash)
// are counted and skipped.
func readSpoolFile(path string) (recs []UsageRecord, bad int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open spool: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var rec UsageRecord
			if jerr := json.Unmarshal(line, &rec); jerr != nil || rec.RequestID == "" {
				bad++
			} else {
				recs = append(recs, rec)
			}
		}
		if errors.Is(err, io.EOF) {
			return recs, bad, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read spool: %w", err)
		}
	}
}

// close closes the file and releases the lock.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.f != nil {
		err = s.f.Close()
		s.f = nil
	}
	if s.lock != nil {
		s.lock.Close() // closing the descriptor releases the flock
		s.lock = nil
	}
	return err
}

// syncDir fsyncs a directory so that a rename or removal in it is durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
