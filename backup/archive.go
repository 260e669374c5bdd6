package backup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
)

// ErrCorrupt marks an archive that is truncated, altered or not an HXP backup.
var ErrCorrupt = errors.New("backup archive is damaged")

// summer counts what is written through it: bytes, rows (newlines) and the sha256.
type summer struct {
	h     hash.Hash
	bytes int64
	rows  int64
	// onRows, when set, is told the row count after each write.
	onRows func(rows int64)
}

func newSummer() *summer { return &summer{h: sha256.New()} }

func (s *summer) Write(p []byte) (int, error) {
	s.h.Write(p)
	s.bytes += int64(len(p))
	s.rows += int64(bytes.Count(p, []byte{'\n'}))
	if s.onRows != nil {
		s.onRows(s.rows)
	}
	return len(p), nil
}

func (s *summer) sum() string { return hex.EncodeToString(s.h.Sum(nil)) }

// spooled is a part whose content waits in a file until the archive is written.
type spooled struct {
	part Part
	path string
}

// writeArchive writes the manifest and the spooled parts to out, through a temporary
// file that replaces out only once it is complete and synced.
func writeArchive(out string, m *Manifest, parts []spooled) (err error) {
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("backup: encode manifest: %w", err)
	}
	sum := sha256.Sum256(mb)
	tmp := out + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("backup: create archive: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	zw, err := zstd.NewWriter(f, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("backup: zstd: %w", err)
	}
	tw := tar.NewWriter(zw)
	now := m.CreatedAt
	if err := addEntry(tw, manifestName, int64(len(mb)), now, bytes.NewReader(mb)); err != nil {
		return err
	}
	sumLine := []byte(hex.EncodeToString(sum[:]) + "  " + manifestName + "\n")
	if err := addEntry(tw, manifestSumName, int64(len(sumLine)), now, bytes.NewReader(sumLine)); err != nil {
		return err
	}
	for _, s := range parts {
		if err := addFile(tw, s, now); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("backup: write archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("backup: write archive: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("backup: sync archive: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("backup: close archive: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

func addFile(tw *tar.Writer, s spooled, now time.Time) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("backup: %s: %w", s.part.Name, err)
	}
	defer f.Close()
	return addEntry(tw, s.part.Name, s.part.Bytes, now, f)
}

func addEntry(tw *tar.Writer, name string, size int64, mod time.Time, r io.Reader) error {
	hdr := &tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: mod, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	if n, err := io.Copy(tw, r); err != nil || n != size {
		return fmt.Errorf("backup: write %s: %d of %d bytes: %v", name, n, size, err)
	}
	return nil
}

// spoolDir makes a private directory beside out for the parts' spool files.
func spoolDir(out string) (string, error) {
	dir, err := os.MkdirTemp(filepath.Dir(out), ".hxp-backup-*")
	if err != nil {
		return "", fmt.Errorf("backup: spool directory: %w", err)
	}
	return dir, nil
}

// damaged wraps a read error of the archive.
func damaged(what string, err error) error {
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s: archive is truncated", ErrCorrupt, what)
	}
	return fmt.Errorf("%w: %s: %v", ErrCorrupt, what, err)
}

// walk reads the archive at path: it checks the manifest against its checksum, then
// calls fn for each part in manifest order with a reader of the part's content. After
// fn returns, the rest of the part is read and its size, sha256 and row count are
// checked; any mismatch, missing, extra or reordered entry is ErrCorrupt. fn may be nil
// to check only.
func walk(path string, fn func(p Part, r io.Reader) error) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, damaged("zstd", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)

	mb, err := readSmallEntry(tr, manifestName)
	if err != nil {
		return nil, err
	}
	sumLine, err := readSmallEntry(tr, manifestSumName)
	if err != nil {
		return nil, err
	}
	got := sha256.Sum256(mb)
	want, _, _ := bytes.Cut(sumLine, []byte(" "))
	if string(want) != hex.EncodeToString(got[:]) {
		return nil, fmt.Errorf("%w: manifest.json does not match manifest.sha256 (altered manifest)", ErrCorrupt)
	}
	m, err := parseManifest(mb)
	if err != nil {
		return nil, err
	}
	for _, p := range m.Parts {
		hdr, err := tr.Next()
		if err != nil {
			return nil, damaged(p.Name, err)
		}
		if hdr.Name != p.Name {
			return nil, fmt.Errorf("%w: found entry %q where the manifest lists %q", ErrCorrupt, hdr.Name, p.Name)
		}
		s := newSummer()
		r := io.TeeReader(tr, s)
		if fn != nil {
			if err := fn(p, r); err != nil {
				return nil, err
			}
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			return nil, damaged(p.Name, err)
		}
		if err := checkPart(p, s); err != nil {
			return nil, err
		}
	}
	if hdr, err := tr.Next(); err == nil {
		return nil, fmt.Errorf("%w: entry %q is not in the manifest", ErrCorrupt, hdr.Name)
	} else if !errors.Is(err, io.EOF) {
		return nil, damaged("end of archive", err)
	}
	// Read to the end of the zstd stream, so that its frame checksum is checked too.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, damaged("end of archive", err)
	}
	return m, nil
}

// checkPart compares what was read of a part with its manifest entry.
func checkPart(p Part, s *summer) error {
	switch {
	case s.bytes != p.Bytes:
		return fmt.Errorf("%w: %s: %d bytes, the manifest says %d", ErrCorrupt, p.Name, s.bytes, p.Bytes)
	case s.sum() != p.SHA256:
		return fmt.Errorf("%w: %s: sha256 %s, the manifest says %s", ErrCorrupt, p.Name, s.sum(), p.SHA256)
	case (p.Kind == KindTable || p.Kind == KindPoints) && s.rows != p.Rows:
		return fmt.Errorf("%w: %s: %d rows, the manifest says %d", ErrCorrupt, p.Name, s.rows, p.Rows)
	}
	return nil
}

// readSmallEntry reads the next entry, which must be name and small.
func readSmallEntry(tr *tar.Reader, name string) ([]byte, error) {
	hdr, err := tr.Next()
	if err != nil {
		return nil, damaged(name, err)
	}
	if hdr.Name != name {
		return nil, fmt.Errorf("%w: first entries must be %s and %s, found %q", ErrCorrupt, manifestName, manifestSumName, hdr.Name)
	}
	if hdr.Size > maxManifestBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes (at most %d)", ErrCorrupt, name, hdr.Size, maxManifestBytes)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, damaged(name, err)
	}
	return b, nil
}

// Verify reads the whole archive at path and checks the manifest and every part's
// size, sha256 and row count, writing nothing. It returns the manifest of a sound
// archive; a damaged one is ErrCorrupt with what is wrong.
func Verify(path string) (*Manifest, error) {
	return walk(path, nil)
}
