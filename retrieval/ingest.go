package retrieval

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/vector"
)

// job is one file's ingestion into one store.
type job struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Ingestion retries: an embeddings request refused for load or rate is retried this
// many times, waiting its Retry-After (at least minRetryWait, at most maxRetryWait).
const (
	embedAttempts = 8
	minRetryWait  = 200 * time.Millisecond
	maxRetryWait  = 30 * time.Second
	// minSpan is the smallest chunk tried when a model refuses a chunk as too long.
	minSpan = 16
)

func jobKey(storeID, fileID string) string { return storeID + "/" + fileID }

// Start finishes the ingestions a previous run left in_progress (a kill or a crash
// mid-ingestion): their partial chunks are deleted and the files ingested again from
// the start, charged to the key that attached them. The decision is documented: a
// file is never reported completed with chunks missing, and a restart needs no
// client action.
func (s *Service) Start(ctx context.Context) error {
	left, err := s.o.Catalog.Unfinished(ctx)
	if err != nil {
		return fmt.Errorf("retrieval: list unfinished ingestions: %w", err)
	}
	for i := range left {
		vf := &left[i]
		if err := s.o.Index.DeleteFile(ctx, vf.VectorStoreID, vf.ID); err != nil {
			return fmt.Errorf("retrieval: delete the partial chunks of %s in %s: %w", vf.ID, vf.VectorStoreID, err)
		}
		var caller *infer.Caller
		if vf.Owner != "" {
			caller = &infer.Caller{ID: vf.Owner}
		}
		s.o.Log.Info().Str("vector_store_id", vf.VectorStoreID).Str("file_id", vf.ID).
			Msg("ingestion interrupted by a restart: partial chunks deleted, ingesting again")
		s.enqueue(caller, vf)
	}
	return nil
}

// enqueue starts vf's ingestion in the background; at most Options.Workers run at
// once, the others wait their turn.
func (s *Service) enqueue(caller *infer.Caller, vf *VectorStoreFile) {
	ctx, cancel := context.WithCancel(s.ctx)
	j := &job{cancel: cancel, done: make(chan struct{})}
	k := jobKey(vf.VectorStoreID, vf.ID)
	s.mu.Lock()
	prev := s.jobs[k] // a concurrent attach of the same file: this one replaces it
	s.jobs[k] = j
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(j.done)
		defer cancel()
		defer func() {
			s.mu.Lock()
			if s.jobs[k] == j {
				delete(s.jobs, k)
			}
			s.mu.Unlock()
		}()
		if prev != nil {
			prev.cancel()
			<-prev.done
		}
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-s.sem }()
		s.ingest(ctx, caller, vf)
	}()
}

// cancel stops the ingestion of storeID/fileID, if one runs, and waits for it to end.
func (s *Service) cancel(storeID, fileID string) {
	s.mu.Lock()
	j := s.jobs[jobKey(storeID, fileID)]
	s.mu.Unlock()
	if j != nil {
		j.cancel()
		<-j.done
	}
}

// ingest chunks, embeds and stores one file, then records the outcome. Stopped by a
// cancel, it records nothing (the canceller does); stopped by Close, the file stays
// in_progress for the next Start.
func (s *Service) ingest(ctx context.Context, caller *infer.Caller, vf *VectorStoreFile) {
	start := time.Now()
	log := s.o.Log.With().Str("vector_store_id", vf.VectorStoreID).Str("file_id", vf.ID).Logger()
	chunks, err := s.index(ctx, caller, vf)
	if ctx.Err() != nil {
		log.Info().Msg("ingestion stopped")
		return
	}
	status := StatusCompleted
	if err != nil {
		status = StatusFailed
		vf.LastError = lastError(err)
		vf.Chunks, vf.UsageBytes = 0, 0
		if derr := s.o.Index.DeleteFile(context.WithoutCancel(ctx), vf.VectorStoreID, vf.ID); derr != nil {
			log.Error().Err(derr).Msg("delete the chunks of a failed ingestion")
		}
		log.Warn().Err(err).Msg("ingestion failed")
	} else {
		vf.Chunks, vf.UsageBytes = chunks.count, chunks.bytes
		log.Info().Int("chunks", chunks.count).Dur("elapsed", time.Since(start)).Msg("ingestion completed")
	}
	vf.Status = status
	if err := s.o.Catalog.PutStoreFile(context.WithoutCancel(ctx), vf); err != nil {
		log.Error().Err(err).Msg("record the outcome of an ingestion")
	}
	s.o.Metrics.ingested(status, time.Since(start))
}

