package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Errors returned by LookupKey and RevokeKey. They are distinct so that the gateway can log
// why a key was refused; clients should see one "invalid API key" answer for all of them.
var (
	// ErrKeyNotFound means no key has the presented id, the secret does not match, or the
	// string is not shaped like a key.
	ErrKeyNotFound = errors.New("api key not found")
	// ErrKeyRevoked means the key exists but was revoked or disabled.
	ErrKeyRevoked = errors.New("api key revoked")
	// ErrKeyExpired means the key exists but its expiry time has passed.
	ErrKeyExpired = errors.New("api key expired")
)

// Key is a stored API key, without its secret.
type Key struct {
	// ID is the public part of the key: safe to show, log and use in URLs.
	ID string `json:"id"`
	// Name is the human label given at creation.
	Name string `json:"name"`
	// AllowedModels restricts the key to these models; empty allows every model.
	AllowedModels []string `json:"allowed_models"`
	// RPM is the requests-per-minute limit; 0 means unlimited.
	RPM int `json:"rpm"`
	// TPM is the tokens-per-minute limit; 0 means unlimited.
	TPM int `json:"tpm"`
	// MonthlyTokenBudget caps tokens per calendar month (UTC); 0 means unlimited.
	MonthlyTokenBudget int64 `json:"monthly_token_budget"`
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Disabled is true once the key has been revoked.
	Disabled bool `json:"disabled"`
	// RevokedAt is when the key was revoked; zero while it is active.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// CreatedAt is when the key was created.
	CreatedAt time.Time `json:"created_at"`
	// Weight is the key's share of a busy model relative to other keys (1: equal).
	Weight float64 `json:"weight"`
	// Priority is the class of the key's requests: PriorityInteractive or PriorityBatch.
	Priority string `json:"priority"`
}

// AllowsModel reports whether the key may be used with model.
func (k Key) AllowsModel(model string) bool {
	return len(k.AllowedModels) == 0 || slices.Contains(k.AllowedModels, model)
}

// Expired reports whether the key has expired at now.
func (k Key) Expired(now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)
}

// keyColumns is the column list that scanKey reads, in order.
const keyColumns = `id, name, allowed_models, rpm, tpm, monthly_token_budget, expires_at, disabled, revoked_at, created_at, weight, priority`

// scanKey reads one row of keyColumns.
func scanKey(row pgx.Row) (Key, error) {
	var k Key
	var expires, revoked *time.Time
	err := row.Scan(&k.ID, &k.Name, &k.AllowedModels, &k.RPM, &k.TPM, &k.MonthlyTokenBudget,
		&expires, &k.Disabled, &revoked, &k.CreatedAt, &k.Weight, &k.Priority)
	if err != nil {
		return Key{}, err
	}
	if expires != nil {
		k.ExpiresAt = *expires
	}
	if revoked != nil {
		k.RevokedAt = *revoked
	}
	if k.AllowedModels == nil {
		k.AllowedModels = []string{}
	}
	return k, nil
}

// maxIDTries is how often CreateKey draws a new id when the drawn one is taken (which, with
// 62^8 ids, practically never happens).
const maxIDTries = 3

// CreateKey validates spec, stores a new key and returns its secret together with the stored
// key. The secret exists only in the return value: show it to the user once; it cannot be
// recovered later.
func (db *DB) CreateKey(ctx context.Context, spec KeySpec) (secret string, key Key, err error) {
	if err := spec.Validate(time.Now()); err != nil {
		return "", Key{}, fmt.Errorf("postgres: create key: %w", err)
	}
	models := spec.AllowedModels
	if models == nil {
		models = []string{}
	}
	var expires *time.Time
	if !spec.ExpiresAt.IsZero() {
		expires = &spec.ExpiresAt
	}
	for try := 0; ; try++ {
		sec, id, err := newKeySecret()
		if err != nil {
			return "", Key{}, fmt.Errorf("postgres: create key: %w", err)
		}
		row := db.pool.QueryRow(ctx, `INSERT INTO api_keys
			(id, secret_hash, name, allowed_models, rpm, tpm, monthly_token_budget, expires_at, weight, priority)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			RETURNING `+keyColumns,
			id, hashKeySecret(sec), spec.Name, models, spec.RPM, spec.TPM, spec.MonthlyTokenBudget, expires, spec.weight(), spec.priority())
		key, err := scanKey(row)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" && try+1 < maxIDTries {
			continue // id taken: draw another
		}
		if err != nil {
			return "", Key{}, fmt.Errorf("postgres: create key: %w", err)
		}
		db.log.Info().Str("key_id", key.ID).Str("name", key.Name).Msg("api key created")
		return sec, key, nil
	}
}

