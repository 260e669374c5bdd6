package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/connectors/redis"
	hxplimits "github.com/hxp-ai/hxp/limits"
)

// TenancyConfig is what the gateway's tenancy is built from: the config's auth,
// postgres, redis, cache, upstreams, routing and cors sections.
type TenancyConfig struct {
	// Auth is the key settings (auth.*).
	Auth config.KeyAuth
	// PlainKeys are the static keys of auth.api_keys_file and HXP_AUTH_API_KEYS.
	PlainKeys []string
	// Postgres, Redis and Cache are the sections of the same names.
	Postgres config.Postgres
	Redis    config.Redis
	Cache    config.Cache
	// Upstreams are the remote nodes; Routing how requests are spread over them.
	Upstreams []config.Upstream
	Routing   config.Routing
	// CORS is server.cors.
	CORS config.CORS
	// Ledger tunes the usage ledger; its SpoolPath comes from Postgres.SpoolPath.
	Ledger postgres.LedgerOptions
	// WriteTimeout bounds each write of a relayed stream (server.write_timeout).
	WriteTimeout time.Duration
	// Log receives the tenancy's logs (never keys or prompts).
	Log zerolog.Logger
}

// Tenancy is the gateway's tenancy at run time: the connections, the shared state of
// the links (key cache, limiters, budgets) and the admin API. Links builds one chain
// per listener; Close flushes the ledger and closes the connections.
type Tenancy struct {
	cfg TenancyConfig

	// DB is the PostgreSQL connection (nil without postgres.url).
	DB *postgres.DB
	// Ledger writes usage records (nil without a database).
	Ledger *postgres.Ledger
	// Redis is the Redis connection (nil without redis.url).
	Redis *redis.Client
	// Keys is the cache over the database's keys (nil without a database).
	Keys *KeyCache
	// Budgets enforces monthly budgets (nil without a database).
	Budgets *Budgets
	// Admin is the admin API (nil without an admin key).
	Admin *Admin

	store    KeyStore
	local    hxplimits.Limiter
	shared   hxplimits.Limiter // the Redis limiter, or leased over it; nil without Redis
	leased   *hxplimits.Leased // nil when not leasing
	cache    CacheStore
	counters tenancyCounters
}

// AuthEnabled reports whether requests need keys: auth.required, or any key source.
func (c TenancyConfig) AuthEnabled() bool {
	return c.Auth.Required || len(c.Auth.Keys) > 0 || len(c.PlainKeys) > 0 || c.Postgres.URL != ""
}

// OpenTenancy connects to the configured services (failing when one is configured but
// unreachable) and builds the shared state.
func OpenTenancy(ctx context.Context, cfg TenancyConfig) (*Tenancy, error) {
	t := &Tenancy{cfg: cfg, local: hxplimits.NewMemory(nil)}
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
	if cfg.Redis.URL != "" {
		rc, err := redis.Open(ctx, cfg.Redis.URL, redis.Options{Logger: cfg.Log, Timeout: cfg.Redis.Timeout.D()})
		if err != nil {
			return nil, fmt.Errorf("tenancy: %w", err)
		}
		t.Redis = rc
		t.shared = rc.Limiter()
		if h := cfg.Redis.Lease(); h > 0 {
			l, err := hxplimits.NewLeased(rc.Limiter(), hxplimits.LeasedOptions{Horizon: h, Timeout: cfg.Redis.Timeout.D()})
			if err != nil {
				return nil, fmt.Errorf("tenancy: redis.lease_horizon: %w", err)
			}
			t.leased, t.shared = l, l
		}
	}
	var static []StaticKey
	for _, k := range cfg.Auth.Keys {
		h, err := k.Hash()
		if err != nil {
			return nil, fmt.Errorf("tenancy: auth.keys %s: %w", k.ID, err)
		}
		static = append(static, StaticKey{Hash: h, Tenant: Tenant{ID: k.ID, Name: k.ID, Models: k.Models,
			RPM: int64(k.RPM), TPM: int64(k.TPM), Budget: k.MonthlyTokenBudget}})
	}
	if cfg.Auth.NodeKey != "" {
		static = append(static, StaticKey{Hash: HashKey(cfg.Auth.NodeKey), Tenant: Tenant{ID: "node", Name: "node-to-node", Internal: true}})
	}
	stores := KeyStores{NewStaticKeys(static, cfg.PlainKeys)}
	if t.Keys != nil {
		stores = append(stores, t.Keys)
	}
	t.store = stores
	if cfg.Auth.AdminKey != "" {
		var admin KeyAdmin
		if t.DB != nil {
			admin = t.DB
		}
		t.Admin = NewAdmin(admin, cfg.Auth.AdminKey, t.Keys, cfg.Log)
	}
	if cfg.Cache.Enabled {
		if t.Redis != nil {
			t.cache = t.Redis.Cache("")
		} else {
			t.cache = NewMemoryCache(cfg.Cache.MaxEntries)
		}
	}
	ok = true
	return t, nil
}