// lastError is the client's view of an ingestion failure.
func lastError(err error) *LastError {
	var e *infer.Error
	if errors.As(err, &e) && e.Kind == infer.InvalidArgument {
		return &LastError{Code: "invalid_file", Message: e.Message}
	}
	return &LastError{Code: "server_error", Message: err.Error()}
}

// stored counts what an ingestion stored.
type stored struct {
	count int
	bytes int64
}

// index stores every chunk of vf and returns how many; the file's earlier chunks
// are replaced (chunk ids are fixed per store, file and position) and any beyond the
// new count deleted first.
func (s *Service) index(ctx context.Context, caller *infer.Caller, vf *VectorStoreFile) (stored, error) {
	st, err := s.o.Catalog.Store(ctx, vf.Owner, vf.VectorStoreID)
	if err != nil {
		return stored{}, fmt.Errorf("read vector store: %w", err)
	}
	f, err := s.o.Catalog.File(ctx, vf.Owner, vf.ID)
	if err != nil {
		return stored{}, fmt.Errorf("read file: %w", err)
	}
	content, err := s.o.Catalog.Content(ctx, vf.Owner, vf.ID)
	if err != nil {
		return stored{}, fmt.Errorf("read file content: %w", err)
	}
	text := extract(f.ContentType, content)
	if text == "" {
		return stored{}, infer.Invalid("file", "the file has no text to index")
	}
	if err := s.o.Index.DeleteFile(ctx, vf.VectorStoreID, vf.ID); err != nil {
		return stored{}, fmt.Errorf("delete earlier chunks: %w", err)
	}
	toks, err := s.o.Models.Tokenize(ctx, &infer.TokenizeRequest{Model: st.EmbeddingModel, Prompt: text})
	if err != nil {
		return stored{}, fmt.Errorf("tokenize with %s: %w", st.EmbeddingModel, err)
	}
	size := min(vf.ChunkingStrategy.Static.MaxChunkSizeTokens, s.spanOf(st.EmbeddingModel, toks.MaxModelLen))
	for {
		got, err := s.embedChunks(ctx, caller, st, vf, toks.Tokens, size, min(vf.ChunkingStrategy.Static.ChunkOverlapTokens, size/2))
		var e *infer.Error
		if errors.As(err, &e) && e.Kind == infer.ContextOverflow && size/2 >= minSpan {
			// The model embeds fewer tokens at once than its context: halve the chunks
			// and start again (the same ids are overwritten, the rest deleted).
			size /= 2
			s.mu.Lock()
			s.span[st.EmbeddingModel] = size
			s.mu.Unlock()
			if err := s.o.Index.DeleteFile(ctx, vf.VectorStoreID, vf.ID); err != nil {
				return stored{}, fmt.Errorf("delete earlier chunks: %w", err)
			}
			s.o.Log.Info().Str("model", st.EmbeddingModel).Int("chunk_tokens", size).Msg("the model refused a chunk as too long: chunking smaller")
			continue
		}
		return got, err
	}
}

// spanOf is the largest chunk to try with model: what it embedded before, else its
// context less room for the tokens it adds.
func (s *Service) spanOf(model string, ctxLen int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.span[model]; ok {
		return n
	}
	return max(ctxLen-8, minSpan)
}

