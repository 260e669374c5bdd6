package server

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// CacheStore keeps response bodies by key for a time; *redis.Cache (shared by every
// gateway) and MemoryCache (one process) implement it.
type CacheStore interface {
	// Get returns the value under key; found is false when there is none.
	Get(ctx context.Context, key string) (value []byte, found bool, err error)
	// Set stores value under key for ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// ResponseCacheOptions configure the ResponseCache link.
type ResponseCacheOptions struct {
	// Store keeps the responses.
	Store CacheStore
	// TTL is how long a response is served from the cache (default 5m).
	TTL time.Duration
	// Shared lets tenants share entries. Off by default: a tenant could otherwise learn
	// from a fast answer (or the hit header) that another tenant sent the same prompt.
	Shared bool
	// MaxEntryBytes is the largest response cached (default 1 MiB).
	MaxEntryBytes int
	// DefaultModel is the model of requests without one (a model's own listener).
	DefaultModel string
	// Log receives cache errors (which are treated as misses).
	Log zerolog.Logger

	counters *tenancyCounters // nil: not counted
}

// ResponseCache answers repeated deterministic requests from a cache: non-streamed
// chat and completion requests with temperature 0 (or top_p 0) or a fixed seed, and
// embeddings, keyed by endpoint, model, tenant and the request body in canonical form
// (JSON key order, spacing and the "user" field do not matter). Cacheable requests get
// "x-hxp-cache: hit" or "x-hxp-cache: miss". Only complete 200 responses of the model
// that was asked for are stored (a fallback's answer is not). A cache that cannot
// answer is a miss; it never fails a request. Hits are recorded in the ledger with
// zero tokens: no model computed them.
type ResponseCache struct {
	opts ResponseCacheOptions
}

// NewResponseCache returns the link.
func NewResponseCache(opts ResponseCacheOptions) *ResponseCache {
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Minute
	}
	if opts.MaxEntryBytes <= 0 {
		opts.MaxEntryBytes = 1 << 20
	}
	return &ResponseCache{opts: opts}
}

// Name implements Middleware.
func (*ResponseCache) Name() string { return "response-cache" }

// CacheHeader tells whether a cacheable response came from the cache.
const CacheHeader = "X-Hxp-Cache"

// Wrap implements Middleware.
func (c *ResponseCache) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		m := metaOf(ctx)
		if m == nil || m.bad || m.stream || !m.deterministic || m.op == OpTokenize || m.op == OpDetokenize {
			next(ctx)
			return
		}
		model := m.model
		if model == "" {
			model = c.opts.DefaultModel
		}
		key, ok := c.key(ctx, m.op, model)
		if !ok {
			next(ctx)
			return
		}
		body, found, err := c.opts.Store.Get(ctx, key)
		if err != nil {
			c.opts.Log.Debug().Err(err).Msg("response cache get failed; serving as a miss")
		}
		c.opts.counters.cacheResult(found)
		if found {
			ctx.Response.Header.Set(CacheHeader, "hit")
			if info := infoOf(ctx); info != nil {
				info.Model = model
			}
			ctx.SetStatusCode(fasthttp.StatusOK)
			ctx.SetContentType("application/json")
			ctx.SetBody(body)
			return
		}
		ctx.Response.Header.Set(CacheHeader, "miss")
		next(ctx)
		if ctx.Response.StatusCode() != fasthttp.StatusOK || ctx.Response.IsBodyStream() {
			return
		}
		if info := infoOf(ctx); info != nil && info.Model != "" && info.Model != model {
			return // served by a fallback model
		}
		out := ctx.Response.Body()
		if len(out) == 0 || len(out) > c.opts.MaxEntryBytes {
			return
		}
		val := bytes.Clone(out)
		go func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := c.opts.Store.Set(sctx, key, val, c.opts.TTL); err != nil {
				c.opts.Log.Debug().Err(err).Msg("response cache set failed")
			}
		}()
	}
}

// key returns the cache key of a request: SHA-256 over the endpoint, model, tenant
// scope and canonical body. ok is false when the body is not canonicalisable.
func (c *ResponseCache) key(ctx *fasthttp.RequestCtx, op Op, model string) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(ctx.PostBody()))
	dec.UseNumber()
	var body map[string]any
	if err := dec.Decode(&body); err != nil {
		return "", false
	}
	delete(body, "user")
	delete(body, "model")            // the resolved model is hashed instead
	canon, err := json.Marshal(body) // map keys are sorted
	if err != nil {
		return "", false
	}
	scope := "*"
	if t := TenantOf(ctx); t != nil && !c.opts.Shared {
		scope = t.ID
	}
	h := sha256.New()
	for _, part := range []string{"v1", op.String(), model, scope} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil)), true
}

// MemoryCache is an in-process CacheStore for a gateway without Redis: at most
// MaxEntries entries, the least recently used evicted first, each until its TTL.
type MemoryCache struct {
	max int
	now func() time.Time

	mu      sync.Mutex
	order   *list.List // front: most recently used
	entries map[string]*list.Element
}

type memEntry struct {
	key     string
	value   []byte
	expires time.Time
}

// NewMemoryCache returns an empty cache of at most maxEntries (default 10000).
func NewMemoryCache(maxEntries int) *MemoryCache {
	if maxEntries <= 0 {
		maxEntries = 10000
	}
	return &MemoryCache{max: maxEntries, now: time.Now, order: list.New(), entries: map[string]*list.Element{}}
}

// Get implements CacheStore.
func (m *MemoryCache) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.entries[key]
	if !ok {
		return nil, false, nil
	}
	e := el.Value.(*memEntry)
	if !m.now().Before(e.expires) {
		m.order.Remove(el)
		delete(m.entries, key)
		return nil, false, nil
	}
	m.order.MoveToFront(el)
	return e.value, true, nil
}

// Set implements CacheStore.
func (m *MemoryCache) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := &memEntry{key: key, value: value, expires: m.now().Add(ttl)}
	if el, ok := m.entries[key]; ok {
		el.Value = e
		m.order.MoveToFront(el)
		return nil
	}
	m.entries[key] = m.order.PushFront(e)
	for m.order.Len() > m.max {
		last := m.order.Back()
		m.order.Remove(last)
		delete(m.entries, last.Value.(*memEntry).key)
	}
	return nil
}

// Len returns the number of entries (expired ones included until they are touched).
func (m *MemoryCache) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.order.Len()
}
