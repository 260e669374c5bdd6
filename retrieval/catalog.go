package retrieval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrNotFound is an object that does not exist or belongs to another owner: the
// catalog answers both alike.
var ErrNotFound = errors.New("retrieval: not found")

// Catalog keeps the files' bytes and the metadata of files, vector stores, their
// files and batches. Every call names the owner (the key id, "" without auth); an
// object of another owner is ErrNotFound. Lists return every matching object in
// ascending id order (ids sort by creation): the service pages them. Implementations
// are safe for concurrent use, never log content, and make each Put durable before
// returning. retrieval/catalogtest is the suite every implementation passes.
type Catalog interface {
	// PutFile stores a new file and its bytes.
	PutFile(ctx context.Context, f *File, content []byte) error
	File(ctx context.Context, owner, id string) (*File, error)
	Content(ctx context.Context, owner, id string) ([]byte, error)
	Files(ctx context.Context, owner string) ([]File, error)
	DeleteFile(ctx context.Context, owner, id string) error

	// PutStore creates or replaces a store.
	PutStore(ctx context.Context, s *VectorStore) error
	Store(ctx context.Context, owner, id string) (*VectorStore, error)
	Stores(ctx context.Context, owner string) ([]VectorStore, error)
	// DeleteStore removes a store with its files and batches.
	DeleteStore(ctx context.Context, owner, id string) error

	// PutStoreFile creates or replaces a file of a store.
	PutStoreFile(ctx context.Context, f *VectorStoreFile) error
	StoreFile(ctx context.Context, owner, storeID, fileID string) (*VectorStoreFile, error)
	// StoreFiles lists a store's files in ascending file id order.
	StoreFiles(ctx context.Context, owner, storeID string) ([]VectorStoreFile, error)
	DeleteStoreFile(ctx context.Context, owner, storeID, fileID string) error

	// PutBatch creates or replaces a batch.
	PutBatch(ctx context.Context, b *FileBatch) error
	Batch(ctx context.Context, owner, storeID, id string) (*FileBatch, error)

	// Unfinished lists every owner's store files still in_progress (with Owner set):
	// the ingestions a restart must finish.
	Unfinished(ctx context.Context) ([]VectorStoreFile, error)
	// Counts counts every owner's store files by status (the metrics).
	Counts(ctx context.Context) (FileCounts, error)
	// Check reports whether the catalog can serve (the health check).
	Check(ctx context.Context) error
	Close() error
}

// storedStoreFile is a store file with the fields the wire leaves out, as catalogs
// persist it.
type storedStoreFile struct {
	VectorStoreFile
	Batch string `json:"hxp_batch_id,omitempty"`
}

// EncodeStoreFile is f's persisted JSON (its batch included, its owner not).
func EncodeStoreFile(f *VectorStoreFile) ([]byte, error) {
	b, err := json.Marshal(storedStoreFile{VectorStoreFile: *f, Batch: f.BatchID})
	if err != nil {
		return nil, fmt.Errorf("retrieval: encode store file %s: %w", f.ID, err)
	}
	return b, nil
}

// DecodeStoreFile reads what EncodeStoreFile wrote, for owner.
func DecodeStoreFile(b []byte, owner string) (*VectorStoreFile, error) {
	var s storedStoreFile
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("retrieval: decode store file: %w", err)
	}
	s.VectorStoreFile.BatchID, s.VectorStoreFile.Owner = s.Batch, owner
	return &s.VectorStoreFile, nil
}
