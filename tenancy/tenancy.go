package tenancy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/connectors/redis"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/limits"
)

// Config is what the tenancy is built from: the config's auth, postgres, redis and
// cache sections.
type Config struct {
	// Auth is the key settings (auth.*).
	Auth config.KeyAuth
	// PlainKeys are the static keys of auth.api_keys_file and HXP_AUTH_API_KEYS.
	PlainKeys []string
	// Postgres, Redis and Cache are the sections of the same names.
	Postgres config.Postgres
	Redis    config.Redis
	Cache    config.Cache
	// Ledger tunes the usage ledger; its SpoolPath comes from Postgres.SpoolPath.
	Ledger postgres.LedgerOptions
	// Log receives the tenancy's logs (never keys or prompts).
	Log zerolog.Logger
}

// FromConfig returns the tenancy settings of cfg.
func FromConfig(cfg *config.Config, log zerolog.Logger) Config {
	return Config{Auth: cfg.Auth.KeyAuth, PlainKeys: cfg.Auth.APIKeys, Postgres: cfg.Postgres, Redis: cfg.Redis,
		Cache: cfg.Cache, Log: log}
}

// AuthEnabled reports whether requests need keys: auth.required, or any key source.
func (c Config) AuthEnabled() bool {
	return c.Auth.Required || len(c.Auth.Keys) > 0 || len(c.PlainKeys) > 0 || c.Postgres.URL != ""
}

// Tenancy is the tenancy at run time: the connections and the state shared by every
// front end (key cache, limiters, budgets, response cache). Close flushes the ledger
// and closes the connections.
type Tenancy struct {
	cfg Config

	// DB is the PostgreSQL connection (nil without postgres.url).
	DB *postgres.DB
	// Ledger writes usage records (nil without a database).
	Ledger *postgres.Ledger
	// Redis is the Redis connection (nil without redis.url).
	Redis *redis.Client
	// Keys is the cache over the database's keys (nil without a database).
	Keys *KeyCache
	// stopSub ends the invalidation subscription (nil without one).
	stopSub func()
	// Budgets enforces monthly budgets (nil without a database).
	Budgets *Budgets

	store    KeyStore
	static   swappableKeys // the config's keys, replaced on a reload
	limiter  *rateLimiter
	leased   *limits.Leased // nil when not leasing
	cache    CacheStore     // nil without cache.enabled
	admin    *Admin
	counters counters
	now      func() time.Time
}

// Open connects to the configured services (failing when one is configured but
// unreachable) and builds the shared state.
func Open(ctx context.Context, cfg Config) (*Tenancy, error) {
	t := &Tenancy{cfg: cfg, now: time.Now}
	ok := false
	defer func() {
		if !ok {
			_ = t.Close(context.Background())
		}
	}()
	if cfg.Postgres.URL != "" {
		db, err := postgres.Open(ctx, cfg.Postgres.URL, postgres.Options{MaxConns: int32(cfg.Postgres.MaxConns), Logger: cfg.Log})
		if err != nil {
			return nil, fmt.Errorf("tenancy: %w", err)
		}
		t.DB = db
		lo := cfg.Ledger
		lo.SpoolPath = cfg.Postgres.SpoolPath
		t.Ledger, err = db.NewLedger(lo)
		if err != nil {
			return nil, fmt.Errorf("tenancy: %w", err)
		}
		t.Keys = NewKeyCache(db, KeyCacheOptions{TTL: cfg.Auth.CacheTTL.D(), Log: cfg.Log})
		t.Budgets = NewBudgets(db, BudgetOptions{Log: cfg.Log})
	}
	var shared limits.Limiter
	if cfg.Redis.URL != "" {
		rc, err := redis.Open(ctx, cfg.Redis.URL, redis.Options{Logger: cfg.Log, Timeout: cfg.Redis.Timeout.D()})
		if err != nil {
			return nil, fmt.Errorf("tenancy: %w", err)
		}
		t.Redis = rc
		shared = rc.Limiter()
		if h := cfg.Redis.Lease(); h > 0 {
			l, err := limits.NewLeased(rc.Limiter(), limits.LeasedOptions{Horizon: h, Timeout: cfg.Redis.Timeout.D()})
			if err != nil {
				return nil, fmt.Errorf("tenancy: redis.lease_horizon: %w", err)
			}
			t.leased, shared = l, l
		}
	}
	t.limiter = newRateLimiter(shared, cfg.Redis.FailMode == "closed", cfg.Log)
	if err := t.SetStaticKeys(cfg.Auth, cfg.PlainKeys); err != nil {
		return nil, err
	}
	stores := KeyStores{&t.static}
	if t.Keys != nil {
		stores = append(stores, t.Keys)
	}
	t.store = stores
	if cfg.Auth.AdminKey != "" {
		var db KeyAdmin
		if t.DB != nil {
			db = t.DB
		}
		t.admin = NewAdmin(db, cfg.Auth.AdminKey, t.Keys, cfg.Log)
		t.admin.publish = t.Publish
	}
	if cfg.Cache.Enabled {
		if t.Redis != nil {
			t.cache = t.Redis.Cache("")
		} else {
			t.cache = NewMemoryCache(cfg.Cache.MaxEntries)
		}
	}
	t.subscribe()
	ok = true
	return t, nil
}

// AuthEnabled reports whether requests need keys (Config.AuthEnabled).
func (t *Tenancy) AuthEnabled() bool { return t.cfg.AuthEnabled() }

// Admin is the key administration service, or nil without an admin key.
func (t *Tenancy) Admin() *Admin { return t.admin }

// errKeyRefused is the one answer for an unknown, wrong, revoked or expired key.
var errKeyRefused = &infer.Error{Kind: infer.Unauthenticated, Code: "invalid_api_key", Message: "invalid API key"}

// errAuthUnavailable is the answer for a key that no store could check.
var errAuthUnavailable = &infer.Error{Kind: infer.Unavailable, Code: "auth_unavailable", RetryAfter: time.Second,
	Message: "the API key could not be checked now; retry later"}

// Authenticate returns the caller of an API key. A refused key (unknown, wrong,
// revoked, expired: one answer for all) is Unauthenticated "invalid_api_key"; a key
// no store could check now is Unavailable "auth_unavailable". Keys are logged by
// their public id only.
func (t *Tenancy) Authenticate(ctx context.Context, secret string) (*infer.Caller, error) {
	c, err := t.store.Lookup(ctx, secret)
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, ErrKeyRefused):
		t.cfg.Log.Debug().Str("key_id", postgres.KeyIDOf(secret)).Msg("api key refused")
		return nil, fresh(errKeyRefused)
	}
	t.cfg.Log.Error().Err(err).Msg("api key store unavailable")
	return nil, fresh(errAuthUnavailable)
}

// fresh returns a copy of a template error, so that no caller can change the template.
func fresh(e *infer.Error) *infer.Error {
	c := *e
	return &c
}

// Close flushes the ledger (spooling what the database does not take before ctx
// ends), gives the rate-limit units this gateway leased and did not use back to Redis,
// and closes the connections.
func (t *Tenancy) Close(ctx context.Context) error {
	var errs []error
	if t.stopSub != nil {
		t.stopSub()
	}
	if t.Ledger != nil {
		errs = append(errs, t.Ledger.Close(ctx))
	}
	if t.DB != nil {
		t.DB.Close()
	}
	if t.leased != nil {
		errs = append(errs, t.leased.Close(ctx))
	}
	if t.Redis != nil {
		errs = append(errs, t.Redis.Close())
	}
	return errors.Join(errs...)
}
