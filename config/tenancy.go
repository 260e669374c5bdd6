package config

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// The gateway's tenancy and scale-out sections: keys in PostgreSQL, limits and the
// response cache in Redis, remote upstreams, TLS and CORS. Every section is optional;
// without PostgreSQL keys come from the config and no ledger is written, without Redis
// limits and the cache live in the process.

// Postgres configures the key store and usage ledger.
type Postgres struct {
	// URL is the database (postgres://user@host/db; the password from PGPASSWORD or
	// ~/.pgpass, or in HXP_POSTGRES_URL). Empty: no database.
	URL string `yaml:"url"`
	// MaxConns caps the pool (default max(4, cores)).
	MaxConns int `yaml:"max_conns"`
	// SpoolPath is the file that holds usage records while the database is down
	// (default hxp-usage.spool in the working directory). One per gateway process.
	SpoolPath string `yaml:"spool_path"`
}

// Redis configures the shared rate limiter and response cache.
type Redis struct {
	// URL is the server (redis://host:6379/0, rediss:// for TLS; or HXP_REDIS_URL).
	// Empty: limits and cache in the process.
	URL string `yaml:"url"`
	// Timeout bounds each Redis call on the request path (default 250ms).
	Timeout Duration `yaml:"timeout"`
	// FailMode is what rate limiting does while Redis is unreachable: "open" (default)
	// limits each gateway with its in-process limiter, "closed" refuses requests (503).
	FailMode string `yaml:"fail_mode"`
	// LeaseHorizon is how much of a key's demand each gateway leases from Redis ahead of
	// its requests, so that most requests are admitted without waiting on Redis while
	// the limits stay shared (limits.Leased). Unset means DefaultLeaseHorizon; 0 turns
	// leasing off: every decision is one Redis call.
	LeaseHorizon *Duration `yaml:"lease_horizon"`
}

// Lease returns the effective lease horizon: DefaultLeaseHorizon when unset, 0 when
// leasing is off.
func (r Redis) Lease() time.Duration {
	if r.LeaseHorizon == nil {
		return DefaultLeaseHorizon
	}
	return r.LeaseHorizon.D()
}

// The allowed range of redis.lease_horizon besides 0: long enough to cover more than a
// request, short enough that leased units are used (or refunded) well within a
// per-minute limit's period.
const (
	minLeaseHorizon = time.Millisecond
	maxLeaseHorizon = time.Second
)

// Cache configures the exact-match response cache of deterministic requests.
type Cache struct {
	// Enabled turns the cache on.
	Enabled bool `yaml:"enabled"`
	// TTL is how long an answer is served from the cache (default 5m).
	TTL Duration `yaml:"ttl"`
	// MaxEntries bounds the in-process cache used without Redis (default 10000).
	MaxEntries int `yaml:"max_entries"`
	// Shared lets all keys share entries (default: each key has its own).
	Shared bool `yaml:"shared"`
}

// Upstream is a remote hxp node serving a model for this gateway, or (with DNS) the
// set of nodes a DNS name resolves to. Exactly one of URL and DNS is set.
type Upstream struct {
	// Model is the model id, as clients send it and as the node serves it.
	Model string `yaml:"model"`
	// URL is the node's gateway or the model's own listener (http(s)://host:port).
	URL string `yaml:"url"`
	// DNS is a name resolved every routing.health_interval, typically a Kubernetes
	// headless Service (hxp-phi3.llm.svc.cluster.local): every address it resolves to is
	// one node, on Port. A name whose first label starts with "_"
	// (_http._tcp.hxp-phi3.llm.svc.cluster.local) is looked up as SRV records, which
	// carry the port themselves.
	DNS string `yaml:"dns"`
	// Port is the nodes' port for a DNS name of A/AAAA records (1..65535).
	Port int `yaml:"port"`
	// Scheme is http (default) or https for the nodes found by DNS.
	Scheme string `yaml:"scheme"`
}

// Breaker configures each upstream's circuit breaker.
type Breaker struct {
	// Failures is the number of consecutive failures that opens it (default 5).
	Failures int `yaml:"failures"`
	// OpenFor is how long it stays open before probing (default 10s).
	OpenFor Duration `yaml:"open_for"`
	// HalfOpenProbes is the number of probes let through at once, and of successes
	// that close it (default 1).
	HalfOpenProbes int `yaml:"half_open_probes"`
}

// Routing configures how the gateway spreads requests over upstreams.
type Routing struct {
	// Retries is how many other upstreams of a model a failed request may try before
	// its fallbacks (default 2; 0 for the default, -1 for none).
	Retries int `yaml:"retries"`
	// Timeout bounds a request to a remote node, a stream included (default 10m).
	Timeout Duration `yaml:"timeout"`
	// ConnectTimeout bounds dialing a remote node (default 2s).
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// HealthInterval is the period of active health checks (default 5s).
	HealthInterval Duration `yaml:"health_interval"`
	// Breaker configures the circuit breakers.
	Breaker Breaker `yaml:"breaker"`
	// Fallbacks lists, per model, the models to try in order when it cannot answer.
	Fallbacks map[string][]string `yaml:"fallbacks"`
}

