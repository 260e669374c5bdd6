package tenancy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fakeClock is a settable clock for budgets, key caches, caches and limiters.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// waitFor is testenv.WaitFor: a hang guard, not a timing assertion.
var waitFor = testenv.WaitFor

func TestStaticKeys(t *testing.T) {
	s := NewStaticKeys([]StaticKey{{Hash: HashKey("team-a-secret"), Caller: infer.Caller{ID: "team-a", Models: []string{"m"}}}},
		[]string{"plain-secret-1"})
	ta, err := s.Lookup(context.Background(), "team-a-secret")
	if err != nil || ta.ID != "team-a" || !ta.AllowsModel("m") || ta.AllowsModel("other") {
		t.Fatalf("hashed key: %+v, %v", ta, err)
	}
	tp, err := s.Lookup(context.Background(), "plain-secret-1")
	if err != nil || !strings.HasPrefix(tp.ID, "static-") || strings.Contains(tp.ID, "plain") || !tp.AllowsModel("any") {
		t.Fatalf("plain key: %+v, %v", tp, err)
	}
	for _, bad := range []string{"", "team-a-secre", "team-a-secret ", "TEAM-A-SECRET"} {
		if _, err := s.Lookup(context.Background(), bad); !errors.Is(err, ErrKeyRefused) {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
	exp := NewStaticKeys([]StaticKey{{Hash: HashKey("old"), Caller: infer.Caller{ID: "old", ExpiresAt: time.Now().Add(-time.Minute)}}}, nil)
	if _, err := exp.Lookup(context.Background(), "old"); !errors.Is(err, ErrKeyRefused) {
		t.Errorf("expired static key: %v", err)
	}
}

// lookupFunc is a KeyLookup from a function.
type lookupFunc func(secret string) (postgres.Key, error)

func (f lookupFunc) LookupKey(_ context.Context, secret string) (postgres.Key, error) {
	return f(secret)
}

func TestKeyCacheServesKnownKeysThroughAnOutage(t *testing.T) {
	clk := newFakeClock()
	var mu sync.Mutex
	down, calls := false, 0
	db := lookupFunc(func(secret string) (postgres.Key, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		switch {
		case down:
			return postgres.Key{}, errors.New("connection refused")
		case secret == "good":
			return postgres.Key{ID: "k1", Name: "one", RPM: 7, AllowedModels: []string{"m"}}, nil
		case secret == "gone":
			return postgres.Key{}, postgres.ErrKeyRevoked
		}
		return postgres.Key{}, postgres.ErrKeyNotFound
	})
	c := NewKeyCache(db, KeyCacheOptions{TTL: 30 * time.Second, NegativeTTL: 5 * time.Second})
	c.now = clk.now
	ctx := context.Background()
	if k, err := c.Lookup(ctx, "good"); err != nil || k.ID != "k1" || k.RPM != 7 || k.AllowsModel("x") {
		t.Fatalf("good key: %+v, %v", k, err)
	}
	for range 3 { // refused keys are remembered for the negative TTL
		if _, err := c.Lookup(ctx, "gone"); !errors.Is(err, ErrKeyRefused) {
			t.Fatalf("revoked key: %v", err)
		}
	}
	c.Lookup(ctx, "good")
	if calls != 2 {
		t.Fatalf("%d lookups reached the database, want 2 (one per key)", calls)
	}
	// The database goes down after the TTL: the known key works, an unknown one cannot
	// be checked (not refused: the client is told to retry).
	mu.Lock()
	down = true
	mu.Unlock()
	clk.add(31 * time.Second)
	if k, err := c.Lookup(ctx, "good"); err != nil || k.ID != "k1" {
		t.Fatalf("known key during an outage: %+v, %v", k, err)
	}
	if _, err := c.Lookup(ctx, "never-seen"); err == nil || errors.Is(err, ErrKeyRefused) {
		t.Fatalf("unknown key during an outage: %v, want an unavailable store", err)
	}
	// Invalidate forgets the key: its next use reaches the database.
	c.Invalidate("k1")
	if _, err := c.Lookup(ctx, "good"); err == nil || errors.Is(err, ErrKeyRefused) {
		t.Fatalf("invalidated key with the database down: %v", err)
	}
}

// usageFunc is a UsageSource from a function.
type usageFunc func(keyID string) (int64, error)

func (f usageFunc) UsageThisMonth(_ context.Context, keyID string) (int64, error) { return f(keyID) }

func TestBudgetsAddLocalUsageToTheLedgerFigure(t *testing.T) {
	clk := newFakeClock()
	var mu sync.Mutex
	ledger := int64(100)
	fail := false
	calls := make(chan struct{}, 10)
	src := usageFunc(func(string) (int64, error) {
		defer func() { calls <- struct{}{} }()
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return 0, errors.New("database down")
		}
		return ledger, nil
	})
	b := NewBudgets(src, BudgetOptions{Refresh: 15 * time.Second, FlushLag: 3 * time.Second})
	b.now = clk.now
	// First sight: unknown, a fetch starts; local usage already counts.
	b.Add("k", 7)
	if used, known := b.Used("k"); known || used != 7 {
		t.Fatalf("before the first read: %d, %v", used, known)
	}
	<-calls
	waitFor(t, "first read", func() bool { _, known := b.Used("k"); return known })
	// Usage recorded before the read (within the flush lag) is still added: it may not
	// have reached the ledger yet.
	if used, _ := b.Used("k"); used != 107 {
		t.Fatalf("after the first read: %d, want 107", used)
	}
	clk.add(10 * time.Second)
	b.Add("k", 5)
	if used, _ := b.Used("k"); used != 112 {
		t.Fatalf("local usage after the read: %d, want 112", used)
	}
	// A refresh replaces the ledger figure; local usage older than the lag is dropped.
	mu.Lock()
	ledger = 150
	mu.Unlock()
	clk.add(10 * time.Second)
	b.Used("k")
	<-calls
	waitFor(t, "refresh", func() bool { used, _ := b.Used("k"); return used == 150 })
	// The database fails: the cached figure stays.
	mu.Lock()
	fail = true
	mu.Unlock()
	clk.add(20 * time.Second)
	b.Used("k")
	<-calls
	b.Add("k", 1)
	if used, known := b.Used("k"); used != 151 || !known {
		t.Fatalf("with the database down: %d, %v", used, known)
	}
	// A new month starts from zero.
	clk.add(30 * 24 * time.Hour)
	if used, known := b.Used("k"); used != 0 || known {
		t.Fatalf("new month: %d, %v", used, known)
	}
}

func TestNextMonth(t *testing.T) {
	for _, c := range []struct {
		now  string
		want time.Duration
	}{
		{"2026-03-31T23:59:00Z", time.Minute},
		{"2026-12-31T12:00:00Z", 12 * time.Hour},
		{"2026-02-01T00:00:00Z", 28 * 24 * time.Hour},
		{"2026-04-30T23:00:00-02:00", 743 * time.Hour}, // 2026-05-01T01:00Z: already May in UTC
	} {
		now, _ := time.Parse(time.RFC3339, c.now)
		if got := nextMonth(now); got != c.want {
			t.Errorf("nextMonth(%s) = %s, want %s", c.now, got, c.want)
		}
	}
}

func TestMemoryCache(t *testing.T) {
	clk := newFakeClock()
	c := NewMemoryCache(2)
	c.now = clk.now
	ctx := context.Background()
	c.Add(ctx, "a", []byte("1"), time.Minute)
	c.Add(ctx, "b", []byte("2"), time.Minute)
	c.Get(ctx, "a") // a is now the most recently used
	c.Add(ctx, "c", []byte("3"), time.Minute)
	if _, ok, _ := c.Get(ctx, "b"); ok {
		t.Error("least recently used entry not evicted")
	}
	if v, ok, _ := c.Get(ctx, "a"); !ok || string(v) != "1" {
		t.Error("recently used entry evicted")
	}
	c.Add(ctx, "a", []byte("later"), time.Minute) // the first value stays
	if v, _, _ := c.Get(ctx, "a"); string(v) != "1" {
		t.Errorf("a second Add replaced a live entry: %q", v)
	}
	clk.add(time.Minute)
	if _, ok, _ := c.Get(ctx, "a"); ok {
		t.Error("expired entry served")
	}
	c.Add(ctx, "a", []byte("again"), time.Minute) // an expired one is replaced
	if v, ok, _ := c.Get(ctx, "a"); !ok || string(v) != "again" {
		t.Errorf("Add over an expired entry: %q, %v", v, ok)
	}
	if err := c.Add(ctx, "d", []byte("4"), 0); err == nil {
		t.Error("a zero ttl is accepted")
	}
}

func TestEstimate(t *testing.T) {
	r := &infer.ChatRequest{Messages: []chat.Message{{Role: "user", Content: strings.Repeat("x", 400)}},
		Tools: []chat.Tool{{Name: "f", Description: strings.Repeat("d", 39), Parameters: json.RawMessage(`{"type":"object"}`)}}}
	if got := chatSize(r); got != (400+1+39+17)/4 {
		t.Errorf("chatSize = %d", got)
	}
	ps := []infer.Prompt{{Text: "abcdefgh"}, {Tokens: []engine.Token{1, 2, 3}, IsTokens: true}}
	if got := promptsSize(ps); got != 2+3 {
		t.Errorf("promptsSize = %d, want 5", got)
	}
	for _, c := range []struct {
		req       request
		tpm, want int64
	}{
		{request{prompt: 100, generates: true}, 1000, 100},
		{request{prompt: 0, generates: true}, 1000, 1},       // at least 1
		{request{prompt: 5000, generates: true}, 1000, 1000}, // at most the limit
		{request{prompt: 100, generates: true}, 0, 0},        // no token limit
		{request{prompt: 100}, 1000, 0},                      // the tokenizer: requests only
	} {
		if got := c.req.estimate(c.tpm); got != c.want {
			t.Errorf("%+v at tpm %d: %d, want %d", c.req, c.tpm, got, c.want)
		}
	}
}

func TestCacheKeyIsCanonical(t *testing.T) {
	c := &responseCache{counters: &counters{}}
	ctx := infer.WithCaller(context.Background(), &infer.Caller{ID: "a"})
	base := func() *infer.ChatRequest {
		return &infer.ChatRequest{Model: "m", Messages: []chat.Message{{Role: "user", Content: "hi"}},
			Tools:     []chat.Tool{{Name: "f", Parameters: json.RawMessage(`{"type":"object","properties":{"a":{"type":"string"},"b":{}}}`)}},
			GenParams: infer.GenParams{N: 1, Format: infer.Format{Type: infer.FormatJSONSchema, Schema: []byte(`{"type":"object","required":["x"]}`)}}}
	}
	key := func(ctx context.Context, r *infer.ChatRequest) string {
		k := *r
		k.GenParams = keyParams(r.GenParams)
		s, ok := c.key(ctx, "chat", r.Model, &k)
		if !ok {
			t.Fatalf("not cacheable: %+v", r)
		}
		return s
	}
	want := key(ctx, base())
	// The same request with objects spelled in another key order and spacing, and
	// another random seed (the client chose none), has the same key.
	same := base()
	same.Tools[0].Parameters = json.RawMessage(`{ "properties": {"b": {}, "a": {"type": "string"}}, "type": "object" }`)
	same.Format.Schema = []byte(`{"required":["x"], "type":"object"}`)
	same.Sampling.Seed = 12345
	if got := key(ctx, same); got != want {
		t.Error("an equal request spelled differently has another key")
	}
	// Anything that changes the output changes the key, and so does the caller.
	for name, change := range map[string]func(r *infer.ChatRequest){
		"content":    func(r *infer.ChatRequest) { r.Messages[0].Content = "hi!" },
		"max_tokens": func(r *infer.ChatRequest) { r.MaxTokens = 3 },
		"fixed seed": func(r *infer.ChatRequest) { r.SeedFixed, r.Sampling.Seed = true, 7 },
		"schema":     func(r *infer.ChatRequest) { r.Format.Schema = []byte(`{"type":"array"}`) },
		"tool":       func(r *infer.ChatRequest) { r.Tools[0].Name = "g" },
		"model":      func(r *infer.ChatRequest) { r.Model = "n" },
	} {
		r := base()
		change(r)
		if key(ctx, r) == want {
			t.Errorf("%s: same key", name)
		}
	}
	if key(infer.WithCaller(context.Background(), &infer.Caller{ID: "b"}), base()) == want {
		t.Error("two callers share a key without cache.shared")
	}
	c.shared = true
	if key(infer.WithCaller(context.Background(), &infer.Caller{ID: "b"}), base()) != key(ctx, base()) {
		t.Error("two callers do not share a key with cache.shared")
	}
}
