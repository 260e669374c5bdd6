package retrieval

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/vector"
)

// OpenAI's chunking defaults and bounds, in tokens.
const (
	AutoChunkTokens   = 800
	AutoOverlapTokens = 400
	MinChunkTokens    = 100
	MaxChunkTokens    = 4096
)

// Bounds of metadata, attributes and searches, as OpenAI's.
const (
	maxMetadataKeys    = 16
	maxKeyLen          = 64
	maxMetadataValue   = 512
	maxNameLen         = 256
	maxBatchFiles      = 500
	DefaultMaxResults  = 10
	MaxResults         = 50
	maxExpiresDays     = 365
	maxQueryBytes      = 4096
	defaultListLimit   = 20
	maxListLimit       = 100
	maxAttributeValue  = 512
	maxFileIDsOnCreate = 500
)

// ChunkingRequest is a chunking_strategy as sent: auto, or static with its sizes.
type ChunkingRequest struct {
	Type   string  `json:"type"`
	Static *Static `json:"static"`
}

// resolve checks the strategy at param and returns the sizes it stands for (nil is
// auto).
func (c *ChunkingRequest) resolve(param string) (Chunking, error) {
	auto := Chunking{Type: "static", Static: &Static{MaxChunkSizeTokens: AutoChunkTokens, ChunkOverlapTokens: AutoOverlapTokens}}
	if c == nil {
		return auto, nil
	}
	switch c.Type {
	case "auto":
		if c.Static != nil {
			return Chunking{}, infer.Invalid(param+".static", "an auto chunking strategy has no static sizes")
		}
		return auto, nil
	case "static":
	default:
		return Chunking{}, infer.Invalid(param+".type", "chunking_strategy type must be auto or static, got %q", c.Type)
	}
	s := c.Static
	if s == nil {
		return Chunking{}, infer.Invalid(param+".static", "a static chunking strategy needs static.max_chunk_size_tokens and static.chunk_overlap_tokens")
	}
	if s.MaxChunkSizeTokens < MinChunkTokens || s.MaxChunkSizeTokens > MaxChunkTokens {
		return Chunking{}, infer.Invalid(param+".static.max_chunk_size_tokens", "max_chunk_size_tokens must be from %d to %d, got %d",
			MinChunkTokens, MaxChunkTokens, s.MaxChunkSizeTokens)
	}
	if s.ChunkOverlapTokens < 0 || s.ChunkOverlapTokens > s.MaxChunkSizeTokens/2 {
		return Chunking{}, infer.Invalid(param+".static.chunk_overlap_tokens", "chunk_overlap_tokens must be from 0 to half of max_chunk_size_tokens (%d), got %d",
			s.MaxChunkSizeTokens/2, s.ChunkOverlapTokens)
	}
	return Chunking{Type: "static", Static: &Static{MaxChunkSizeTokens: s.MaxChunkSizeTokens, ChunkOverlapTokens: s.ChunkOverlapTokens}}, nil
}

// CreateStoreRequest is the body of POST /v1/vector_stores.
type CreateStoreRequest struct {
	Name             *string           `json:"name"`
	FileIDs          []string          `json:"file_ids"`
	ExpiresAfter     *ExpiresAfter     `json:"expires_after"`
	ChunkingStrategy *ChunkingRequest  `json:"chunking_strategy"`
	Metadata         map[string]string `json:"metadata"`
	Description      string            `json:"description"`
	// EmbeddingModel is HXP's extension: the model that embeds the store's chunks
	// (default: the configured one).
	EmbeddingModel string `json:"embedding_model"`
}

// UpdateStoreRequest is the body of POST /v1/vector_stores/{id}: fields sent replace
// the store's; expires_after null removes the policy.
type UpdateStoreRequest struct {
	Name         *string           `json:"name"`
	ExpiresAfter json.RawMessage   `json:"expires_after"`
	Metadata     map[string]string `json:"metadata"`
}

// AttachRequest is the body of POST /v1/vector_stores/{id}/files.
type AttachRequest struct {
	FileID           string           `json:"file_id"`
	Attributes       map[string]any   `json:"attributes"`
	ChunkingStrategy *ChunkingRequest `json:"chunking_strategy"`
}