// CORS configures cross-origin access from browsers.
type CORS struct {
	// Origins are the allowed origins ("https://app.example.com", or "*"). Empty: no
	// CORS headers at all.
	Origins []string `yaml:"origins"`
	// Headers are the request headers browsers may send (default Authorization,
	// Content-Type, X-Request-Id).
	Headers []string `yaml:"headers"`
	// MaxAge is how long browsers may cache a preflight answer (default 10m).
	MaxAge Duration `yaml:"max_age"`
}

// TLS makes every listener serve HTTPS.
type TLS struct {
	// CertFile is the PEM certificate chain.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key.
	KeyFile string `yaml:"key_file"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// StaticKey is an API key configured by its SHA-256 (print one with `hxp keys
// create --static`): for a single node without PostgreSQL.
type StaticKey struct {
	// ID names the key in logs and the ledger (public).
	ID string `yaml:"id"`
	// SHA256 is the hex SHA-256 of the key.
	SHA256 string `yaml:"sha256"`
	// Models are the models the key may use; empty allows all.
	Models []string `yaml:"models"`
	// RPM and TPM are the per-model requests and tokens per minute (0: unlimited).
	RPM int `yaml:"rpm"`
	// TPM is the tokens per minute (0: unlimited).
	TPM int `yaml:"tpm"`
	// MonthlyTokenBudget caps tokens per calendar month (needs PostgreSQL's ledger).
	MonthlyTokenBudget int64 `yaml:"monthly_token_budget"`
	// Weight is the key's share of a busy model relative to other keys (default 1;
	// 3 gets three times the service of 1 while both wait). Above 0, at most 1000.
	Weight float64 `yaml:"weight"`
	// Priority is interactive (default) or batch: batch requests run when no
	// interactive one waits (see models[].fairness.batch_aging).
	Priority string `yaml:"priority"`
}

// Hash returns the decoded SHA256.
func (k StaticKey) Hash() ([32]byte, error) {
	var h [32]byte
	b, err := hex.DecodeString(k.SHA256)
	if err != nil || len(b) != 32 {
		return h, fmt.Errorf("%q is not 64 hex digits", k.SHA256)
	}
	copy(h[:], b)
	return h, nil
}

// KeyAuth holds the key settings beyond the static plain keys of Auth.
type KeyAuth struct {
	// Required makes every /v1 request need a valid key (`hxp serve --auth`).
	Required bool `yaml:"required"`
	// CacheTTL is how long a key read from PostgreSQL is trusted before it is read
	// again: the longest a key revoked on another gateway keeps working (default 30s).
	CacheTTL Duration `yaml:"cache_ttl"`
	// Keys are static hashed keys.
	Keys []StaticKey `yaml:"keys"`
	// AdminKeyFile holds the admin API's key (or HXP_AUTH_ADMIN_KEY). Without one the
	// admin API is off.
	AdminKeyFile string `yaml:"admin_key_file"`
	// AdminKey is filled from HXP_AUTH_ADMIN_KEY or AdminKeyFile; never from YAML.
	AdminKey string `yaml:"-"`
	// NodeKeyFile holds the node-to-node key (or HXP_AUTH_NODE_KEY): gateways send it
	// to remote upstreams, and every node accepts it as an internal key whose requests
	// are neither limited nor recorded again.
	NodeKeyFile string `yaml:"node_key_file"`
	// NodeKey is filled from HXP_AUTH_NODE_KEY or NodeKeyFile; never from YAML.
	NodeKey string `yaml:"-"`
}

// Tenancy defaults.
const (
	DefaultSpoolPath      = "hxp-usage.spool"
	DefaultRedisTimeout   = 250 * time.Millisecond
	DefaultLeaseHorizon   = 100 * time.Millisecond
	DefaultCacheTTL       = 5 * time.Minute
	DefaultKeyCacheTTL    = 30 * time.Second
	DefaultCacheEntries   = 10000
	DefaultRetries        = 2
	DefaultRemoteTimeout  = 10 * time.Minute
	DefaultConnectTimeout = 2 * time.Second
	DefaultHealthInterval = 5 * time.Second
)

// tenancyDefaults fills the unset fields of the tenancy sections.
func tenancyDefaults(a *KeyAuth, pg *Postgres, rd *Redis, ca *Cache, rt *Routing) {
	if pg.SpoolPath == "" {
		pg.SpoolPath = DefaultSpoolPath
	}
	if rd.Timeout == 0 {
		rd.Timeout = Duration(DefaultRedisTimeout)
	}
	if rd.FailMode == "" {
		rd.FailMode = "open"
	}
	if rd.LeaseHorizon == nil {
		h := Duration(DefaultLeaseHorizon)
		rd.LeaseHorizon = &h
	}
	if ca.TTL == 0 {
		ca.TTL = Duration(DefaultCacheTTL)
	}
	if ca.MaxEntries == 0 {
		ca.MaxEntries = DefaultCacheEntries
	}
	if a.CacheTTL == 0 {
		a.CacheTTL = Duration(DefaultKeyCacheTTL)
	}
	for i := range a.Keys {
		keyFairnessDefaults(&a.Keys[i])
	}
	if rt.Retries == 0 {
		rt.Retries = DefaultRetries
	}
	if rt.Timeout == 0 {
		rt.Timeout = Duration(DefaultRemoteTimeout)
	}
	if rt.ConnectTimeout == 0 {
		rt.ConnectTimeout = Duration(DefaultConnectTimeout)
	}
	if rt.HealthInterval == 0 {
		rt.HealthInterval = Duration(DefaultHealthInterval)
	}
}

// readSecretFile returns the first non-comment line of a key file.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", unwrapPathErr(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line, nil
		}
	}
	return "", fmt.Errorf("no key in the file")
}

