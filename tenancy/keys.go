package tenancy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/sched"
)

// ErrKeyRefused is wrapped by KeyStore errors for a key that must be refused:
// unknown, wrong, revoked or expired. Clients get one answer for all of them.
var ErrKeyRefused = errors.New("api key refused")

// KeyStore authenticates presented API keys.
type KeyStore interface {
	// Lookup returns the caller of secret. An error wrapping ErrKeyRefused refuses the
	// key; any other error means the store could not answer. The secret must never
	// appear in an error or a log line.
	Lookup(ctx context.Context, secret string) (*infer.Caller, error)
}

// StaticKey is a key from the config: only its SHA-256 is known to the server.
type StaticKey struct {
	// Caller is what the key may do; its ID names it in logs and the ledger.
	Caller infer.Caller
	// Hash is SHA-256 of the key.
	Hash [32]byte
}

// HashKey returns the SHA-256 of a key, the form in which static keys are configured
// (hex-encoded) and compared.
func HashKey(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// StaticKeys is a KeyStore over keys from the config, for a single node without
// PostgreSQL (and for node-to-node keys). Every lookup compares the presented key's
// hash with every configured hash in constant time.
type StaticKeys []StaticKey

// NewStaticKeys returns the store of hashed keys; plain keys (from
// HXP_AUTH_API_KEYS or auth.api_keys_file) are hashed here and get unrestricted
// callers named "static-" plus the first 8 hex digits of their hash.
func NewStaticKeys(hashed []StaticKey, plain []string) StaticKeys {
	out := append(StaticKeys{}, hashed...)
	for _, p := range plain {
		h := HashKey(p)
		out = append(out, StaticKey{Caller: infer.Caller{ID: "static-" + hex.EncodeToString(h[:4]), Name: "static"}, Hash: h})
	}
	return out
}

// Lookup implements KeyStore.
func (s StaticKeys) Lookup(_ context.Context, secret string) (*infer.Caller, error) {
	h := HashKey(secret)
	found := -1
	for i := range s {
		// No early exit: the time taken does not depend on which key matched.
		eq := subtle.ConstantTimeCompare(h[:], s[i].Hash[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil, fmt.Errorf("static key: %w", ErrKeyRefused)
	}
	c := s[found].Caller
	if c.Expired(time.Now()) {
		return nil, fmt.Errorf("static key %s expired: %w", c.ID, ErrKeyRefused)
	}
	return &c, nil
}

// KeyLookup finds keys in a database; *postgres.DB implements it.
type KeyLookup interface {
	LookupKey(ctx context.Context, secret string) (postgres.Key, error)
}

// KeyCacheOptions tune a KeyCache. Zero fields take the defaults.
type KeyCacheOptions struct {
	// TTL is how long a valid key is trusted before it is looked up again; it bounds
	// how long a key revoked on another gateway keeps working here (default 30s).
	TTL time.Duration
	// NegativeTTL is how long a refused key is remembered, so that a client repeating a
	// bad key does not reach the database each time (default 5s).
	NegativeTTL time.Duration
	// MaxEntries bounds the cache; when full it is emptied (default 100000).
	MaxEntries int
	// Timeout bounds one database lookup (default 2s).
	Timeout time.Duration
	// Log receives refusals (key ids only) and database errors.
	Log zerolog.Logger
}

// KeyCache is a KeyStore over a database that answers most lookups from memory: a
// request waits on the database only the first time a key is seen and once per TTL.
// When the database cannot answer, a key that was valid keeps working (stale) and a
// key never seen cannot be checked (Unavailable), so a database outage does not fail
// requests of known callers. Entries are indexed by the hash of the presented key,
// never by the key itself.
type KeyCache struct {
	db   KeyLookup
	opts KeyCacheOptions
	now  func() time.Time
	sf   singleflight.Group

	mu      sync.RWMutex
	entries map[[32]byte]*keyEntry
}

type keyEntry struct {
	caller  *infer.Caller // nil for a refused key
	refusal error
	expires time.Time
}

// NewKeyCache returns a cache over db.
func NewKeyCache(db KeyLookup, opts KeyCacheOptions) *KeyCache {
	if opts.TTL <= 0 {
		opts.TTL = 30 * time.Second
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = 5 * time.Second
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 100000
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	return &KeyCache{db: db, opts: opts, now: time.Now, entries: map[[32]byte]*keyEntry{}}
}

// Lookup implements KeyStore.
func (c *KeyCache) Lookup(ctx context.Context, secret string) (*infer.Caller, error) {
	h := HashKey(secret)
	now := c.now()
	c.mu.RLock()
	e := c.entries[h]
	c.mu.RUnlock()
	if e != nil && now.Before(e.expires) {
		return e.result(now)
	}
	v, _, _ := c.sf.Do(string(h[:]), func() (any, error) { return c.fetch(ctx, secret, h, e), nil })
	return v.(*keyEntry).result(c.now())
}

// result returns the entry's caller, or why it is refused.
func (e *keyEntry) result(now time.Time) (*infer.Caller, error) {
	if e.caller == nil {
		return nil, e.refusal
	}
	if e.caller.Expired(now) {
		return nil, fmt.Errorf("key %s expired: %w", e.caller.ID, ErrKeyRefused)
	}
	return e.caller, nil
}

// fetch looks the key up in the database and caches the answer; old is the expired
// entry, if any, served again when the database cannot answer.
func (c *KeyCache) fetch(ctx context.Context, secret string, h [32]byte, old *keyEntry) *keyEntry {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.Timeout)
	defer cancel()
	k, err := c.db.LookupKey(ctx, secret)
	now := c.now()
	var e *keyEntry
	switch {
	case err == nil:
		e = &keyEntry{caller: callerOfKey(k), expires: now.Add(c.opts.TTL)}
	case errors.Is(err, postgres.ErrKeyNotFound), errors.Is(err, postgres.ErrKeyRevoked), errors.Is(err, postgres.ErrKeyExpired):
		c.opts.Log.Debug().Str("key_id", postgres.KeyIDOf(secret)).Str("reason", refusalReason(err)).Msg("api key refused")
		e = &keyEntry{refusal: fmt.Errorf("%w (%s)", ErrKeyRefused, refusalReason(err)), expires: now.Add(c.opts.NegativeTTL)}
	case old != nil && old.caller != nil:
		// The database is down: a key that was valid stays valid until it answers.
		c.opts.Log.Warn().Err(err).Str("key_id", old.caller.ID).Msg("key lookup failed; serving the cached key")
		e = &keyEntry{caller: old.caller, expires: now.Add(min(c.opts.TTL, 5*time.Second))}
	default:
		c.opts.Log.Warn().Err(err).Msg("key lookup failed")
		return &keyEntry{refusal: fmt.Errorf("key store unavailable: %w", err)}
	}
	c.mu.Lock()
	if len(c.entries) >= c.opts.MaxEntries {
		clear(c.entries)
	}
	c.entries[h] = e
	c.mu.Unlock()
	return e
}

// Invalidate forgets the cached entries of the key with public id keyID (after it was
// revoked here), so that its next use reaches the database.
func (c *KeyCache) Invalidate(keyID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.entries {
		if e.caller != nil && e.caller.ID == keyID {
			delete(c.entries, h)
		}
	}
}

// Flush forgets every cached entry.
func (c *KeyCache) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
}

func refusalReason(err error) string {
	switch {
	case errors.Is(err, postgres.ErrKeyRevoked):
		return "revoked"
	case errors.Is(err, postgres.ErrKeyExpired):
		return "expired"
	}
	return "unknown"
}

// callerOfKey converts a stored key (its priority was checked by the database).
func callerOfKey(k postgres.Key) *infer.Caller {
	prio, _ := sched.ParsePriority(k.Priority)
	return &infer.Caller{ID: k.ID, Name: k.Name, Models: k.AllowedModels, RPM: int64(k.RPM), TPM: int64(k.TPM),
		Budget: k.MonthlyTokenBudget, ExpiresAt: k.ExpiresAt, Weight: k.Weight, Priority: prio}
}

// KeyStores tries each store in order: the first that knows the key answers. A
// store that cannot answer is skipped; when none knows the key and one could not
// answer, its error is returned, otherwise the key is refused.
type KeyStores []KeyStore

// Lookup implements KeyStore.
func (s KeyStores) Lookup(ctx context.Context, secret string) (*infer.Caller, error) {
	var down error
	for _, st := range s {
		c, err := st.Lookup(ctx, secret)
		switch {
		case err == nil:
			return c, nil
		case !errors.Is(err, ErrKeyRefused):
			down = err
		}
	}
	if down != nil {
		return nil, down
	}
	return nil, ErrKeyRefused
}