// BatchRequest is the body of POST /v1/vector_stores/{id}/file_batches: file_ids
// sharing attributes and chunking_strategy, or files each with its own.
type BatchRequest struct {
	FileIDs          []string         `json:"file_ids"`
	Files            []AttachRequest  `json:"files"`
	Attributes       map[string]any   `json:"attributes"`
	ChunkingStrategy *ChunkingRequest `json:"chunking_strategy"`
}

// SearchRequest is the body of POST /v1/vector_stores/{id}/search.
type SearchRequest struct {
	Query          json.RawMessage `json:"query"`
	MaxNumResults  *int            `json:"max_num_results"`
	Filters        *FilterJSON     `json:"filters"`
	RankingOptions *struct {
		Ranker         string   `json:"ranker"`
		ScoreThreshold *float64 `json:"score_threshold"`
	} `json:"ranking_options"`
	RewriteQuery bool `json:"rewrite_query"`
}

// FilterJSON is a filter as sent: a comparison {type, key, value} or a compound
// {type: and|or, filters}.
type FilterJSON struct {
	Type    string       `json:"type"`
	Key     string       `json:"key"`
	Value   any          `json:"value"`
	Filters []FilterJSON `json:"filters"`
}

// filter converts f to the index's filter.
func (f *FilterJSON) filter() vector.Filter {
	out := vector.Filter{Type: f.Type, Key: f.Key, Value: f.Value}
	for i := range f.Filters {
		out.Filters = append(out.Filters, f.Filters[i].filter())
	}
	return out
}

// Search is a checked search.
type Search struct {
	Query     string
	Limit     int
	Filter    *vector.Filter
	Threshold float32
}

// Decode parses a JSON request body into v, with the wire format's errors (the field
// at fault named).
func Decode(body []byte, v any) error { return openai.Unmarshal(body, v) }

// Check validates a search request.
func (r *SearchRequest) Check() (*Search, error) {
	var s Search
	q := bytes.TrimSpace(r.Query)
	if len(q) == 0 || string(q) == "null" {
		return nil, infer.Invalid("query", "query is required: the text to search for")
	}
	if err := json.Unmarshal(q, &s.Query); err != nil {
		return nil, infer.Invalid("query", "query must be a string (a list of queries is not supported)")
	}
	if strings.TrimSpace(s.Query) == "" || len(s.Query) > maxQueryBytes {
		return nil, infer.Invalid("query", "query must be non-empty text of at most %d bytes", maxQueryBytes)
	}
	if err := infer.CheckText(s.Query, "query"); err != nil {
		return nil, err
	}
	s.Limit = DefaultMaxResults
	if r.MaxNumResults != nil {
		s.Limit = *r.MaxNumResults
		if s.Limit < 1 || s.Limit > MaxResults {
			return nil, infer.Invalid("max_num_results", "max_num_results must be from 1 to %d, got %d", MaxResults, s.Limit)
		}
	}
	if r.RewriteQuery {
		return nil, infer.Invalid("rewrite_query", "rewrite_query is not supported by this server; send false or leave it out")
	}
	if ro := r.RankingOptions; ro != nil {
		if ro.Ranker != "" && ro.Ranker != "auto" && ro.Ranker != "none" {
			return nil, infer.Invalid("ranking_options.ranker", "ranker must be auto or none (exact cosine similarity), got %q", ro.Ranker)
		}
		if t := ro.ScoreThreshold; t != nil {
			if *t < 0 || *t > 1 {
				return nil, infer.Invalid("ranking_options.score_threshold", "score_threshold must be from 0 to 1, got %v", *t)
			}
			s.Threshold = float32(*t)
		}
	}
	if r.Filters != nil {
		f := r.Filters.filter()
		if err := f.Validate(); err != nil {
			return nil, filterError(err)
		}
		s.Filter = &f
	}
	return &s, nil
}

// filterError turns the index's validation error ("invalid: filters.key: missing")
// into the client's error naming the field.
func filterError(err error) error {
	msg := strings.TrimPrefix(err.Error(), vector.ErrInvalid.Error()+": ")
	param, _, ok := strings.Cut(msg, ": ")
	if !ok || !errors.Is(err, vector.ErrInvalid) {
		param = "filters"
	}
	return infer.Invalid(param, "%s", msg)
}

