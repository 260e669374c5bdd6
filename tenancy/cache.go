package tenancy

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/infer"
)

// CacheStore keeps encoded results by key for a time; *redis.Cache (shared by every
// gateway) and MemoryCache (one process) implement it.
type CacheStore interface {
	// Get returns the value under key; found is false when there is none.
	Get(ctx context.Context, key string) (value []byte, found bool, err error)
	// Add stores value under key for ttl unless key already holds a value: the first
	// answer stored stays, so that concurrent misses of one request cannot replace
	// what hits have already replayed.
	Add(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// Cache returns next behind the response cache (next itself when cache.enabled is
// off). It answers repeated deterministic requests from the store: chat and
// completion requests that are not streamed and whose output depends on the request
// only (infer.GenParams.Deterministic: temperature 0 or a seed chosen by the client),
// and embeddings. A hit replays the stored result (the same id, text and usage as the
// first answer) with Served.Cache = CacheHit, which admission records with zero
// tokens (no model computed it); a miss has CacheMiss, and only a complete,
// successful result of the model asked for is stored (not a fallback's). A store that
// cannot answer is a miss; it never fails a request. Requests that are not cacheable
// have CacheNone.
//
// The key is SHA-256 over a format version, the operation, the model, the caller's id
// (or "*" with cache.shared, or without a caller: a caller could otherwise learn from
// a fast answer that another sent the same prompt) and the request in canonical JSON
// (see canonicalJSON).
func (t *Tenancy) Cache(next infer.Service) infer.Service {
	if t.cache == nil {
		return next
	}
	return &responseCache{next: next, store: t.cache, ttl: t.cfg.Cache.TTL.D(), shared: t.cfg.Cache.Shared,
		log: t.cfg.Log, counters: &t.counters}
}

// responseCache is the Service of Tenancy.Cache.
type responseCache struct {
	next     infer.Service
	store    CacheStore
	ttl      time.Duration // default 5m
	shared   bool
	maxBytes int // the largest value stored; default 1 MiB
	log      zerolog.Logger
	counters *counters
}

var _ infer.Service = (*responseCache)(nil)

// cacheVersion starts every key: a change of the key or value format changes it.
const cacheVersion = "infer-v1"

// Models implements infer.Service.
func (c *responseCache) Models(ctx context.Context) []infer.Model { return c.next.Models(ctx) }

// ApplyTemplate implements infer.Service; renderings are not cached.
func (c *responseCache) ApplyTemplate(ctx context.Context, r *infer.ApplyTemplateRequest) (*infer.RenderedPrompt, error) {
	return c.next.ApplyTemplate(ctx, r)
}

// Tokenize implements infer.Service; the tokenizer is not cached.
func (c *responseCache) Tokenize(ctx context.Context, r *infer.TokenizeRequest) (*infer.Tokens, error) {
	return c.next.Tokenize(ctx, r)
}

// Detokenize implements infer.Service; the tokenizer is not cached.
func (c *responseCache) Detokenize(ctx context.Context, r *infer.DetokenizeRequest) (*infer.Text, error) {
	return c.next.Detokenize(ctx, r)
}

// Chat implements infer.Service.
func (c *responseCache) Chat(ctx context.Context, r *infer.ChatRequest) (*infer.Generation, error) {
	call := func() (*infer.Generation, error) { return c.next.Chat(ctx, r) }
	if r.Stream || !r.Deterministic() {
		return call()
	}
	k := *r
	k.Model = resolveModel(ctx, c.next, r.Model)
	k.GenParams = keyParams(r.GenParams)
	return c.generation(ctx, "chat", k.Model, &k, call)
}

// Complete implements infer.Service.
func (c *responseCache) Complete(ctx context.Context, r *infer.CompletionRequest) (*infer.Generation, error) {
	call := func() (*infer.Generation, error) { return c.next.Complete(ctx, r) }
	if r.Stream || !r.Deterministic() {
		return call()
	}
	k := *r
	k.Model = resolveModel(ctx, c.next, r.Model)
	k.GenParams = keyParams(r.GenParams)
	return c.generation(ctx, "complete", k.Model, &k, call)
}

// keyParams are the generation settings as the key sees them: a seed the client did
// not choose is random and does not matter to a deterministic request, and a schema
// is canonical JSON.
func keyParams(g infer.GenParams) infer.GenParams {
	if !g.SeedFixed {
		g.Sampling.Seed = 0
	}
	if s, err := canonicalJSON(json.RawMessage(g.Format.Schema)); err == nil && len(g.Format.Schema) > 0 {
		g.Format.Schema = s
	}
	return g
}

// Embed implements infer.Service.
func (c *responseCache) Embed(ctx context.Context, r *infer.EmbedRequest) (*infer.Embeddings, error) {
	k := *r
	k.Model = resolveModel(ctx, c.next, r.Model)
	key, ok := c.key(ctx, "embed", k.Model, &k)
	if !ok {
		return c.next.Embed(ctx, r)
	}
	if v, found := lookup[storedEmbeddings](ctx, c, key); found {
		if e, ok := v.decode(); ok {
			return e, nil
		}
	}
	e, err := c.next.Embed(ctx, r)
	if err != nil {
		return e, err
	}
	e.Cache = infer.CacheMiss
	if e.Model == k.Model {
		c.save(key, encodeEmbeddings(e))
	}
	return e, nil
}

// generation answers a cacheable chat or completion request.
func (c *responseCache) generation(ctx context.Context, op, model string, keyReq any, call func() (*infer.Generation, error)) (*infer.Generation, error) {
	key, ok := c.key(ctx, op, model, keyReq)
	if !ok {
		return call()
	}
	if v, found := lookup[storedResult](ctx, c, key); found {
		return v.replay(), nil
	}
	g, err := call()
	if err != nil {
		return g, err
	}
	return c.tee(g, key, model), nil
}

// key is the cache key of a request; ok is false when it is not cacheable (no model
// known, or a request that does not encode).
func (c *responseCache) key(ctx context.Context, op, model string, req any) (string, bool) {
	if model == "" {
		return "", false
	}
	canon, err := canonicalJSON(req)
	if err != nil {
		c.log.Debug().Err(err).Msg("response cache: request not encodable; not cached")
		return "", false
	}
	scope := "*"
	if cl := infer.CallerFrom(ctx); cl != nil && !c.shared {
		scope = cl.ID
	}
	h := sha256.New()
	for _, part := range []string{cacheVersion, op, model, scope} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(canon)
	return hex.EncodeToString(h.Sum(nil)), true
}

// canonicalJSON encodes v so that equal requests encode equally: struct fields in
// their fixed order, and every JSON object inside (map keys, tool parameters and
// schemas passed through as raw JSON) with its keys sorted, numbers as written.
func canonicalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, err
	}
	return json.Marshal(tree) // objects decoded as maps: keys sorted
}

