package retrieval

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/vector"
)

// Search embeds the query with the store's model (charged to the caller) and returns
// the closest chunks of the caller's store, best first.
func (s *Service) Search(ctx context.Context, storeID string, r *SearchRequest) (*SearchPage, error) {
	q, err := r.Check()
	if err != nil {
		return nil, err
	}
	st, err := s.activeStore(ctx, storeID)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	data, err := s.search(ctx, st, q)
	if err != nil {
		return nil, err
	}
	s.o.Metrics.searched(time.Since(start))
	s.touch(ctx, st)
	return &SearchPage{Object: "vector_store.search_results.page", SearchQuery: q.Query, Data: data}, nil
}

// search runs a checked query on one store of the caller.
func (s *Service) search(ctx context.Context, st *VectorStore, q *Search) ([]SearchResult, error) {
	embs, err := s.o.Models.Embed(ctx, &infer.EmbedRequest{Model: st.EmbeddingModel, Inputs: []infer.Prompt{{Text: q.Query}}})
	if err != nil {
		e := infer.AsError(err, "query")
		if e.Kind == infer.ContextOverflow || e.Kind == infer.InvalidArgument {
			e = &infer.Error{Kind: e.Kind, Param: "query", Code: e.Code, Message: "query: " + e.Message, Err: err}
		}
		return nil, e
	}
	hits, err := s.o.Index.Search(ctx, vector.Query{StoreID: st.ID, Vector: embs.Vectors[0], Limit: q.Limit, Filter: q.Filter,
		ScoreThreshold: q.Threshold})
	if err != nil {
		if errors.Is(err, vector.ErrInvalid) {
			return nil, filterError(err)
		}
		return nil, indexErr(err)
	}
	names := map[string]string{}
	data := make([]SearchResult, 0, len(hits))
	for _, h := range hits {
		name, ok := names[h.FileID]
		if !ok {
			if f, err := s.o.Catalog.File(ctx, st.Owner, h.FileID); err == nil {
				name = f.Filename
			}
			names[h.FileID] = name
		}
		attrs := h.Attributes
		if attrs == nil {
			attrs = map[string]any{}
		}
		data = append(data, SearchResult{FileID: h.FileID, Filename: name, Score: float64(h.Score), Attributes: attrs,
			Content: []TextPart{{Type: "text", Text: h.Text}}})
	}
	return data, nil
}

// SearchStores searches the caller's stores ids (the Responses API's file_search
// tool): the best r.MaxNumResults chunks over all of them, each store's query embedded
// with its model. An unknown store is the NotFound of its id.
func (s *Service) SearchStores(ctx context.Context, ids []string, r *SearchRequest) ([]SearchResult, error) {
	q, err := r.Check()
	if err != nil {
		return nil, err
	}
	var all []SearchResult
	for _, id := range ids {
		st, err := s.activeStore(ctx, id)
		if err != nil {
			return nil, err
		}
		got, err := s.search(ctx, st, q)
		if err != nil {
			return nil, err
		}
		all = append(all, got...)
	}
	slices.SortStableFunc(all, func(a, b SearchResult) int { return cmp.Compare(b.Score, a.Score) })
	return all[:min(len(all), q.Limit)], nil
}
