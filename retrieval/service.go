package retrieval

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/vector"
)

// Options configure a Service.
type Options struct {
	// Catalog keeps the metadata and the files' bytes; Index the chunks' vectors.
	Catalog Catalog
	Index   vector.Index
	// Models embeds chunks and queries, and tokenizes files for chunking. Embeddings
	// are requested with the owner's caller in the context, so admission (scope,
	// limits, budget, ledger) applies to them as to the key's own requests; tokenizing
	// carries no caller and is not charged.
	Models infer.Service
	// DefaultModel embeds the stores created without embedding_model ("" is the first
	// served model that can embed).
	DefaultModel string
	// MaxFileBytes bounds an upload (default 32 MiB).
	MaxFileBytes int64
	// Workers is how many files are ingested at once (default 2).
	Workers int
	// EmbedBatch is how many chunks one embeddings request carries (default 16).
	EmbedBatch int
	// Log receives progress and failures (ids and counts, never content).
	Log zerolog.Logger
	// Metrics, when set, counts chunks and times ingestions and searches.
	Metrics *Metrics
}

// Defaults of Options.
const (
	DefaultMaxFileBytes = 32 << 20
	defaultWorkers      = 2
	defaultEmbedBatch   = 16
)

// Service is the files and vector stores API. Every method takes the caller from ctx
// (infer.CallerFrom) and sees that caller's objects only.
type Service struct {
	o    Options
	sem  chan struct{} // one token per running ingestion
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu   sync.Mutex
	jobs map[string]*job // running ingestions by storeID/fileID
	dims map[string]int  // embedding dimension by model
	span map[string]int  // the largest chunk (tokens) each model embedded
}

// New returns the service; Start recovers unfinished ingestions.
func New(o Options) *Service {
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = DefaultMaxFileBytes
	}
	if o.Workers <= 0 {
		o.Workers = defaultWorkers
	}
	if o.EmbedBatch <= 0 {
		o.EmbedBatch = defaultEmbedBatch
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Service{o: o, sem: make(chan struct{}, o.Workers), ctx: ctx, stop: stop, jobs: map[string]*job{},
		dims: map[string]int{}, span: map[string]int{}}
}

// MaxFileBytes is the largest upload accepted.
func (s *Service) MaxFileBytes() int64 { return s.o.MaxFileBytes }

// Close stops the ingestions (their files stay in_progress, to be finished by the
// next Start) and waits for them; it does not close the catalog or the index.
func (s *Service) Close() {
	s.stop()
	s.wg.Wait()
}

// owner is the caller's key id ("" without auth).
func owner(ctx context.Context) string {
	if c := infer.CallerFrom(ctx); c != nil {
		return c.ID
	}
	return ""
}

// notFound is the client's answer for an id that is unknown or another key's.
func notFound(param, what, id string) *infer.Error {
	return &infer.Error{Kind: infer.NotFound, Param: param, Code: "not_found",
		Message: fmt.Sprintf("No %s with id %q was found for this API key.", what, id)}
}

// catalogErr maps a catalog error: ErrNotFound to the 404 of id, anything else to
// a 503.
func catalogErr(err error, param, what, id string) error {
	if errors.Is(err, ErrNotFound) {
		return notFound(param, what, id)
	}
	return &infer.Error{Kind: infer.Unavailable, Code: "retrieval_store_unavailable",
		Message: "the file and vector store catalog cannot answer now; retry later", RetryAfter: time.Second, Err: err}
}

// Purposes accepted for uploads.
var purposes = []string{"assistants", "user_data"}

