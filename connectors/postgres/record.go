package postgres

import (
	"math"
	"strings"
	"time"
)

// UsageRecord is one request in the usage ledger.
type UsageRecord struct {
	// RequestID identifies the request; the ledger stores each request id once, so a record
	// written twice (a retry, a replayed spool) counts once. An empty id gets a random one.
	RequestID string `json:"request_id"`
	// KeyID is the public id of the API key that made the request.
	KeyID string `json:"key_id"`
	// Model is the model the request was routed to.
	Model string `json:"model"`
	// PromptTokens is the number of prompt tokens processed.
	PromptTokens int `json:"prompt_tokens"`
	// CompletionTokens is the number of tokens generated.
	CompletionTokens int `json:"completion_tokens"`
	// LatencyMS is the request's duration in milliseconds.
	LatencyMS int `json:"latency_ms"`
	// StatusCode is the HTTP status returned to the client.
	StatusCode int `json:"status_code"`
	// CreatedAt is when the request arrived; zero means when it was recorded.
	CreatedAt time.Time `json:"created_at"`
}

// TotalTokens returns prompt plus completion tokens.
func (r UsageRecord) TotalTokens() int64 {
	return int64(r.PromptTokens) + int64(r.CompletionTokens)
}

// normalize makes a record acceptable to the usage_records table, so that one bad record can
// never block a batch (and, through the spool, every later batch): counts are clamped into
// the columns' ranges and text is made valid UTF-8 without NUL bytes.
func (r *UsageRecord) normalize(now time.Time, newID func() string) {
	r.RequestID = cleanText(r.RequestID)
	if r.RequestID == "" {
		r.RequestID = newID()
	}
	r.KeyID = cleanText(r.KeyID)
	r.Model = cleanText(r.Model)
	r.PromptTokens = clampInt(r.PromptTokens, 0, math.MaxInt32)
	r.CompletionTokens = clampInt(r.CompletionTokens, 0, math.MaxInt32)
	r.LatencyMS = clampInt(r.LatencyMS, 0, math.MaxInt32)
	r.StatusCode = clampInt(r.StatusCode, 0, math.MaxInt16)
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now
	}
	r.CreatedAt = r.CreatedAt.UTC()
}

// cleanText removes what PostgreSQL's text type rejects.
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "")
}

// clampInt limits v to [lo, hi].
func clampInt(v, lo, hi int) int {
	return min(max(v, lo), hi)
}
