package backup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/retrieval"
	"github.com/hxp-ai/hxp/vector"
	"github.com/hxp-ai/hxp/vector/embedded"
	"github.com/hxp-ai/hxp/vector/qdrant"
)

// Retrieval is the storage of the files and vector stores API as Create reads it and
// Restore writes it: the vector index, and the embedded catalog when the catalog is not
// in PostgreSQL.
type Retrieval struct {
	// Index is the vector index (embedded or Qdrant).
	Index vector.Index
	// CatalogPath is the embedded catalog file (catalog.db under retrieval.data_dir);
	// "" when the catalog is in PostgreSQL (its tables are then parts like any other).
	CatalogPath string
}

// OpenRetrieval opens the storage that cfg configures, as the server does: the index
// embedded under data_dir or on Qdrant, and the catalog file under data_dir unless
// catalogInPostgres. It returns nil when retrieval is off. The embedded files are
// locked by a running server: back them up and restore them with the server stopped.
func OpenRetrieval(cfg config.Retrieval, catalogInPostgres bool) (*Retrieval, error) {
	if !cfg.On() {
		return nil, nil
	}
	r := &Retrieval{}
	var err error
	switch cfg.Backend {
	case "qdrant":
		r.Index, err = qdrant.Open(qdrant.Options{URL: cfg.Qdrant.URL, APIKeyFile: cfg.Qdrant.APIKeyFile, TLS: cfg.Qdrant.TLS})
		if err != nil {
			return nil, fmt.Errorf("backup: retrieval.qdrant: %w", err)
		}
	default:
		r.Index, err = embedded.Open(cfg.DataDir, embedded.Options{MaxPoints: cfg.MaxPoints})
		if err != nil {
			return nil, fmt.Errorf("backup: retrieval.data_dir: %w (stop the server that uses it first, or back up without the vector stores: --no-vectors)", err)
		}
	}
	if !catalogInPostgres {
		r.CatalogPath = filepath.Join(cfg.DataDir, retrieval.BoltFile)
	}
	return r, nil
}

// Close releases the index.
func (r *Retrieval) Close() error {
	if r == nil || r.Index == nil {
		return nil
	}
	return r.Index.Close()
}

// pointLine is one line of vectors/points.jsonl. Go writes a float32 with the fewest
// digits that read back to the same float32, so vectors survive the text exactly.
type pointLine struct {
	ID         string         `json:"id"`
	StoreID    string         `json:"store_id"`
	FileID     string         `json:"file_id"`
	Chunk      int            `json:"chunk"`
	Text       string         `json:"text"`
	Attributes map[string]any `json:"attributes,omitempty"`
	Vector     []float32      `json:"vector"`
}

// fileKey names one file of one vector store.
type fileKey struct{ store, file string }

// completedFiles is the set of vector-store files that were completed in the catalog
// snapshot: only their points go into the archive.
type completedFiles map[fileKey]bool

func (c completedFiles) add(f *retrieval.VectorStoreFile) {
	if f.Status == retrieval.StatusCompleted {
		c[fileKey{f.VectorStoreID, f.ID}] = true
	}
}

// completedInPostgres reads the completed vector-store files from the snapshot's
// transaction (none when the database predates the catalog).
func completedInPostgres(ctx context.Context, tx pgx.Tx, done completedFiles) error {
	var present bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass('vector_store_files') IS NOT NULL").Scan(&present); err != nil || !present {
		return err
	}
	rows, err := tx.Query(ctx, "SELECT store_id, file_id FROM vector_store_files WHERE status = $1", retrieval.StatusCompleted)
	if err != nil {
		return fmt.Errorf("backup: read vector_store_files: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k fileKey
		if err := rows.Scan(&k.store, &k.file); err != nil {
			return fmt.Errorf("backup: read vector_store_files: %w", err)
		}
		done[k] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("backup: read vector_store_files: %w", err)
	}
	return nil
}

// spoolCatalog copies the embedded catalog (one consistent read transaction) into a
// spool file and notes its completed files. A missing catalog file is no part.
func spoolCatalog(path, dir string, done completedFiles) ([]spooled, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	cat, err := retrieval.OpenBolt(path)
	if err != nil {
		return nil, fmt.Errorf("backup: %w (stop the server that uses it first)", err)
	}
	defer cat.Close()
	return spool(dir, catalogName, KindCatalog, func(w io.Writer) error {
		_, err := cat.Backup(w, done.add)
		return err
	})
}

// spoolPoints scrolls the whole index, after the catalog snapshot, into a spool file:
// one JSON line per point of a file completed in the snapshot. Points of files still
// being ingested, or added after the snapshot, are left out: the restored catalog
// does not list them as completed (an in_progress file is ingested again by the
// restored server's restart recovery).
func spoolPoints(ctx context.Context, idx vector.Index, dir string, done completedFiles, progress Progress) ([]spooled, error) {
	total, err := idx.Count(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("backup: count the vector index: %w", err)
	}
	if progress != nil {
		progress(pointsName, 0, int64(total))
	}
	var seen int64
	return spool(dir, pointsName, KindPoints, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		err := idx.Scroll(ctx, "", func(p vector.Point) error {
			seen++
			if progress != nil {
				progress(pointsName, seen, int64(total))
			}
			if !done[fileKey{p.StoreID, p.FileID}] {
				return nil
			}
			return enc.Encode(pointLine{ID: p.ID, StoreID: p.StoreID, FileID: p.FileID, Chunk: p.Chunk,
				Text: p.Text, Attributes: p.Attributes, Vector: p.Vector})
		})
		if err != nil {
			return fmt.Errorf("backup: scroll the vector index: %w", err)
		}
		return nil
	})
}

