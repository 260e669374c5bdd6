package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hxp-ai/hxp/responses"
)

// ResponseStore is the durable responses.Store: stored Responses API conversations
// in the responses table, shared by every gateway on the database.
type ResponseStore struct{ db *DB }

// Responses returns the database's response store.
func (db *DB) Responses() *ResponseStore { return &ResponseStore{db: db} }

var _ responses.Store = (*ResponseStore)(nil)

// Put stores r (an id already stored is replaced).
func (s *ResponseStore) Put(ctx context.Context, r *responses.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("postgres: encode response %s: %w", r.ID, err)
	}
	if _, err := s.db.pool.Exec(ctx, `INSERT INTO responses (id, caller_id, created_at, record) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET caller_id = excluded.caller_id, created_at = excluded.created_at, record = excluded.record`,
		r.ID, r.Caller, r.Created, b); err != nil {
		return fmt.Errorf("postgres: store response %s: %w", r.ID, err)
	}
	return nil
}

// Get returns the response id of caller, or responses.ErrNotFound.
func (s *ResponseStore) Get(ctx context.Context, id, caller string) (*responses.Record, error) {
	var b []byte
	err := s.db.pool.QueryRow(ctx, "SELECT record FROM responses WHERE id = $1 AND caller_id = $2", id, caller).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, responses.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: read response %s: %w", id, err)
	}
	var r responses.Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("postgres: decode response %s: %w", id, err)
	}
	return &r, nil
}

// Delete removes the response id of caller, or fails with responses.ErrNotFound.
func (s *ResponseStore) Delete(ctx context.Context, id, caller string) error {
	tag, err := s.db.pool.Exec(ctx, "DELETE FROM responses WHERE id = $1 AND caller_id = $2", id, caller)
	if err != nil {
		return fmt.Errorf("postgres: delete response %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return responses.ErrNotFound
	}
	return nil
}

// Sweep removes the responses created before cutoff.
func (s *ResponseStore) Sweep(ctx context.Context, cutoff time.Time) (int, error) {
	tag, err := s.db.pool.Exec(ctx, "DELETE FROM responses WHERE created_at < $1", cutoff)
	if err != nil {
		return 0, fmt.Errorf("postgres: sweep responses: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
