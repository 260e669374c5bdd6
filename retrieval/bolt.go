package retrieval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bolt is the embedded Catalog: one Bolt file (catalog.db under the data directory).
// Every Put is a transaction fsynced before it returns, so a kill never leaves an
// object half written. Keys start with the owner, so another owner's id is simply
// absent.
type Bolt struct{ db *bolt.DB }

var _ Catalog = (*Bolt)(nil)

// Bolt buckets.
var (
	bktFiles      = []byte("files")
	bktContent    = []byte("content")
	bktStores     = []byte("stores")
	bktStoreFiles = []byte("store_files")
	bktBatches    = []byte("batches")
)

// OpenBolt opens (creating it and its directory) the catalog file at path. Another
// process holding it makes OpenBolt fail after a second.
func OpenBolt(path string) (*Bolt, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("retrieval: create the data directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("retrieval: open catalog %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bktFiles, bktContent, bktStores, bktStoreFiles, bktBatches} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("retrieval: open catalog %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// key joins an owner and ids with NUL bytes (ids never hold one).
func key(parts ...string) []byte { return []byte(strings.Join(parts, "\x00")) }

// put stores v's JSON (or raw bytes) under k in bucket.
func (b *Bolt) put(bucket, k []byte, v any) error {
	raw, ok := v.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return err
		}
	}
	return b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(k, raw) })
}

// get reads k of bucket into a copy, or ErrNotFound.
func (b *Bolt) get(bucket, k []byte) ([]byte, error) {
	var out []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(k)
		if v == nil {
			return ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, err
}

// scan calls fn with every key and value of bucket starting with prefix, in key
// order (values are valid during the call only).
func (b *Bolt) scan(bucket, prefix []byte, fn func(k, v []byte) error) error {
	return b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if err := fn(k, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// getJSON reads k of bucket into v.
func getJSON[T any](b *Bolt, bucket, k []byte) (*T, error) {
	raw, err := b.get(bucket, k)
	if err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("retrieval: decode %s: %w", bucket, err)
	}
	return &v, nil
}

// listJSON decodes every value of bucket under prefix.
func listJSON[T any](b *Bolt, bucket, prefix []byte) ([]T, error) {
	var out []T
	err := b.scan(bucket, prefix, func(_, v []byte) error {
		var x T
		if err := json.Unmarshal(v, &x); err != nil {
			return fmt.Errorf("retrieval: decode %s: %w", bucket, err)
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

// PutFile implements Catalog.
func (b *Bolt) PutFile(_ context.Context, f *File, content []byte) error {
	meta, err := json.Marshal(f)
	if err != nil {
		return err
	}
	k := key(f.Owner, f.ID)
	return b.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bktContent).Put(k, content); err != nil {
			return err
		}
		return tx.Bucket(bktFiles).Put(k, meta)
	})
}

// File implements Catalog.
func (b *Bolt) File(_ context.Context, owner, id string) (*File, error) {
	f, err := getJSON[File](b, bktFiles, key(owner, id))
	if f != nil {
		f.Owner = owner
	}
	return f, err
}

// Content implements Catalog.
func (b *Bolt) Content(_ context.Context, owner, id string) ([]byte, error) {
	return b.get(bktContent, key(owner, id))
}

// Files implements Catalog.
func (b *Bolt) Files(_ context.Context, owner string) ([]File, error) {
	fs, err := listJSON[File](b, bktFiles, key(owner, ""))
	for i := range fs {
		fs[i].Owner = owner
	}
	return fs, err
}

// DeleteFile implements Catalog.
func (b *Bolt) DeleteFile(_ context.Context, owner, id string) error {
	k := key(owner, id)
	return b.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bktFiles).Get(k) == nil {
			return ErrNotFound
		}
		if err := tx.Bucket(bktContent).Delete(k); err != nil {
			return err
		}
		return tx.Bucket(bktFiles).Delete(k)
	})
}

// PutStore implements Catalog.
func (b *Bolt) PutStore(_ context.Context, s *VectorStore) error {
	return b.put(bktStores, key(s.Owner, s.ID), s)
}

// Store implements Catalog.
func (b *Bolt) Store(_ context.Context, owner, id string) (*VectorStore, error) {
	s, err := getJSON[VectorStore](b, bktStores, key(owner, id))
	if s != nil {
		s.Owner = owner
	}
	return s, err
}

// Stores implements Catalog.
func (b *Bolt) Stores(_ context.Context, owner string) ([]VectorStore, error) {
	ss, err := listJSON[VectorStore](b, bktStores, key(owner, ""))
	for i := range ss {
		ss[i].Owner = owner
	}
	return ss, err
}

