package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/hxp-ai/hxp/retrieval"
)

// Catalog is the durable retrieval.Catalog: files (with their bytes), vector stores,
// their files and batches in the tables of migration 0005, shared by every gateway on
// the database. Every query filters on the owner, so another key's id is not found.
type Catalog struct{ db *DB }

// Catalog returns the database's retrieval catalog.
func (db *DB) Catalog() *Catalog { return &Catalog{db: db} }

var _ retrieval.Catalog = (*Catalog)(nil)

// exec runs a statement, failing with retrieval.ErrNotFound when it changed no row.
func (c *Catalog) exec(ctx context.Context, what, sql string, args ...any) error {
	tag, err := c.db.pool.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	if tag.RowsAffected() == 0 {
		return retrieval.ErrNotFound
	}
	return nil
}

// one reads one row's single column into dst, or retrieval.ErrNotFound.
func (c *Catalog) one(ctx context.Context, what string, dst any, sql string, args ...any) error {
	err := c.db.pool.QueryRow(ctx, sql, args...).Scan(dst)
	if errors.Is(err, pgx.ErrNoRows) {
		return retrieval.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", what, err)
	}
	return nil
}

// record reads one row's JSON record into a T.
func record[T any](ctx context.Context, c *Catalog, what, sql string, args ...any) (*T, error) {
	var b []byte
	if err := c.one(ctx, what, &b, sql, args...); err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("postgres: decode %s: %w", what, err)
	}
	return &v, nil
}

// records reads the rows' (owner, record) into Ts, decoded by decode.
func records[T any](ctx context.Context, c *Catalog, what string, decode func(b []byte, owner string) (*T, error), sql string, args ...any) ([]T, error) {
	rows, err := c.db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var owner string
		var b []byte
		if err := rows.Scan(&owner, &b); err != nil {
			return nil, fmt.Errorf("postgres: %s: %w", what, err)
		}
		v, err := decode(b, owner)
		if err != nil {
			return nil, fmt.Errorf("postgres: decode %s: %w", what, err)
		}
		out = append(out, *v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return out, nil
}

// decodeJSON decodes a record of owner.
func decodeJSON[T any](set func(*T, string)) func([]byte, string) (*T, error) {
	return func(b []byte, owner string) (*T, error) {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, err
		}
		set(&v, owner)
		return &v, nil
	}
}

// PutFile implements retrieval.Catalog.
func (c *Catalog) PutFile(ctx context.Context, f *retrieval.File, content []byte) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("postgres: encode file %s: %w", f.ID, err)
	}
	if _, err := c.db.pool.Exec(ctx, "INSERT INTO retrieval_files (id, owner, record, content) VALUES ($1, $2, $3, $4)",
		f.ID, f.Owner, b, content); err != nil {
		return fmt.Errorf("postgres: store file %s: %w", f.ID, err)
	}
	return nil
}

// File implements retrieval.Catalog.
func (c *Catalog) File(ctx context.Context, owner, id string) (*retrieval.File, error) {
	f, err := record[retrieval.File](ctx, c, "read file", "SELECT record FROM retrieval_files WHERE id = $1 AND owner = $2", id, owner)
	if f != nil {
		f.Owner = owner
	}
	return f, err
}

// Content implements retrieval.Catalog.
func (c *Catalog) Content(ctx context.Context, owner, id string) ([]byte, error) {
	var b []byte
	err := c.one(ctx, "read file content", &b, "SELECT content FROM retrieval_files WHERE id = $1 AND owner = $2", id, owner)
	return b, err
}

// Files implements retrieval.Catalog.
func (c *Catalog) Files(ctx context.Context, owner string) ([]retrieval.File, error) {
	return records(ctx, c, "list files", decodeJSON(func(f *retrieval.File, o string) { f.Owner = o }),
		"SELECT owner, record FROM retrieval_files WHERE owner = $1 ORDER BY id", owner)
}

// DeleteFile implements retrieval.Catalog.
func (c *Catalog) DeleteFile(ctx context.Context, owner, id string) error {
	return c.exec(ctx, "delete file", "DELETE FROM retrieval_files WHERE id = $1 AND owner = $2", id, owner)
}

// PutStore implements retrieval.Catalog.
func (c *Catalog) PutStore(ctx context.Context, s *retrieval.VectorStore) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("postgres: encode vector store %s: %w", s.ID, err)
	}
	// A store id is never reused by another owner: the update keeps the row's owner.
	if _, err := c.db.pool.Exec(ctx, `INSERT INTO vector_stores (id, owner, record) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET record = excluded.record WHERE vector_stores.owner = excluded.owner`, s.ID, s.Owner, b); err != nil {
		return fmt.Errorf("postgres: store vector store %s: %w", s.ID, err)
	}
	return nil
}

// Store implements retrieval.Catalog.
func (c *Catalog) Store(ctx context.Context, owner, id string) (*retrieval.VectorStore, error) {
	s, err := record[retrieval.VectorStore](ctx, c, "read vector store", "SELECT record FROM vector_stores WHERE id = $1 AND owner = $2", id, owner)
	if s != nil {
		s.Owner = owner
	}
	return s, err
}

