package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// UsageThisMonth returns the prompt plus completion tokens the key has used since the start of
// the current calendar month in UTC, for monthly budgets. Records still queued in a Ledger
// are not counted yet.
func (db *DB) UsageThisMonth(ctx context.Context, keyID string) (int64, error) {
	var tokens int64
	err := db.pool.QueryRow(ctx, `SELECT COALESCE(sum(prompt_tokens::bigint + completion_tokens), 0)
		FROM usage_records
		WHERE key_id = $1 AND created_at >= date_trunc('month', now(), 'UTC')`, keyID).Scan(&tokens)
	if err != nil {
		return 0, fmt.Errorf("postgres: usage this month of key %s: %w", keyID, err)
	}
	return tokens, nil
}

// UsageFilter selects ledger records; zero fields select everything.
type UsageFilter struct {
	// KeyID keeps only this key's records.
	KeyID string
	// Model keeps only this model's records.
	Model string
	// Since keeps records created at or after it.
	Since time.Time
	// Until keeps records created before it.
	Until time.Time
}

// UsageSummary aggregates the ledger for one key and model.
type UsageSummary struct {
	// KeyID is the key's public id.
	KeyID string `json:"key_id"`
	// Model is the model name.
	Model string `json:"model"`
	// Requests counts the records.
	Requests int64 `json:"requests"`
	// Errors counts the records with a status code of 400 or above.
	Errors int64 `json:"errors"`
	// PromptTokens sums the prompt tokens.
	PromptTokens int64 `json:"prompt_tokens"`
	// CompletionTokens sums the completion tokens.
	CompletionTokens int64 `json:"completion_tokens"`
	// TotalTokens is PromptTokens plus CompletionTokens.
	TotalTokens int64 `json:"total_tokens"`
	// AvgLatencyMS is the mean latency in milliseconds.
	AvgLatencyMS float64 `json:"avg_latency_ms"`
	// First and Last are the creation times of the oldest and newest records.
	First time.Time `json:"first"`
	// Last is the creation time of the newest record.
	Last time.Time `json:"last"`
}

// where renders the filter as a SQL condition with its arguments.
func (f UsageFilter) where() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if f.KeyID != "" {
		add("key_id = $%d", f.KeyID)
	}
	if f.Model != "" {
		add("model = $%d", f.Model)
	}
	if !f.Since.IsZero() {
		add("created_at >= $%d", f.Since)
	}
	if !f.Until.IsZero() {
		add("created_at < $%d", f.Until)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return "WHERE " + strings.Join(conds, " AND "), args
}

// Usage returns the ledger aggregated per key and model for the records the filter selects,
// ordered by key and model.
func (db *DB) Usage(ctx context.Context, f UsageFilter) ([]UsageSummary, error) {
	where, args := f.where()
	rows, err := db.pool.Query(ctx, `SELECT key_id, model, count(*),
			count(*) FILTER (WHERE status_code >= 400),
			COALESCE(sum(prompt_tokens), 0)::bigint, COALESCE(sum(completion_tokens), 0)::bigint,
			COALESCE(avg(latency_ms), 0)::float8, min(created_at), max(created_at)
		FROM usage_records `+where+`
		GROUP BY key_id, model
		ORDER BY key_id, model`, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: usage: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UsageSummary, error) {
		var s UsageSummary
		err := r.Scan(&s.KeyID, &s.Model, &s.Requests, &s.Errors, &s.PromptTokens, &s.CompletionTokens,
			&s.AvgLatencyMS, &s.First, &s.Last)
		s.TotalTokens = s.PromptTokens + s.CompletionTokens
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: usage: %w", err)
	}
	return out, nil
}

// UsageRecords returns up to limit records the filter selects, newest first; limit <= 0
// means 100.
func (db *DB) UsageRecords(ctx context.Context, f UsageFilter, limit int) ([]UsageRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	where, args := f.where()
	args = append(args, limit)
	rows, err := db.pool.Query(ctx, fmt.Sprintf(`SELECT request_id, key_id, model, prompt_tokens,
			completion_tokens, latency_ms, status_code, created_at
		FROM usage_records %s
		ORDER BY created_at DESC, id DESC
		LIMIT $%d`, where, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: usage records: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UsageRecord, error) {
		var u UsageRecord
		var status int16
		err := r.Scan(&u.RequestID, &u.KeyID, &u.Model, &u.PromptTokens, &u.CompletionTokens, &u.LatencyMS, &status, &u.CreatedAt)
		u.StatusCode = int(status)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: usage records: %w", err)
	}
	return out, nil
}