// validateTenancy checks the tenancy sections; models are the locally served names.
func validateTenancy(add func(path, format string, args ...any), a *KeyAuth, pg *Postgres, rd *Redis, ca *Cache,
	ups []Upstream, rt *Routing, cors *CORS, tls *TLS, local []string, plainKeys int) {
	served := map[string]bool{}
	for _, m := range local {
		served[m] = true
	}
	if pg.URL != "" {
		if u, err := url.Parse(pg.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			// Never echo the URL: it may hold a password.
			add("postgres.url", "is not a postgres:// URL")
		}
	}
	if pg.MaxConns < 0 || pg.MaxConns > 10000 {
		add("postgres.max_conns", "%d is out of range (0 for the default, or 1..10000)", pg.MaxConns)
	}
	if rd.URL != "" {
		if u, err := url.Parse(rd.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			add("redis.url", "is not a redis:// or rediss:// URL")
		}
	}
	if rd.Timeout < 0 {
		add("redis.timeout", "%s is negative", rd.Timeout)
	}
	if rd.FailMode != "open" && rd.FailMode != "closed" {
		add("redis.fail_mode", "%q is not one of open, closed", rd.FailMode)
	}
	if h := rd.Lease(); h != 0 && (h < minLeaseHorizon || h > maxLeaseHorizon) {
		add("redis.lease_horizon", "%s is out of range (0 to turn leasing off, or %s..%s)", h, minLeaseHorizon, maxLeaseHorizon)
	}
	if ca.TTL < 0 || ca.MaxEntries < 0 {
		add("cache", "ttl and max_entries must not be negative")
	}
	if a.CacheTTL < 0 {
		add("auth.cache_ttl", "%s is negative", a.CacheTTL)
	}
	ids := map[string]bool{}
	for i, k := range a.Keys {
		p := fmt.Sprintf("auth.keys[%d]", i)
		if !nameRE.MatchString(k.ID) {
			add(p+".id", "%q is not allowed (1-64 of a-z 0-9 . _ -)", k.ID)
		} else if ids[k.ID] {
			add(p+".id", "%q is used twice", k.ID)
		}
		ids[k.ID] = true
		if _, err := k.Hash(); err != nil {
			add(p+".sha256", "%v", err)
		}
		if k.RPM < 0 || k.TPM < 0 || k.MonthlyTokenBudget < 0 {
			add(p, "rpm, tpm and monthly_token_budget must not be negative")
		}
		validateKeyFairness(add, p, k)
	}
	if a.Required && len(a.Keys) == 0 && pg.URL == "" && a.NodeKey == "" && plainKeys == 0 {
		add("auth.required", "no key can ever be valid: configure postgres.url, auth.keys or auth.api_keys_file")
	}
	for i, u := range ups {
		p := fmt.Sprintf("upstreams[%d]", i)
		if !nameRE.MatchString(u.Model) {
			add(p+".model", "%q is not a model id", u.Model)
		}
		validateUpstream(add, p, u)
		served[u.Model] = true
	}
	if rt.Retries < -1 || rt.Retries > 16 {
		add("routing.retries", "%d is out of range (-1 for none, 0 for the default, up to 16)", rt.Retries)
	}
	if rt.Breaker.Failures < 0 || rt.Breaker.HalfOpenProbes < 0 || rt.Breaker.OpenFor < 0 {
		add("routing.breaker", "failures, open_for and half_open_probes must not be negative")
	}
	for model, fbs := range rt.Fallbacks {
		if !served[model] {
			add("routing.fallbacks."+model, "no model or upstream named %q", model)
		}
		for _, fb := range fbs {
			if fb == model {
				add("routing.fallbacks."+model, "falls back to itself")
			} else if !served[fb] {
				add("routing.fallbacks."+model, "falls back to %q, which is not served", fb)
			}
		}
	}
	for i, o := range cors.Origins {
		if o == "*" {
			continue
		}
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" {
			add(fmt.Sprintf("server.cors.origins[%d]", i), "%q is not an origin (scheme://host[:port], or *)", o)
		}
	}
	if tls.Enabled() && (tls.CertFile == "" || tls.KeyFile == "") {
		add("server.tls", "needs both cert_file and key_file")
	}
}