// Stores implements retrieval.Catalog.
func (c *Catalog) Stores(ctx context.Context, owner string) ([]retrieval.VectorStore, error) {
	return records(ctx, c, "list vector stores", decodeJSON(func(s *retrieval.VectorStore, o string) { s.Owner = o }),
		"SELECT owner, record FROM vector_stores WHERE owner = $1 ORDER BY id", owner)
}

// DeleteStore implements retrieval.Catalog; its files and batches go with it (ON
// DELETE CASCADE).
func (c *Catalog) DeleteStore(ctx context.Context, owner, id string) error {
	return c.exec(ctx, "delete vector store", "DELETE FROM vector_stores WHERE id = $1 AND owner = $2", id, owner)
}

// PutStoreFile implements retrieval.Catalog.
func (c *Catalog) PutStoreFile(ctx context.Context, f *retrieval.VectorStoreFile) error {
	b, err := retrieval.EncodeStoreFile(f)
	if err != nil {
		return err
	}
	if _, err := c.db.pool.Exec(ctx, `INSERT INTO vector_store_files (store_id, file_id, owner, status, record) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (store_id, file_id) DO UPDATE SET status = excluded.status, record = excluded.record
		WHERE vector_store_files.owner = excluded.owner`, f.VectorStoreID, f.ID, f.Owner, f.Status, b); err != nil {
		return fmt.Errorf("postgres: store vector store file %s/%s: %w", f.VectorStoreID, f.ID, err)
	}
	return nil
}

// StoreFile implements retrieval.Catalog.
func (c *Catalog) StoreFile(ctx context.Context, owner, storeID, fileID string) (*retrieval.VectorStoreFile, error) {
	var b []byte
	if err := c.one(ctx, "read vector store file", &b, "SELECT record FROM vector_store_files WHERE store_id = $1 AND file_id = $2 AND owner = $3",
		storeID, fileID, owner); err != nil {
		return nil, err
	}
	return retrieval.DecodeStoreFile(b, owner)
}

// StoreFiles implements retrieval.Catalog.
func (c *Catalog) StoreFiles(ctx context.Context, owner, storeID string) ([]retrieval.VectorStoreFile, error) {
	return records(ctx, c, "list vector store files", retrieval.DecodeStoreFile,
		"SELECT owner, record FROM vector_store_files WHERE store_id = $1 AND owner = $2 ORDER BY file_id", storeID, owner)
}

// DeleteStoreFile implements retrieval.Catalog.
func (c *Catalog) DeleteStoreFile(ctx context.Context, owner, storeID, fileID string) error {
	return c.exec(ctx, "delete vector store file", "DELETE FROM vector_store_files WHERE store_id = $1 AND file_id = $2 AND owner = $3",
		storeID, fileID, owner)
}

// PutBatch implements retrieval.Catalog.
func (c *Catalog) PutBatch(ctx context.Context, fb *retrieval.FileBatch) error {
	b, err := json.Marshal(fb)
	if err != nil {
		return fmt.Errorf("postgres: encode file batch %s: %w", fb.ID, err)
	}
	if _, err := c.db.pool.Exec(ctx, `INSERT INTO vector_store_file_batches (id, store_id, owner, record) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET record = excluded.record WHERE vector_store_file_batches.owner = excluded.owner`,
		fb.ID, fb.VectorStoreID, fb.Owner, b); err != nil {
		return fmt.Errorf("postgres: store file batch %s: %w", fb.ID, err)
	}
	return nil
}

// Batch implements retrieval.Catalog.
func (c *Catalog) Batch(ctx context.Context, owner, storeID, id string) (*retrieval.FileBatch, error) {
	fb, err := record[retrieval.FileBatch](ctx, c, "read file batch",
		"SELECT record FROM vector_store_file_batches WHERE id = $1 AND store_id = $2 AND owner = $3", id, storeID, owner)
	if fb != nil {
		fb.Owner = owner
	}
	return fb, err
}

// Unfinished implements retrieval.Catalog.
func (c *Catalog) Unfinished(ctx context.Context) ([]retrieval.VectorStoreFile, error) {
	return records(ctx, c, "list unfinished ingestions", retrieval.DecodeStoreFile,
		"SELECT owner, record FROM vector_store_files WHERE status = 'in_progress' ORDER BY store_id, file_id")
}

// Counts implements retrieval.Catalog.
func (c *Catalog) Counts(ctx context.Context) (retrieval.FileCounts, error) {
	var fc retrieval.FileCounts
	rows, err := c.db.pool.Query(ctx, "SELECT status, count(*) FROM vector_store_files GROUP BY status")
	if err != nil {
		return fc, fmt.Errorf("postgres: count vector store files: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return fc, fmt.Errorf("postgres: count vector store files: %w", err)
		}
		fc.Add(status, n)
	}
	return fc, rows.Err()
}

// Check implements retrieval.Catalog.
func (c *Catalog) Check(ctx context.Context) error { return c.db.pool.Ping(ctx) }

// Close implements retrieval.Catalog; the database is closed by its owner.
func (c *Catalog) Close() error { return nil }
