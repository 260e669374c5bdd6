package tenancy

import (
	"context"
	"crypto/subtle"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/connectors/redis"
	"github.com/hxp-ai/hxp/infer"
)

// KeyAdmin manages keys and reads usage; *postgres.DB implements it.
type KeyAdmin interface {
	CreateKey(ctx context.Context, spec postgres.KeySpec) (string, postgres.Key, error)
	ListKeys(ctx context.Context) ([]postgres.Key, error)
	GetKey(ctx context.Context, id string) (postgres.Key, error)
	RevokeKey(ctx context.Context, id string) error
	Usage(ctx context.Context, f postgres.UsageFilter) ([]postgres.UsageSummary, error)
}

// Admin is the key administration service, guarded by one admin key: front ends
// check a request's key with Authorize before calling the other methods. Without a
// database every method fails with Unavailable "no_database". Errors are
// *infer.Error: InvalidArgument naming the field of an invalid key spec, NotFound
// "key_not_found", Unavailable "database_unavailable".
type Admin struct {
	db    KeyAdmin
	hash  [32]byte
	cache *KeyCache
	log   zerolog.Logger
	// publish tells every gateway that a key changed (nil: this gateway's cache only).
	publish func(context.Context, redis.Invalidation)
}

// NewAdmin returns the admin service for db (nil: no database) guarded by adminKey.
// cache, when set, forgets a key revoked here at once.
func NewAdmin(db KeyAdmin, adminKey string, cache *KeyCache, log zerolog.Logger) *Admin {
	return &Admin{db: db, hash: HashKey(adminKey), cache: cache, log: log}
}

// Authorize reports whether secret is the admin key (compared in constant time).
func (a *Admin) Authorize(secret string) bool {
	sum := HashKey(secret)
	return subtle.ConstantTimeCompare(sum[:], a.hash[:]) == 1
}

// CreatedKey is a key just created: the stored key and, this once, its secret.
type CreatedKey struct {
	postgres.Key
	// Secret is the API key itself; it cannot be shown again.
	Secret string `json:"key"`
}

// UsageReport is the ledger summed per key and model over a period.
type UsageReport struct {
	// Since and Until are the filter's bounds (zero: open).
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Data holds one summary per key and model.
	Data []postgres.UsageSummary `json:"data"`
	// Total sums Data.
	Total UsageTotal `json:"total"`
}

// UsageTotal sums the summaries of a UsageReport.
type UsageTotal struct {
	Requests         int64 `json:"requests"`
	Errors           int64 `json:"errors"`
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

var errNoDatabase = &infer.Error{Kind: infer.Unavailable, Code: "no_database",
	Message: "the admin API needs PostgreSQL (postgres.url or HXP_POSTGRES_URL); keys from the config are managed there"}

// ready fails without a database.
func (a *Admin) ready() error {
	if a.db == nil {
		return fresh(errNoDatabase)
	}
	return nil
}

// adminError maps the database's errors.
func adminError(err error) error {
	var ve *postgres.ValidationError
	switch {
	case errors.As(err, &ve):
		return &infer.Error{Kind: infer.InvalidArgument, Param: ve.Field, Message: ve.Error(), Err: err}
	case errors.Is(err, postgres.ErrKeyNotFound):
		return &infer.Error{Kind: infer.NotFound, Code: "key_not_found", Message: "no such key", Err: err}
	}
	return &infer.Error{Kind: infer.Unavailable, Code: "database_unavailable",
		Message: "the database could not answer: " + err.Error(), RetryAfter: time.Second, Err: err}
}

// ListKeys returns every key (never their secrets); an empty list is non-nil.
func (a *Admin) ListKeys(ctx context.Context) ([]postgres.Key, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	keys, err := a.db.ListKeys(ctx)
	if err != nil {
		return nil, adminError(err)
	}
	if keys == nil {
		keys = []postgres.Key{}
	}
	return keys, nil
}

// CreateKey creates a key; the answer holds its secret, which cannot be read again.
func (a *Admin) CreateKey(ctx context.Context, spec postgres.KeySpec) (CreatedKey, error) {
	if err := a.ready(); err != nil {
		return CreatedKey{}, err
	}
	secret, k, err := a.db.CreateKey(ctx, spec)
	if err != nil {
		return CreatedKey{}, adminError(err)
	}
	a.log.Info().Str("key_id", k.ID).Str("name", k.Name).Msg("admin API: key created")
	return CreatedKey{Key: k, Secret: secret}, nil
}

// GetKey returns one key.
func (a *Admin) GetKey(ctx context.Context, id string) (postgres.Key, error) {
	if err := a.ready(); err != nil {
		return postgres.Key{}, err
	}
	k, err := a.db.GetKey(ctx, id)
	if err != nil {
		return postgres.Key{}, adminError(err)
	}
	return k, nil
}

// RevokeKey revokes a key and returns it. It is effective at once on this gateway (its
// key cache forgets the key) and, through Redis' invalidation channel, on every other
// gateway within a second; without Redis (or while it is down) within auth.cache_ttl.
func (a *Admin) RevokeKey(ctx context.Context, id string) (postgres.Key, error) {
	if err := a.ready(); err != nil {
		return postgres.Key{}, err
	}
	if err := a.db.RevokeKey(ctx, id); err != nil {
		return postgres.Key{}, adminError(err)
	}
	if a.publish != nil {
		a.publish(ctx, redis.Invalidation{Kind: redis.InvalidateKey, KeyID: id})
	} else if a.cache != nil {
		a.cache.Invalidate(id)
	}
	a.log.Info().Str("key_id", id).Msg("admin API: key revoked")
	return a.GetKey(ctx, id)
}

// Usage sums the ledger per key and model over f (the zero filter selects every
// record; front ends default to MonthStart(now) as Since).
func (a *Admin) Usage(ctx context.Context, f postgres.UsageFilter) (UsageReport, error) {
	if err := a.ready(); err != nil {
		return UsageReport{}, err
	}
	sums, err := a.db.Usage(ctx, f)
	if err != nil {
		return UsageReport{}, adminError(err)
	}
	r := UsageReport{Since: f.Since, Until: f.Until, Data: sums}
	if r.Data == nil {
		r.Data = []postgres.UsageSummary{}
	}
	for _, s := range sums {
		r.Total.Requests += s.Requests
		r.Total.Errors += s.Errors
		r.Total.PromptTokens += s.PromptTokens
		r.Total.CompletionTokens += s.CompletionTokens
		r.Total.TotalTokens += s.TotalTokens
	}
	return r, nil
}
