package sched

import (
	"context"
	"fmt"
	"sync"

	"github.com/hxp-ai/hxp/engine"
)

// Embedder computes pooled, L2-normalised embeddings. Its context is created on first
// use (a model that never serves embeddings spends no memory on it) and calls are
// serialised: one batch of inputs at a time.
type Embedder struct {
	model  *engine.Model
	params engine.ContextParams

	mu    sync.Mutex
	ctx   *engine.Context
	batch *engine.Batch
}

// NewEmbedder prepares an embedder; params.Embeddings is forced on and UBatch set to
// Batch (pooling needs each input inside one micro-batch).
func NewEmbedder(m *engine.Model, params engine.ContextParams) *Embedder {
	params.Embeddings = true
	params.UBatch = params.Batch
	return &Embedder{model: m, params: params}
}

// MaxInputTokens is the longest input Embed accepts.
func (e *Embedder) MaxInputTokens() int { return min(e.params.SeqCtx, e.params.Batch) }

// Embed returns one vector per input, in order. Inputs are validated first; a too
// long input is ErrContextOverflow naming its index.
func (e *Embedder) Embed(ctx context.Context, inputs [][]engine.Token) ([][]float32, error) {
	if len(inputs) == 0 {
		return nil, fmt.Errorf("embeddings: no input: %w", ErrInvalidRequest)
	}
	for i, in := range inputs {
		if len(in) == 0 {
			return nil, fmt.Errorf("input[%d] is empty: %w", i, ErrInvalidRequest)
		}
		if len(in) > e.MaxInputTokens() {
			return nil, fmt.Errorf("input[%d] has %d tokens, more than the %d this model embeds at once: %w", i, len(in), e.MaxInputTokens(), ErrContextOverflow)
		}
		if err := e.model.CheckTokens(in); err != nil {
			return nil, fmt.Errorf("input[%d]: %w", i, err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx == nil {
		c, err := e.model.NewContext(e.params)
		if err != nil {
			return nil, fmt.Errorf("embeddings: %w", err)
		}
		b, err := engine.NewBatch(e.params.Batch)
		if err != nil {
			c.Close()
			return nil, err
		}
		e.ctx, e.batch = c, b
	}
	out := make([][]float32, len(inputs))
	for start := 0; start < len(inputs); {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e.batch.Clear()
		e.ctx.ClearAll()
		end := start
		for end < len(inputs) && end-start < e.params.Sequences && e.batch.Len()+len(inputs[end]) <= e.batch.Cap() {
			for p, t := range inputs[end] {
				if _, err := e.batch.Add(t, p, end-start, true); err != nil {
					return nil, err
				}
			}
			end++
		}
		if err := e.ctx.Decode(e.batch); err != nil {
			return nil, fmt.Errorf("embeddings: %w", err)
		}
		for i := start; i < end; i++ {
			v, err := e.ctx.Embedding(i - start)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		start = end
	}
	return out, nil
}

// Close frees the embedding context.
func (e *Embedder) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx != nil {
		e.batch.Free()
		e.ctx.Close()
		e.ctx, e.batch = nil, nil
	}
}