// embedChunks cuts toks into windows of size tokens overlapping by overlap, and
// embeds and stores them in batches.
func (s *Service) embedChunks(ctx context.Context, caller *infer.Caller, st *VectorStore, vf *VectorStoreFile, toks []engine.Token, size, overlap int) (stored, error) {
	var out stored
	var batch []vector.Point
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		inputs := make([]infer.Prompt, len(batch))
		for i := range batch {
			inputs[i] = infer.Prompt{Text: batch[i].Text}
		}
		embs, err := s.embed(ctx, caller, &infer.EmbedRequest{Model: st.EmbeddingModel, Inputs: inputs})
		if err != nil {
			return err
		}
		for i := range batch {
			batch[i].Vector = embs.Vectors[i]
		}
		if err := s.o.Index.Upsert(ctx, batch); err != nil {
			return fmt.Errorf("store chunks: %w", err)
		}
		out.count += len(batch)
		s.o.Metrics.embedded(len(batch))
		s.o.Log.Debug().Str("vector_store_id", st.ID).Str("file_id", vf.ID).Int("chunks_stored", out.count).Msg("ingestion progress")
		batch = batch[:0]
		return nil
	}
	for startTok := 0; startTok < len(toks); {
		end := min(startTok+size, len(toks))
		text, err := s.o.Models.Detokenize(ctx, &infer.DetokenizeRequest{Model: st.EmbeddingModel, Tokens: toks[startTok:end]})
		if err != nil {
			return out, fmt.Errorf("detokenize a chunk: %w", err)
		}
		n := out.count + len(batch)
		batch = append(batch, vector.Point{ID: vector.ChunkID(st.ID, vf.ID, n), StoreID: st.ID, FileID: vf.ID, Chunk: n,
			Text: text.Text, Attributes: vf.Attributes})
		out.bytes += int64(len(text.Text))
		if len(batch) == s.o.EmbedBatch {
			if err := flush(); err != nil {
				return out, err
			}
		}
		if end == len(toks) {
			break
		}
		startTok = end - overlap
	}
	return out, flush()
}

// embed runs one embeddings request as caller, retrying refusals for load or rate.
func (s *Service) embed(ctx context.Context, caller *infer.Caller, r *infer.EmbedRequest) (*infer.Embeddings, error) {
	if caller != nil {
		ctx = infer.WithCaller(ctx, caller)
	}
	for attempt := 1; ; attempt++ {
		embs, err := s.o.Models.Embed(ctx, r)
		if err == nil {
			if len(embs.Vectors) != len(r.Inputs) {
				return nil, fmt.Errorf("embed: %d vectors for %d inputs", len(embs.Vectors), len(r.Inputs))
			}
			return embs, nil
		}
		e := infer.AsError(err, "")
		if attempt == embedAttempts || !(e.Kind.Retryable() || e.Kind == infer.RateLimited) {
			return nil, fmt.Errorf("embed with %s: %w", r.Model, err)
		}
		wait := min(max(e.RetryAfter, minRetryWait<<attempt), maxRetryWait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// embedder resolves a store's embedding model (requested, else the configured
// default, else the first served model that embeds) and its dimension, by embedding
// a probe as the caller: a model that cannot embed, or that the caller may not use,
// is refused here.
func (s *Service) embedder(ctx context.Context, requested string) (string, int, error) {
	model := requested
	if model == "" {
		model = s.o.DefaultModel
	}
	if model != "" {
		dim, err := s.dimension(ctx, model)
		if err != nil {
			e := infer.AsError(err, "embedding_model")
			if e.Kind == infer.NotFound || e.Kind == infer.InvalidArgument || e.Kind == infer.Internal {
				return "", 0, &infer.Error{Kind: infer.InvalidArgument, Param: "embedding_model", Code: "invalid_embedding_model",
					Message: fmt.Sprintf("the model %q cannot embed for this key: %s", model, e.Message), Err: err}
			}
			return "", 0, e
		}
		return model, dim, nil
	}
	for _, m := range s.o.Models.Models(ctx) {
		if dim, err := s.dimension(ctx, m.ID); err == nil {
			return m.ID, dim, nil
		}
	}
	return "", 0, infer.Invalid("embedding_model", "no model served here can embed for this key; name one in embedding_model")
}

// dimension is model's embedding width, learnt by embedding a probe once.
func (s *Service) dimension(ctx context.Context, model string) (int, error) {
	s.mu.Lock()
	dim, ok := s.dims[model]
	s.mu.Unlock()
	if ok {
		if c := infer.CallerFrom(ctx); c != nil && !c.AllowsModel(model) {
			return 0, infer.ModelNotFound(model)
		}
		return dim, nil
	}
	embs, err := s.o.Models.Embed(ctx, &infer.EmbedRequest{Model: model, Inputs: []infer.Prompt{{Text: "dimension probe"}}})
	if err != nil {
		return 0, err
	}
	if len(embs.Vectors) != 1 || len(embs.Vectors[0]) == 0 {
		return 0, fmt.Errorf("model %s returned no embedding", model)
	}
	s.mu.Lock()
	s.dims[model] = len(embs.Vectors[0])
	s.mu.Unlock()
	return len(embs.Vectors[0]), nil
}