// ListKeys returns every key, revoked ones included, oldest first.
func (db *DB) ListKeys(ctx context.Context) ([]Key, error) {
	rows, err := db.pool.Query(ctx, "SELECT "+keyColumns+" FROM api_keys ORDER BY created_at, id")
	if err != nil {
		return nil, fmt.Errorf("postgres: list keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list keys: %w", err)
	}
	return keys, nil
}

// GetKey returns the key with the given public id, or ErrKeyNotFound.
func (db *DB) GetKey(ctx context.Context, id string) (Key, error) {
	k, err := scanKey(db.pool.QueryRow(ctx, "SELECT "+keyColumns+" FROM api_keys WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("postgres: get key %s: %w", id, ErrKeyNotFound)
	}
	if err != nil {
		return Key{}, fmt.Errorf("postgres: get key %s: %w", id, err)
	}
	return k, nil
}

// RevokeKey disables the key with the given public id. Revoking a revoked key is a no-op; an
// unknown id gives ErrKeyNotFound.
func (db *DB) RevokeKey(ctx context.Context, id string) error {
	tag, err := db.pool.Exec(ctx, `UPDATE api_keys
		SET disabled = true, revoked_at = COALESCE(revoked_at, now())
		WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("postgres: revoke key %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: revoke key %s: %w", id, ErrKeyNotFound)
	}
	db.log.Info().Str("key_id", id).Msg("api key revoked")
	return nil
}

// LookupKey authenticates a presented key secret and returns the key when it is valid now.
// It returns an error wrapping ErrKeyNotFound, ErrKeyRevoked or ErrKeyExpired when the key
// must be refused, and another error when the database cannot answer. The secret is never
// part of an error or a log line.
func (db *DB) LookupKey(ctx context.Context, secret string) (Key, error) {
	id, ok := parseKeySecret(secret)
	if !ok {
		return Key{}, fmt.Errorf("postgres: lookup key: malformed key: %w", ErrKeyNotFound)
	}
	var hash []byte
	row := db.pool.QueryRow(ctx, "SELECT secret_hash, "+keyColumns+" FROM api_keys WHERE id = $1", id)
	k, err := scanKey(scanPrefix{row: row, first: &hash})
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("postgres: lookup key %s: %w", id, ErrKeyNotFound)
	}
	if err != nil {
		return Key{}, fmt.Errorf("postgres: lookup key %s: %w", id, err)
	}
	if !secretMatches(secret, hash) {
		return Key{}, fmt.Errorf("postgres: lookup key %s: secret does not match: %w", id, ErrKeyNotFound)
	}
	if k.Disabled {
		return Key{}, fmt.Errorf("postgres: lookup key %s: %w", id, ErrKeyRevoked)
	}
	if k.Expired(time.Now()) {
		return Key{}, fmt.Errorf("postgres: lookup key %s: %w", id, ErrKeyExpired)
	}
	return k, nil
}

// scanPrefix is a pgx.Row whose first column goes to first and the rest to the caller's
// destinations, so scanKey can be reused for queries with one extra leading column.
type scanPrefix struct {
	row   pgx.Row
	first any
}

// Scan implements pgx.Row.
func (s scanPrefix) Scan(dest ...any) error {
	return s.row.Scan(append([]any{s.first}, dest...)...)
}