// spool writes one part to a spool file through write, counting and hashing it.
func spool(dir, name, kind string, write func(io.Writer) error) ([]spooled, error) {
	path := filepath.Join(dir, filepath.Base(name))
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("backup: spool %s: %w", name, err)
	}
	defer f.Close()
	s := newSummer()
	bw := bufio.NewWriterSize(f, 1<<16)
	if err := write(io.MultiWriter(bw, s)); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("backup: spool %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("backup: spool %s: %w", name, err)
	}
	p := Part{Name: name, Kind: kind, Bytes: s.bytes, SHA256: s.sum()}
	if kind == KindPoints {
		p.Rows = s.rows
	}
	return []spooled{{part: p, path: path}}, nil
}

// HasRetrieval reports whether the manifest holds retrieval parts (vector points or
// the embedded catalog).
func (m *Manifest) HasRetrieval() bool {
	for _, p := range m.Parts {
		if p.Kind == KindPoints || p.Kind == KindCatalog {
			return true
		}
	}
	return false
}

// checkRetrievalTarget refuses, before anything is written, a target index that holds
// points or a catalog file that exists, unless force.
func checkRetrievalTarget(ctx context.Context, r *Retrieval, m *Manifest, force bool) error {
	if r == nil || r.Index == nil {
		return errors.New("backup: the archive holds vector stores: give the target's config (retrieval section)")
	}
	for _, p := range m.Parts {
		if p.Kind == KindCatalog && r.CatalogPath == "" {
			return errors.New("backup: the archive holds an embedded catalog but the target keeps its catalog in PostgreSQL: restore with a config without PostgreSQL")
		}
	}
	if force {
		return nil
	}
	n, err := r.Index.Count(ctx, "")
	if err != nil {
		return fmt.Errorf("backup: count the target's vector index: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("backup: %w: the vector index holds %d points; restore into an empty one, or pass --force to replace them", ErrNotEmpty, n)
	}
	if r.CatalogPath != "" {
		if _, err := os.Stat(r.CatalogPath); err == nil {
			return fmt.Errorf("backup: %w: %s exists; restore into an empty data directory, or pass --force to replace it", ErrNotEmpty, r.CatalogPath)
		}
	}
	return nil
}

// restoreBatch is the number of points per Upsert on restore.
const restoreBatch = 256

// restoreRetrieval writes the retrieval parts of a verified archive: the catalog file
// through a temporary file renamed into place once whole, and the points by Upsert. On
// a failure the points written are deleted again and the catalog is left as it was.
// With force, the index's existing stores are deleted first.
func restoreRetrieval(ctx context.Context, path string, r *Retrieval, force bool, progress Progress) (err error) {
	if force {
		if err := clearIndex(ctx, r.Index); err != nil {
			return err
		}
	}
	written := map[string]bool{}
	var tmp string
	defer func() {
		if err == nil {
			return
		}
		if tmp != "" {
			os.Remove(tmp)
		}
		for s := range written {
			err = errors.Join(err, r.Index.DeleteStore(context.WithoutCancel(ctx), s))
		}
	}()
	_, err = walk(path, func(p Part, rd io.Reader) error {
		switch p.Kind {
		case KindCatalog:
			tmp = r.CatalogPath + ".restore"
			return writeFileSynced(tmp, rd)
		case KindPoints:
			return restorePoints(ctx, r.Index, p, rd, written, progress)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if tmp != "" {
		if err := os.Rename(tmp, r.CatalogPath); err != nil {
			return fmt.Errorf("backup: restore the catalog: %w", err)
		}
	}
	return nil
}

// restorePoints upserts the points of one part in batches, noting the stores written.
func restorePoints(ctx context.Context, idx vector.Index, p Part, r io.Reader, written map[string]bool, progress Progress) error {
	dec := json.NewDecoder(r)
	batch := make([]vector.Point, 0, restoreBatch)
	var n int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		for _, pt := range batch {
			written[pt.StoreID] = true
		}
		if err := idx.Upsert(ctx, batch); err != nil {
			return fmt.Errorf("backup: restore %s: %w", p.Name, err)
		}
		n += int64(len(batch))
		if progress != nil {
			progress(p.Name, n, p.Rows)
		}
		batch = batch[:0]
		return nil
	}
	for {
		var l pointLine
		if err := dec.Decode(&l); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return damaged(p.Name, err)
		}
		batch = append(batch, vector.Point{ID: l.ID, StoreID: l.StoreID, FileID: l.FileID, Chunk: l.Chunk,
			Text: l.Text, Attributes: l.Attributes, Vector: l.Vector})
		if len(batch) == restoreBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if n != p.Rows {
		return fmt.Errorf("backup: restore %s: %d points written, the manifest says %d", p.Name, n, p.Rows)
	}
	return nil
}

// clearIndex deletes every store of the index.
func clearIndex(ctx context.Context, idx vector.Index) error {
	stores := map[string]bool{}
	if err := idx.Scroll(ctx, "", func(p vector.Point) error { stores[p.StoreID] = true; return nil }); err != nil {
		return fmt.Errorf("backup: list the target's vector stores: %w", err)
	}
	for s := range stores {
		if err := idx.DeleteStore(ctx, s); err != nil {
			return fmt.Errorf("backup: empty the target's vector index: %w", err)
		}
	}
	return nil
}

// writeFileSynced writes r to a new file at path and syncs it.
func writeFileSynced(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("backup: restore the catalog: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("backup: restore the catalog: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return damaged(catalogName, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("backup: restore the catalog: %w", err)
	}
	return f.Close()
}