// Links returns the tenancy links of one listener, in chain order: CORS, key auth,
// usage ledger, scope, rate limits and budgets, response cache. defaultModel is the
// model of a model's own listener ("" on the gateway).
func (t *Tenancy) Links(defaultModel string) []Middleware {
	var out []Middleware
	if len(t.cfg.CORS.Origins) > 0 {
		out = append(out, CORS{Origins: t.cfg.CORS.Origins, Headers: t.cfg.CORS.Headers, MaxAge: t.cfg.CORS.MaxAge.D()})
	}
	if t.cfg.AuthEnabled() {
		// The usage log comes right after auth so that refused requests (scope, limits,
		// budget) are recorded too.
		ul := UsageLog{Budgets: t.Budgets, DefaultModel: defaultModel}
		if t.Ledger != nil {
			ul.Ledger = t.Ledger
		}
		out = append(out, &KeyAuth{Store: t.store, Log: t.cfg.Log}, ul, Scope{DefaultModel: defaultModel})
		rl := RateLimitOptions{Local: t.local, FailClosed: t.cfg.Redis.FailMode == "closed", Budgets: t.Budgets,
			DefaultModel: defaultModel, Log: t.cfg.Log, counters: &t.counters, Shared: t.shared}
		out = append(out, NewRateLimit(rl))
	}
	if t.cache != nil {
		out = append(out, NewResponseCache(ResponseCacheOptions{Store: t.cache, TTL: t.cfg.Cache.TTL.D(), Shared: t.cfg.Cache.Shared,
			DefaultModel: defaultModel, Log: t.cfg.Log, counters: &t.counters}))
	}
	return out
}

// Routes are the admin API's routes (none without an admin key).
func (t *Tenancy) Routes() []Route {
	if t.Admin == nil {
		return nil
	}
	return t.Admin.Routes()
}

// NewPool builds the gateway's router: every local model, the configured remote
// upstreams (one connection pool per node URL) and the fallbacks. Start it before
// serving and Close it after.
func (t *Tenancy) NewPool(locals ...*Local) (*Pool, error) {
	rt := t.cfg.Routing
	p := NewPool(PoolOptions{
		Breaker:        BreakerConfig{FailureThreshold: rt.Breaker.Failures, OpenFor: rt.Breaker.OpenFor.D(), HalfOpenProbes: rt.Breaker.HalfOpenProbes},
		Retries:        rt.Retries,
		Fallbacks:      rt.Fallbacks,
		HealthInterval: rt.HealthInterval.D(),
		Log:            t.cfg.Log,
	})
	for _, l := range locals {
		if err := p.Add(l.b.Name(), l); err != nil {
			return nil, err
		}
	}
	byURL := map[string][]string{}
	var urls []string
	for _, u := range t.cfg.Upstreams {
		if byURL[u.URL] == nil {
			urls = append(urls, u.URL)
		}
		byURL[u.URL] = append(byURL[u.URL], u.Model)
	}
	for _, u := range urls {
		r, err := NewRemote(RemoteOptions{URL: u, Models: byURL[u], APIKey: t.cfg.Auth.NodeKey, Timeout: rt.Timeout.D(),
			ConnectTimeout: rt.ConnectTimeout.D(), WriteTimeout: t.cfg.WriteTimeout})
		if err != nil {
			return nil, err
		}
		for _, m := range byURL[u] {
			if err := p.Add(m, r); err != nil {
				return nil, err
			}
		}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Close flushes the ledger (spooling what the database does not take before ctx
// ends), gives the rate-limit units this gateway leased and did not use back to Redis,
// and closes the connections.
func (t *Tenancy) Close(ctx context.Context) error {
	var errs []error
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

// TenancyFromConfig returns the tenancy settings of cfg.
func TenancyFromConfig(cfg *config.Config, log zerolog.Logger) TenancyConfig {
	return TenancyConfig{Auth: cfg.Auth.KeyAuth, PlainKeys: cfg.Auth.APIKeys, Postgres: cfg.Postgres, Redis: cfg.Redis,
		Cache: cfg.Cache, Upstreams: cfg.Upstreams, Routing: cfg.Routing, CORS: cfg.Server.CORS,
		WriteTimeout: cfg.Server.WriteTimeout.D(), Log: log}
}
