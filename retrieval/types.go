// Package retrieval is OpenAI's files and vector stores API on HXP's own models,
// transport-neutral: uploaded text files, vector stores that chunk, embed (through
// infer.Service, so through the scheduler and the caller's admission) and index them
// in a vector.Index, and search over them. Every object belongs to the key that
// created it (infer.CallerFrom(ctx).ID, "" without auth); another key gets the
// unknown id's NotFound on every call.
//
// The metadata and the file bytes live in a Catalog (Bolt, an embedded file under the
// data directory, or PostgreSQL); the chunks' vectors live in the vector.Index. A file
// attached to a store is in_progress until a background worker has stored every one
// of its chunks, then completed; or failed with last_error.
package retrieval

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// Object id prefixes, as OpenAI's.
const (
	filePrefix  = "file-"
	storePrefix = "vs_"
	batchPrefix = "vsfb_"
)

// newID is prefix followed by the creation time in microseconds (13 hex digits, so
// ids sort by creation) and 8 random bytes.
func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%013x%s", prefix, time.Now().UnixMicro(), hex.EncodeToString(b[:]))
}

// File is an uploaded file (POST /v1/files).
type File struct {
	ID        string `json:"id"`
	Object    string `json:"object"` // "file"
	Bytes     int64  `json:"bytes"`
	CreatedAt int64  `json:"created_at"`
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"`
	Status    string `json:"status"` // "processed"
	// ContentType is the text format the file was accepted as (an HXP extension):
	// text/plain, text/markdown, application/json or text/html.
	ContentType string `json:"content_type"`
	// Owner is the id of the key that uploaded it ("" without auth); never sent.
	Owner string `json:"-"`
}

// Status values of vector stores, their files and batches.
const (
	StatusInProgress = "in_progress"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
	StatusCancelled  = "cancelled"
	StatusExpired    = "expired"
)

// FileCounts counts a store's or a batch's files by status.
type FileCounts struct {
	InProgress int `json:"in_progress"`
	Completed  int `json:"completed"`
	Failed     int `json:"failed"`
	Cancelled  int `json:"cancelled"`
	Total      int `json:"total"`
}

// Add counts n files of status.
func (c *FileCounts) Add(status string, n int) {
	c.Total += n
	switch status {
	case StatusInProgress:
		c.InProgress += n
	case StatusCompleted:
		c.Completed += n
	case StatusFailed:
		c.Failed += n
	case StatusCancelled:
		c.Cancelled += n
	}
}

// ExpiresAfter is a store's expiration policy: Days after its last activity.
type ExpiresAfter struct {
	Anchor string `json:"anchor"` // "last_active_at"
	Days   int    `json:"days"`
}

// VectorStore is a collection of files indexed for search.
type VectorStore struct {
	ID           string            `json:"id"`
	Object       string            `json:"object"` // "vector_store"
	CreatedAt    int64             `json:"created_at"`
	Name         string            `json:"name"`
	UsageBytes   int64             `json:"usage_bytes"`
	FileCounts   FileCounts        `json:"file_counts"`
	Status       string            `json:"status"`
	ExpiresAfter *ExpiresAfter     `json:"expires_after"`
	ExpiresAt    *int64            `json:"expires_at"`
	LastActiveAt int64             `json:"last_active_at"`
	Metadata     map[string]string `json:"metadata"`
	// EmbeddingModel embeds the store's chunks and queries; Dimensions is its vectors'
	// width (HXP extensions; fixed when the store is created).
	EmbeddingModel string `json:"embedding_model"`
	Dimensions     int    `json:"embedding_dimensions"`
	Owner          string `json:"-"`
}

// expiry is when the store expires (Unix seconds), if it has a policy: days after its
// last activity.
func (st *VectorStore) expiry() (int64, bool) {
	if st.ExpiresAfter == nil {
		return 0, false
	}
	return st.LastActiveAt + int64(st.ExpiresAfter.Days)*86400, true
}

// LastError is why a file could not be indexed.
type LastError struct {
	// Code is server_error, unsupported_file or invalid_file.
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Chunking is a chunking_strategy as stored: always static, with the sizes used.
type Chunking struct {
	Type   string  `json:"type"` // "static" ("auto" only in requests)
	Static *Static `json:"static,omitempty"`
}

// Static are a static strategy's sizes, in tokens of the store's embedding model.
type Static struct {
	MaxChunkSizeTokens int `json:"max_chunk_size_tokens"`
	ChunkOverlapTokens int `json:"chunk_overlap_tokens"`
}

// VectorStoreFile is a file attached to a store.
type VectorStoreFile struct {
	ID               string         `json:"id"` // the file's id
	Object           string         `json:"object"`
	UsageBytes       int64          `json:"usage_bytes"`
	CreatedAt        int64          `json:"created_at"`
	VectorStoreID    string         `json:"vector_store_id"`
	Status           string         `json:"status"`
	LastError        *LastError     `json:"last_error"`
	ChunkingStrategy Chunking       `json:"chunking_strategy"`
	Attributes       map[string]any `json:"attributes"`
	// Chunks is how many chunks the file was split into (an HXP extension; 0 until
	// it is completed).
	Chunks int `json:"chunks"`
	// BatchID is the batch that attached it ("" for a single attach); not sent.
	BatchID string `json:"-"`
	Owner   string `json:"-"`
}

// FileBatch is a set of files attached in one request.
type FileBatch struct {
	ID            string     `json:"id"`
	Object        string     `json:"object"` // "vector_store.files_batch"
	CreatedAt     int64      `json:"created_at"`
	VectorStoreID string     `json:"vector_store_id"`
	Status        string     `json:"status"`
	FileCounts    FileCounts `json:"file_counts"`
	Owner         string     `json:"-"`
}

// Deleted is the answer of a delete.
type Deleted struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Deleted bool   `json:"deleted"`
}

// List is OpenAI's list shape.
type List[T any] struct {
	Object  string  `json:"object"` // "list"
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// SearchResult is one chunk found by a search.
type SearchResult struct {
	FileID     string         `json:"file_id"`
	Filename   string         `json:"filename"`
	Score      float64        `json:"score"`
	Attributes map[string]any `json:"attributes"`
	Content    []TextPart     `json:"content"`
}

// TextPart is a result's text.
type TextPart struct {
	Type string `json:"type"` // "text"
	Text string `json:"text"`
}

// SearchPage is the answer of a search.
type SearchPage struct {
	Object      string         `json:"object"` // "vector_store.search_results.page"
	SearchQuery string         `json:"search_query"`
	Data        []SearchResult `json:"data"`
	HasMore     bool           `json:"has_more"`
	NextPage    *string        `json:"next_page"`
}