// DeleteStore implements Catalog.
func (b *Bolt) DeleteStore(_ context.Context, owner, id string) error {
	k := key(owner, id)
	children := key(owner, id, "")
	return b.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bktStores).Get(k) == nil {
			return ErrNotFound
		}
		for _, name := range [][]byte{bktStoreFiles, bktBatches} {
			bk := tx.Bucket(name)
			var doomed [][]byte
			c := bk.Cursor()
			for ck, _ := c.Seek(children); ck != nil && bytes.HasPrefix(ck, children); ck, _ = c.Next() {
				doomed = append(doomed, bytes.Clone(ck))
			}
			for _, d := range doomed {
				if err := bk.Delete(d); err != nil {
					return err
				}
			}
		}
		return tx.Bucket(bktStores).Delete(k)
	})
}

// PutStoreFile implements Catalog.
func (b *Bolt) PutStoreFile(_ context.Context, f *VectorStoreFile) error {
	raw, err := EncodeStoreFile(f)
	if err != nil {
		return err
	}
	return b.put(bktStoreFiles, key(f.Owner, f.VectorStoreID, f.ID), raw)
}

// StoreFile implements Catalog.
func (b *Bolt) StoreFile(_ context.Context, owner, storeID, fileID string) (*VectorStoreFile, error) {
	raw, err := b.get(bktStoreFiles, key(owner, storeID, fileID))
	if err != nil {
		return nil, err
	}
	return DecodeStoreFile(raw, owner)
}

// StoreFiles implements Catalog.
func (b *Bolt) StoreFiles(_ context.Context, owner, storeID string) ([]VectorStoreFile, error) {
	var out []VectorStoreFile
	err := b.scan(bktStoreFiles, key(owner, storeID, ""), func(_, v []byte) error {
		f, err := DecodeStoreFile(v, owner)
		if err == nil {
			out = append(out, *f)
		}
		return err
	})
	return out, err
}

// DeleteStoreFile implements Catalog.
func (b *Bolt) DeleteStoreFile(_ context.Context, owner, storeID, fileID string) error {
	k := key(owner, storeID, fileID)
	return b.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bktStoreFiles).Get(k) == nil {
			return ErrNotFound
		}
		return tx.Bucket(bktStoreFiles).Delete(k)
	})
}

// PutBatch implements Catalog.
func (b *Bolt) PutBatch(_ context.Context, fb *FileBatch) error {
	return b.put(bktBatches, key(fb.Owner, fb.VectorStoreID, fb.ID), fb)
}

// Batch implements Catalog.
func (b *Bolt) Batch(_ context.Context, owner, storeID, id string) (*FileBatch, error) {
	fb, err := getJSON[FileBatch](b, bktBatches, key(owner, storeID, id))
	if fb != nil {
		fb.Owner = owner
	}
	return fb, err
}

// Unfinished implements Catalog.
func (b *Bolt) Unfinished(_ context.Context) ([]VectorStoreFile, error) {
	var out []VectorStoreFile
	err := b.scan(bktStoreFiles, nil, func(k, v []byte) error {
		owner, _, _ := bytes.Cut(k, []byte{0})
		f, err := DecodeStoreFile(v, string(owner))
		if err == nil && f.Status == StatusInProgress {
			out = append(out, *f)
		}
		return err
	})
	return out, err
}

// Counts implements Catalog.
func (b *Bolt) Counts(_ context.Context) (FileCounts, error) {
	var c FileCounts
	err := b.scan(bktStoreFiles, nil, func(_, v []byte) error {
		f, err := DecodeStoreFile(v, "")
		if err == nil {
			c.Add(f.Status, 1)
		}
		return err
	})
	return c, err
}

// Check implements Catalog.
func (b *Bolt) Check(context.Context) error {
	return b.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bktStores) == nil {
			return errors.New("retrieval: catalog buckets missing")
		}
		return nil
	})
}

// Close implements Catalog.
func (b *Bolt) Close() error { return b.db.Close() }

// BoltFile is the embedded catalog's file name under retrieval.data_dir.
const BoltFile = "catalog.db"

// Backup writes a consistent copy of the whole catalog file to w, from one read
// transaction (the server may keep writing meanwhile), and calls visit with every
// vector-store file of that copy, so that the caller knows which were completed in it.
func (b *Bolt) Backup(w io.Writer, visit func(f *VectorStoreFile)) (int64, error) {
	var n int64
	err := b.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bktStoreFiles).ForEach(func(k, v []byte) error {
			owner, _, _ := bytes.Cut(k, []byte{0})
			f, err := DecodeStoreFile(v, string(owner))
			if err != nil {
				return err
			}
			visit(f)
			return nil
		})
		if err != nil {
			return err
		}
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("retrieval: back up the catalog: %w", err)
	}
	return n, nil
}