// lookup reads and decodes key's value; a store error or a value that does not decode
// is a miss.
func lookup[T any](ctx context.Context, c *responseCache, key string) (*T, bool) {
	b, found, err := c.store.Get(ctx, key)
	if err != nil {
		c.log.Debug().Err(err).Msg("response cache get failed; serving as a miss")
	}
	var v T
	if found {
		if err := json.Unmarshal(b, &v); err != nil {
			c.log.Debug().Err(err).Msg("response cache: stored value does not decode; serving as a miss")
			found = false
		}
	}
	c.counters.cacheResult(found)
	return &v, found
}

// save stores value in the background; a failure is logged only.
func (c *responseCache) save(key string, value []byte) {
	maxBytes, ttl := c.maxBytes, c.ttl
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	if len(value) == 0 || len(value) > maxBytes {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := c.store.Add(ctx, key, value, ttl); err != nil {
			c.log.Debug().Err(err).Msg("response cache set failed")
		}
	}()
}

// tee passes inner's events on as they come and stores the result once it is
// complete, successful and of the model asked for. A copy of each event goes to a
// mirror generation that infer's own Collect assembles, so that the stored result is
// exactly what a client collecting the generation gets.
func (c *responseCache) tee(inner *infer.Generation, key, model string) *infer.Generation {
	served := inner.Served
	served.Cache = infer.CacheMiss
	copies := make(chan infer.Event, 16)
	mirror := infer.NewGeneration(served, inner.Choices, func() {}, func(emit func(infer.Event) bool) infer.Usage {
		for ev := range copies {
			emit(ev)
		}
		return infer.Usage{}
	})
	complete := make(chan *infer.Summary, 1) // nil: not complete, not stored
	go func() {
		res, err := mirror.Collect()
		if s := <-complete; s != nil && err == nil && res.Model == model {
			stored := storedOf(res)
			stored.Usage = s.Usage
			if b, err := json.Marshal(stored); err == nil {
				c.save(key, b)
			}
		}
	}()
	return infer.NewGeneration(served, inner.Choices, inner.Close, func(emit func(infer.Event) bool) infer.Usage {
		ended := make(chan infer.Summary, 1)
		inner.OnEnd(func(s infer.Summary) { ended <- s })
		left := false
		for ev := range inner.Events() {
			copies <- ev
			if !emit(ev) {
				left = true
				break
			}
		}
		close(copies)
		s := <-ended
		if !left && s.Err == nil {
			complete <- &s
		} else {
			complete <- nil
		}
		return s.Usage
	})
}