// Upload stores a new text file. contentType is the part's declared type, used when
// the file name has no known extension.
func (s *Service) Upload(ctx context.Context, filename, purpose, declared string, content []byte) (*File, error) {
	if !contains(purposes, purpose) {
		return nil, infer.Invalid("purpose", "purpose must be one of %s, got %q", strings.Join(purposes, ", "), purpose)
	}
	if filename == "" || len(filename) > maxNameLen || strings.ContainsAny(filename, "\x00/\\") {
		return nil, infer.Invalid("file", "the file needs a name of at most %d bytes without slashes", maxNameLen)
	}
	if int64(len(content)) > s.o.MaxFileBytes {
		return nil, infer.Invalid("file", "the file has %d bytes; at most %d are accepted (retrieval.max_file_bytes)", len(content), s.o.MaxFileBytes)
	}
	typ, err := contentType(filename, declared)
	if err != nil {
		return nil, err
	}
	if err := checkContent(typ, content); err != nil {
		return nil, err
	}
	f := &File{ID: newID(filePrefix), Object: "file", Bytes: int64(len(content)), CreatedAt: time.Now().Unix(),
		Filename: filename, Purpose: purpose, Status: "processed", ContentType: typ, Owner: owner(ctx)}
	if err := s.o.Catalog.PutFile(ctx, f, content); err != nil {
		return nil, catalogErr(err, "file", "file", f.ID)
	}
	return f, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// File returns the caller's file id.
func (s *Service) File(ctx context.Context, id string) (*File, error) {
	f, err := s.o.Catalog.File(ctx, owner(ctx), id)
	if err != nil {
		return nil, catalogErr(err, "file_id", "file", id)
	}
	return f, nil
}

// Content returns the caller's file id and its bytes.
func (s *Service) Content(ctx context.Context, id string) (*File, []byte, error) {
	f, err := s.File(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	b, err := s.o.Catalog.Content(ctx, f.Owner, id)
	if err != nil {
		return nil, nil, catalogErr(err, "file_id", "file", id)
	}
	return f, b, nil
}

// Files lists the caller's files (of p.Purpose when set).
func (s *Service) Files(ctx context.Context, p ListParams) (*List[File], error) {
	fs, err := s.o.Catalog.Files(ctx, owner(ctx))
	if err != nil {
		return nil, catalogErr(err, "", "", "")
	}
	if p.Purpose != "" {
		kept := fs[:0]
		for _, f := range fs {
			if f.Purpose == p.Purpose {
				kept = append(kept, f)
			}
		}
		fs = kept
	}
	return page(fs, func(f *File) string { return f.ID }, p), nil
}

// DeleteFile removes the caller's file and takes it out of every store of the
// caller (its chunks included).
func (s *Service) DeleteFile(ctx context.Context, id string) (*Deleted, error) {
	f, err := s.File(ctx, id)
	if err != nil {
		return nil, err
	}
	stores, err := s.o.Catalog.Stores(ctx, f.Owner)
	if err != nil {
		return nil, catalogErr(err, "", "", "")
	}
	for _, st := range stores {
		if err := s.detach(ctx, f.Owner, st.ID, id); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, catalogErr(err, "file_id", "file", id)
		}
	}
	if err := s.o.Catalog.DeleteFile(ctx, f.Owner, id); err != nil {
		return nil, catalogErr(err, "file_id", "file", id)
	}
	return &Deleted{ID: id, Object: "file", Deleted: true}, nil
}

// CreateStore creates a store (attaching file_ids, if any, in the background).
func (s *Service) CreateStore(ctx context.Context, r *CreateStoreRequest) (*VectorStore, error) {
	if err := checkName(r.Name); err != nil {
		return nil, err
	}
	if err := checkMetadata(r.Metadata); err != nil {
		return nil, err
	}
	if err := checkExpires(r.ExpiresAfter); err != nil {
		return nil, err
	}
	if len(r.FileIDs) > maxFileIDsOnCreate {
		return nil, infer.Invalid("file_ids", "file_ids has %d files; at most %d are allowed", len(r.FileIDs), maxFileIDsOnCreate)
	}
	chunking, err := r.ChunkingStrategy.resolve("chunking_strategy")
	if err != nil {
		return nil, err
	}
	model, dim, err := s.embedder(ctx, r.EmbeddingModel)
	if err != nil {
		return nil, err
	}
	now := time.Now().Unix()
	st := &VectorStore{ID: newID(storePrefix), Object: "vector_store", CreatedAt: now, LastActiveAt: now,
		ExpiresAfter: r.ExpiresAfter, Metadata: r.Metadata, EmbeddingModel: model, Dimensions: dim, Owner: owner(ctx)}
	if r.Name != nil {
		st.Name = *r.Name
	}
	if st.Metadata == nil {
		st.Metadata = map[string]string{}
	}
	files, err := s.ownFiles(ctx, st.Owner, r.FileIDs, "file_ids")
	if err != nil {
		return nil, err
	}
	if err := s.o.Catalog.PutStore(ctx, st); err != nil {
		return nil, catalogErr(err, "", "", "")
	}
	for _, f := range files {
		if _, err := s.attach(ctx, st, f, nil, chunking, ""); err != nil {
			return nil, err
		}
	}
	return s.describe(ctx, st)
}

// ownFiles returns the caller's files of ids, failing on the first unknown one.
func (s *Service) ownFiles(ctx context.Context, own string, ids []string, param string) ([]*File, error) {
	out := make([]*File, 0, len(ids))
	for i, id := range ids {
		f, err := s.o.Catalog.File(ctx, own, id)
		if err != nil {
			return nil, catalogErr(err, fmt.Sprintf("%s[%d]", param, i), "file", id)
		}
		out = append(out, f)
	}
	return out, nil
}

// describe fills a store's counts, size and status from its files.
func (s *Service) describe(ctx context.Context, st *VectorStore) (*VectorStore, error) {
	files, err := s.o.Catalog.StoreFiles(ctx, st.Owner, st.ID)
	if err != nil {
		return nil, catalogErr(err, "", "", "")
	}
	st.FileCounts, st.UsageBytes = FileCounts{}, 0
	for _, f := range files {
		st.FileCounts.Add(f.Status, 1)
		st.UsageBytes += f.UsageBytes
	}
	st.Status = StatusCompleted
	if st.FileCounts.InProgress > 0 {
		st.Status = StatusInProgress
	}
	st.ExpiresAt = nil
	if at, ok := st.expiry(); ok {
		st.ExpiresAt = &at
		if time.Now().Unix() >= at {
			st.Status = StatusExpired
		}
	}
	return st, nil
}

// store returns the caller's store id.
func (s *Service) store(ctx context.Context, id string) (*VectorStore, error) {
	st, err := s.o.Catalog.Store(ctx, owner(ctx), id)
	if err != nil {
		return nil, catalogErr(err, "vector_store_id", "vector store", id)
	}
	return st, nil
}

// activeStore returns the caller's store id for a change or a search: an expired
// store is refused until an update (which is activity) revives it.
func (s *Service) activeStore(ctx context.Context, id string) (*VectorStore, error) {
	st, err := s.store(ctx, id)
	if err != nil {
		return nil, err
	}
	if at, ok := st.expiry(); ok && time.Now().Unix() >= at {
		return nil, &infer.Error{Kind: infer.InvalidArgument, Param: "vector_store_id", Code: "vector_store_expired",
			Message: fmt.Sprintf("The vector store %s has expired (no activity for %d days); modify it (POST /v1/vector_stores/%s) to use it again.", id, st.ExpiresAfter.Days, id)}
	}
	return st, nil
}

// Store returns the caller's store id with its counts.
func (s *Service) Store(ctx context.Context, id string) (*VectorStore, error) {
	st, err := s.store(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.describe(ctx, st)
}

// Stores lists the caller's stores.
func (s *Service) Stores(ctx context.Context, p ListParams) (*List[VectorStore], error) {
	ss, err := s.o.Catalog.Stores(ctx, owner(ctx))
	if err != nil {
		return nil, catalogErr(err, "", "", "")
	}
	l := page(ss, func(v *VectorStore) string { return v.ID }, p)
	for i := range l.Data {
		if _, err := s.describe(ctx, &l.Data[i]); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// UpdateStore changes the caller's store's name, expiration policy or metadata.
func (s *Service) UpdateStore(ctx context.Context, id string, r *UpdateStoreRequest) (*VectorStore, error) {
	if err := checkName(r.Name); err != nil {
		return nil, err
	}
	if err := checkMetadata(r.Metadata); err != nil {
		return nil, err
	}
	var exp *ExpiresAfter
	if len(r.ExpiresAfter) > 0 && string(r.ExpiresAfter) != "null" {
		exp = &ExpiresAfter{}
		if err := Decode(r.ExpiresAfter, exp); err != nil {
			return nil, infer.Invalid("expires_after", "expires_after must be {anchor, days} or null")
		}
		if err := checkExpires(exp); err != nil {
			return nil, err
		}
	}
	st, err := s.store(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Name != nil {
		st.Name = *r.Name
	}
	if r.Metadata != nil {
		st.Metadata = r.Metadata
	}
	if len(r.ExpiresAfter) > 0 {
		st.ExpiresAfter = exp
	}
	st.LastActiveAt = time.Now().Unix()
	if err := s.o.Catalog.PutStore(ctx, st); err != nil {
		return nil, catalogErr(err, "", "", "")
	}
	return s.describe(ctx, st)
}

// DeleteStore removes the caller's store, its files' chunks and its records (the
// files themselves stay).
func (s *Service) DeleteStore(ctx context.Context, id string) (*Deleted, error) {
	st, err := s.store(ctx, id)
	if err != nil {
		return nil, err
	}
	files, err := s.o.Catalog.StoreFiles(ctx, st.Owner, id)
	if err != nil {
		return nil, catalogErr(err, "", "", "")
	}
	for _, f := range files {
		s.cancel(id, f.ID)
	}
	if err := s.o.Index.DeleteStore(ctx, id); err != nil {
		return nil, indexErr(err)
	}
	if err := s.o.Catalog.DeleteStore(ctx, st.Owner, id); err != nil {
		return nil, catalogErr(err, "vector_store_id", "vector store", id)
	}
	return &Deleted{ID: id, Object: "vector_store.deleted", Deleted: true}, nil
}

// indexErr is the client's answer for a failing vector index.
func indexErr(err error) error {
	return &infer.Error{Kind: infer.Unavailable, Code: "vector_index_unavailable",
		Message: "the vector index cannot answer now; retry later", RetryAfter: time.Second, Err: err}
}

// Attach attaches the caller's file to the caller's store; ingestion runs in the
// background (the file is in_progress until every chunk is stored).
func (s *Service) Attach(ctx context.Context, storeID string, r *AttachRequest) (*VectorStoreFile, error) {
	chunking, err := r.ChunkingStrategy.resolve("chunking_strategy")
	if err != nil {
		return nil, err
	}
	if err := checkAttributes("attributes", r.Attributes); err != nil {
		return nil, err
	}
	if r.FileID == "" {
		return nil, infer.Invalid("file_id", "file_id is required")
	}
	st, err := s.activeStore(ctx, storeID)
	if err != nil {
		return nil, err
	}
	f, err := s.o.Catalog.File(ctx, st.Owner, r.FileID)
	if err != nil {
		return nil, catalogErr(err, "file_id", "file", r.FileID)
	}
	return s.attach(ctx, st, f, r.Attributes, chunking, "")
}

// attach records f as in_progress in st (replacing an earlier attachment) and queues
// its ingestion.
func (s *Service) attach(ctx context.Context, st *VectorStore, f *File, attrs map[string]any, chunking Chunking, batch string) (*VectorStoreFile, error) {
	s.cancel(st.ID, f.ID)
	if attrs == nil {
		attrs = map[string]any{}
	}
	vf := &VectorStoreFile{ID: f.ID, Object: "vector_store.file", CreatedAt: time.Now().Unix(), VectorStoreID: st.ID,
		Status: StatusInProgress, ChunkingStrategy: chunking, Attributes: attrs, BatchID: batch, Owner: st.Owner}
	if err := s.o.Catalog.PutStoreFile(ctx, vf); err != nil {
		return nil, catalogErr(err, "", "", "")
	}
	s.touch(ctx, st)
	s.enqueue(infer.CallerFrom(ctx), vf)
	return vf, nil
}

// touch records activity on a store (its expiration counts from it); a failure only
// leaves the previous time.
func (s *Service) touch(ctx context.Context, st *VectorStore) {
	st.LastActiveAt = time.Now().Unix()
	if err := s.o.Catalog.PutStore(ctx, st); err != nil {
		s.o.Log.Warn().Err(err).Str("vector_store_id", st.ID).Msg("record vector store activity")
	}
}

// StoreFile returns a file of the caller's store.
func (s *Service) StoreFile(ctx context.Context, storeID, fileID string) (*VectorStoreFile, error) {
	st, err := s.store(ctx, storeID)
	if err != nil {
		return nil, err
	}
	vf, err := s.o.Catalog.StoreFile(ctx, st.Owner, storeID, fileID)
	if err != nil {
		return nil, catalogErr(err, "file_id", "file in this vector store", fileID)
	}
	return vf, nil
}

// StoreFiles lists the files of the caller's store (of the batch, when batch is set).
func (s *Service) StoreFiles(ctx context.Context, storeID, batch string, p ListParams) (*List[VectorStoreFile], error) {
	st, err := s.store(ctx, storeID)
	if err != nil {
		return nil, err
	}
	files, err := s.o.Catalog.StoreFiles(ctx, st.Owner, storeID)
	if err != nil {
		return nil, catalogErr(err, "", "", "")
	}
	kept := files[:0]
	for _, f := range files {
		if (p.Status == "" || f.Status == p.Status) && (batch == "" || f.BatchID == batch) {
			kept = append(kept, f)
		}
	}
	return page(kept, func(f *VectorStoreFile) string { return f.ID }, p), nil
}

// DetachFile removes a file (and its chunks) from the caller's store; the file stays.
func (s *Service) DetachFile(ctx context.Context, storeID, fileID string) (*Deleted, error) {
	st, err := s.store(ctx, storeID)
	if err != nil {
		return nil, err
	}
	if err := s.detach(ctx, st.Owner, storeID, fileID); err != nil {
		return nil, catalogErr(err, "file_id", "file in this vector store", fileID)
	}
	return &Deleted{ID: fileID, Object: "vector_store.file.deleted", Deleted: true}, nil
}

// detach stops the file's ingestion, deletes its chunks and its record.
func (s *Service) detach(ctx context.Context, own, storeID, fileID string) error {
	if _, err := s.o.Catalog.StoreFile(ctx, own, storeID, fileID); err != nil {
		return err
	}
	s.cancel(storeID, fileID)
	if err := s.o.Index.DeleteFile(ctx, storeID, fileID); err != nil {
		return fmt.Errorf("delete the chunks of %s: %w", fileID, err)
	}
	return s.o.Catalog.DeleteStoreFile(ctx, own, storeID, fileID)
}

// CreateBatch attaches several files of the caller to the caller's store.
func (s *Service) CreateBatch(ctx context.Context, storeID string, r *BatchRequest) (*FileBatch, error) {
	reqs := r.Files
	switch {
	case len(r.FileIDs) > 0 && len(r.Files) > 0:
		return nil, infer.Invalid("files", "send file_ids or files, not both")
	case len(r.FileIDs) > 0:
		for _, id := range r.FileIDs {
			reqs = append(reqs, AttachRequest{FileID: id, Attributes: r.Attributes, ChunkingStrategy: r.ChunkingStrategy})
		}
	case len(r.Files) == 0:
		return nil, infer.Invalid("file_ids", "file_ids (or files) must list at least one file")
	}
	if len(reqs) > maxBatchFiles {
		return nil, infer.Invalid("file_ids", "a batch has at most %d files, got %d", maxBatchFiles, len(reqs))
	}
	chunkings := make([]Chunking, len(reqs))
	for i := range reqs {
		param := "files[" + fmt.Sprint(i) + "]"
		if len(r.FileIDs) > 0 {
			param = ""
		}
		var err error
		if chunkings[i], err = reqs[i].ChunkingStrategy.resolve(join(param, "chunking_strategy")); err != nil {
			return nil, err
		}
		if err := checkAttributes(join(param, "attributes"), reqs[i].Attributes); err != nil {
			return nil, err
		}
	}
	st, err := s.activeStore(ctx, storeID)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(reqs))
	for i := range reqs {
		ids[i] = reqs[i].FileID
	}
	files, err := s.ownFiles(ctx, st.Owner, ids, "file_ids")
	if err != nil {
		return nil, err
	}
	b := &FileBatch{ID: newID(batchPrefix), Object: "vector_store.files_batch", CreatedAt: time.Now().Unix(),
		VectorStoreID: storeID, Owner: st.Owner}
	if err := s.o.Catalog.PutBatch(ctx, b); err != nil {
		return nil, catalogErr(err, "", "", "")
	}
	for i, f := range files {
		if _, err := s.attach(ctx, st, f, reqs[i].Attributes, chunkings[i], b.ID); err != nil {
			return nil, err
		}
	}
	return s.describeBatch(ctx, b)
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

// describeBatch fills a batch's counts and status from its files.
func (s *Service) describeBatch(ctx context.Context, b *FileBatch) (*FileBatch, error) {
	files, err := s.o.Catalog.StoreFiles(ctx, b.Owner, b.VectorStoreID)
	if err != nil {
		return nil, catalogErr(err, "", "", "")
	}
	b.FileCounts = FileCounts{}
	for _, f := range files {
		if f.BatchID == b.ID {
			b.FileCounts.Add(f.Status, 1)
		}
	}
	switch c := b.FileCounts; {
	case c.InProgress > 0:
		b.Status = StatusInProgress
	case c.Cancelled > 0:
		b.Status = StatusCancelled
	case c.Failed > 0 && c.Completed == 0:
		b.Status = StatusFailed
	default:
		b.Status = StatusCompleted
	}
	return b, nil
}

// Batch returns a batch of the caller's store.
func (s *Service) Batch(ctx context.Context, storeID, id string) (*FileBatch, error) {
	st, err := s.store(ctx, storeID)
	if err != nil {
		return nil, err
	}
	b, err := s.o.Catalog.Batch(ctx, st.Owner, storeID, id)
	if err != nil {
		return nil, catalogErr(err, "batch_id", "file batch", id)
	}
	return s.describeBatch(ctx, b)
}

// CancelBatch stops the batch's ingestions still running: those files are cancelled
// and their chunks deleted.
func (s *Service) CancelBatch(ctx context.Context, storeID, id string) (*FileBatch, error) {
	b, err := s.Batch(ctx, storeID, id)
	if err != nil {
		return nil, err
	}
	files, err := s.o.Catalog.StoreFiles(ctx, b.Owner, storeID)
	if err != nil {
		return nil, catalogErr(err, "", "", "")
	}
	for i := range files {
		f := &files[i]
		if f.BatchID != id || f.Status != StatusInProgress {
			continue
		}
		s.cancel(storeID, f.ID)
		if err := s.o.Index.DeleteFile(ctx, storeID, f.ID); err != nil {
			return nil, indexErr(err)
		}
		f.Status = StatusCancelled
		if err := s.o.Catalog.PutStoreFile(ctx, f); err != nil {
			return nil, catalogErr(err, "", "", "")
		}
	}
	return s.describeBatch(ctx, b)
}