// checkMetadata validates a store's metadata (at most 16 keys of 64 characters,
// values of 512).
func checkMetadata(m map[string]string) error {
	if len(m) > maxMetadataKeys {
		return infer.Invalid("metadata", "metadata has %d keys; at most %d are allowed", len(m), maxMetadataKeys)
	}
	for k, v := range m {
		if k == "" || len(k) > maxKeyLen {
			return infer.Invalid("metadata", "metadata keys must be 1 to %d characters, got %q", maxKeyLen, k)
		}
		if len(v) > maxMetadataValue {
			return infer.Invalid("metadata."+k, "metadata values must be at most %d characters", maxMetadataValue)
		}
	}
	return nil
}

// checkAttributes validates a file's attributes at param: at most 16 keys of 64
// characters, values strings (512 characters), numbers or booleans.
func checkAttributes(param string, a map[string]any) error {
	if len(a) > maxMetadataKeys {
		return infer.Invalid(param, "attributes has %d keys; at most %d are allowed", len(a), maxMetadataKeys)
	}
	for k, v := range a {
		if k == "" || len(k) > maxKeyLen {
			return infer.Invalid(param, "attribute keys must be 1 to %d characters, got %q", maxKeyLen, k)
		}
		switch x := v.(type) {
		case string:
			if len(x) > maxAttributeValue {
				return infer.Invalid(param+"."+k, "attribute strings must be at most %d characters", maxAttributeValue)
			}
		case bool, float64:
		default:
			return infer.Invalid(param+"."+k, "attribute values must be strings, numbers or booleans, got %s", jsonKind(v))
		}
	}
	return nil
}

// jsonKind names a decoded JSON value's kind.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// checkExpires validates an expires_after policy.
func checkExpires(e *ExpiresAfter) error {
	if e == nil {
		return nil
	}
	if e.Anchor != "last_active_at" {
		return infer.Invalid("expires_after.anchor", "anchor must be last_active_at, got %q", e.Anchor)
	}
	if e.Days < 1 || e.Days > maxExpiresDays {
		return infer.Invalid("expires_after.days", "days must be from 1 to %d, got %d", maxExpiresDays, e.Days)
	}
	return nil
}

// checkName validates a store's name.
func checkName(name *string) error {
	if name != nil && (len(*name) > maxNameLen || !utf8.ValidString(*name)) {
		return infer.Invalid("name", "name must be valid text of at most %d bytes", maxNameLen)
	}
	return nil
}

// ListParams are a list request's query parameters.
type ListParams struct {
	Limit int
	After string
	// Before lists the items before this id (the page before After's).
	Before string
	// Desc lists the newest first (OpenAI's default).
	Desc bool
	// Status keeps a store's files of this status only ("" keeps all).
	Status string
	// Purpose keeps files of this purpose only ("" keeps all).
	Purpose string
}

// ParseList checks a list request's limit (1..100, default 20), order (asc|desc,
// default desc) and filter (a status, for a store's files).
func ParseList(limit, order, after, before, filter string) (ListParams, error) {
	p := ListParams{Limit: defaultListLimit, After: after, Before: before, Desc: true}
	if limit != "" {
		n, err := parseInt(limit)
		if err != nil || n < 1 || n > maxListLimit {
			return p, infer.Invalid("limit", "limit must be from 1 to %d, got %q", maxListLimit, limit)
		}
		p.Limit = n
	}
	switch order {
	case "", "desc":
	case "asc":
		p.Desc = false
	default:
		return p, infer.Invalid("order", "order must be asc or desc, got %q", order)
	}
	switch filter {
	case "", StatusInProgress, StatusCompleted, StatusFailed, StatusCancelled:
		p.Status = filter
	default:
		return p, infer.Invalid("filter", "filter must be in_progress, completed, failed or cancelled, got %q", filter)
	}
	return p, nil
}

func parseInt(s string) (int, error) {
	var n int
	_, err := fmt.Sscanf(s, "%d", &n)
	if err == nil && fmt.Sprint(n) != s {
		err = errors.New("not an integer")
	}
	return n, err
}