// storedResult is a collected generation as stored.
type storedResult struct {
	Model   string         `json:"m"`
	ID      string         `json:"i"`
	Created time.Time      `json:"t"`
	Usage   infer.Usage    `json:"u"`
	Choices []storedChoice `json:"c"`
}

type storedChoice struct {
	Text      string               `json:"t"`
	Reasoning string               `json:"r,omitempty"`
	ToolCalls []chat.ToolCall      `json:"k,omitempty"`
	Logprobs  []infer.TokenLogprob `json:"l,omitempty"`
	Finish    infer.FinishReason   `json:"f,omitempty"`
}

func storedOf(res *infer.Result) storedResult {
	s := storedResult{Model: res.Model, ID: res.ID, Created: res.Created, Choices: make([]storedChoice, len(res.Choices))}
	for i, ch := range res.Choices {
		s.Choices[i] = storedChoice{Text: ch.Text, Reasoning: ch.Reasoning, ToolCalls: ch.ToolCalls, Logprobs: ch.Logprobs, Finish: ch.Finish}
	}
	return s
}

// replay is a generation of the stored result, the same answer as the first time (id,
// creation time and usage included); admission records hits with zero tokens.
func (r *storedResult) replay() *infer.Generation {
	return infer.NewGeneration(infer.Served{Model: r.Model, ID: r.ID, Created: r.Created, Cache: infer.CacheHit}, len(r.Choices), func() {},
		func(emit func(infer.Event) bool) infer.Usage {
			for i, ch := range r.Choices {
				ev := infer.Event{Choice: i, Text: ch.Text, Reasoning: ch.Reasoning, Logprobs: ch.Logprobs}
				for j, tc := range ch.ToolCalls {
					ev.ToolCalls = append(ev.ToolCalls, infer.ToolCallDelta{Index: j, ID: tc.ID, Name: tc.Name, Arguments: tc.Arguments})
				}
				if !emit(ev) || !emit(infer.Event{Choice: i, Done: true, Finish: ch.Finish}) {
					break
				}
			}
			return r.Usage
		})
}

// storedEmbeddings are embeddings as stored: each vector as little-endian float32s.
type storedEmbeddings struct {
	Model   string      `json:"m"`
	Usage   infer.Usage `json:"u"`
	Vectors [][]byte    `json:"v"`
}

func encodeEmbeddings(e *infer.Embeddings) []byte {
	s := storedEmbeddings{Model: e.Model, Usage: e.Usage, Vectors: make([][]byte, len(e.Vectors))}
	for i, v := range e.Vectors {
		b := make([]byte, 0, 4*len(v))
		for _, f := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
		}
		s.Vectors[i] = b
	}
	out, err := json.Marshal(s)
	if err != nil {
		return nil // not stored
	}
	return out
}

// decode is the hit of stored embeddings; ok is false for a malformed value.
func (s *storedEmbeddings) decode() (*infer.Embeddings, bool) {
	e := &infer.Embeddings{Served: infer.Served{Model: s.Model, Cache: infer.CacheHit}, Usage: s.Usage, Vectors: make([][]float32, len(s.Vectors))}
	for i, b := range s.Vectors {
		if len(b)%4 != 0 {
			return nil, false
		}
		v := make([]float32, len(b)/4)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
		}
		e.Vectors[i] = v
	}
	return e, true
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

var _ CacheStore = (*MemoryCache)(nil)

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

// Add implements CacheStore: a live entry under key is kept, an expired one replaced.
func (m *MemoryCache) Add(_ context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("memory cache: ttl %s must be positive", ttl)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := &memEntry{key: key, value: value, expires: m.now().Add(ttl)}
	if el, ok := m.entries[key]; ok {
		if m.now().Before(el.Value.(*memEntry).expires) {
			return nil
		}
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
