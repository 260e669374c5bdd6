package server

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// fakeClock is a settable clock for breakers, budgets and caches.
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

func TestBreakerLifecycle(t *testing.T) {
	clk := newFakeClock()
	b := NewBreaker(BreakerConfig{FailureThreshold: 3, OpenFor: 10 * time.Second, HalfOpenProbes: 2}, clk.now)
	step := func(what string, want BreakerState) {
		t.Helper()
		if got := b.State(); got != want {
			t.Fatalf("%s: state %s, want %s", what, got, want)
		}
	}
	// Failures below the threshold, interrupted by a success, keep it closed.
	for _, ok := range []bool{false, false, true, false, false} {
		if !b.Allow() {
			t.Fatal("closed breaker refused")
		}
		if ok {
			b.Success()
		} else {
			b.Failure()
		}
	}
	step("two failures after a success", BreakerClosed)
	b.Allow()
	b.Failure()
	step("third consecutive failure", BreakerOpen)
	if b.Allow() || b.Available() {
		t.Fatal("open breaker admitted a request")
	}
	if got := b.RetryIn(); got != 10*time.Second {
		t.Fatalf("RetryIn = %s", got)
	}
	clk.add(10 * time.Second)
	step("after open_for", BreakerHalfOpen)
	// Two probes at a time; a third waits.
	if !b.Allow() || !b.Allow() || b.Allow() {
		t.Fatal("half-open breaker did not admit exactly two probes")
	}
	b.Success()
	step("one probe succeeded of two", BreakerHalfOpen)
	b.Failure()
	step("a probe failed", BreakerOpen)
	clk.add(10 * time.Second)
	b.Allow()
	b.Release() // busy upstream: neither success nor failure
	step("released probe", BreakerHalfOpen)
	b.Allow()
	b.Allow()
	b.Success()
	b.Success()
	step("two probes succeeded", BreakerClosed)
	if b.Opens() != 2 {
		t.Fatalf("opens = %d", b.Opens())
	}
}

func TestBearerToken(t *testing.T) {
	const key = "hxp-abcDEF123"
	for _, c := range []struct {
		name string
		hdrs []string
		ok   bool
	}{
		{"plain", []string{"Bearer " + key}, true},
		{"lower-case scheme", []string{"bearer " + key}, true},
		{"upper-case scheme", []string{"BEARER " + key}, true},
		{"several spaces", []string{"Bearer   " + key}, true},
		{"trailing whitespace", []string{"Bearer " + key + " \t"}, true},
		{"missing", nil, false},
		{"empty", []string{""}, false},
		{"scheme only", []string{"Bearer"}, false},
		{"scheme and space", []string{"Bearer "}, false},
		{"basic", []string{"Basic " + key}, false},
		{"no scheme", []string{key}, false},
		{"tab separator", []string{"Bearer\t" + key}, false},
		{"inner space", []string{"Bearer " + key + " extra"}, false},
		{"inner tab", []string{"Bearer " + key + "\textra"}, false},
		{"control character", []string{"Bearer " + key + "\x01"}, false},
		{"non-ASCII", []string{"Bearer " + key + "é"}, false},
		{"two headers", []string{"Bearer " + key, "Bearer " + key}, false},
		{"too long", []string{"Bearer " + strings.Repeat("a", maxKeyLength+1)}, false},
	} {
		var h fasthttp.RequestHeader
		for _, v := range c.hdrs {
			h.Add("Authorization", v)
		}
		got, ok := bearerToken(&h)
		if ok != c.ok || ok && got != key {
			t.Errorf("%s: got %q, %v; want ok=%v", c.name, got, ok, c.ok)
		}
	}
}

func TestStaticKeys(t *testing.T) {
	s := NewStaticKeys([]StaticKey{{Hash: HashKey("team-a-secret"), Tenant: Tenant{ID: "team-a", Models: []string{"m"}}}},
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
	exp := NewStaticKeys([]StaticKey{{Hash: HashKey("old"), Tenant: Tenant{ID: "old", ExpiresAt: time.Now().Add(-time.Minute)}}}, nil)
	if _, err := exp.Lookup(context.Background(), "old"); !errors.Is(err, ErrKeyRefused) {
		t.Errorf("expired static key: %v", err)
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

func TestMemoryCache(t *testing.T) {
	clk := newFakeClock()
	c := NewMemoryCache(2)
	c.now = clk.now
	ctx := context.Background()
	c.Set(ctx, "a", []byte("1"), time.Minute)
	c.Set(ctx, "b", []byte("2"), time.Minute)
	c.Get(ctx, "a") // a is now the most recently used
	c.Set(ctx, "c", []byte("3"), time.Minute)
	if _, ok, _ := c.Get(ctx, "b"); ok {
		t.Error("least recently used entry not evicted")
	}
	if v, ok, _ := c.Get(ctx, "a"); !ok || string(v) != "1" {
		t.Error("recently used entry evicted")
	}
	clk.add(time.Minute)
	if _, ok, _ := c.Get(ctx, "a"); ok {
		t.Error("expired entry served")
	}
}

func TestParseMeta(t *testing.T) {
	for _, c := range []struct {
		op    Op
		body  string
		model string
		det   bool
		bad   bool
	}{
		{OpChat, `{"model":"a","temperature":0}`, "a", true, false},
		{OpChat, `{"model":"a","temperature":0.7}`, "a", false, false},
		{OpChat, `{"model":"a"}`, "a", false, false},
		{OpChat, `{"model":"a","seed":42,"temperature":1}`, "a", true, false},
		{OpCompletions, `{"model":"a","top_p":0}`, "a", true, false},
		{OpEmbeddings, `{"model":"e","input":"x"}`, "e", true, false},
		{OpChat, `{"model":"a","model":"b"}`, "b", false, false}, // the last one, as the handlers read it
		{OpChat, `{"model":7}`, "", false, true},
		{OpChat, `[1]`, "", false, true},
		{OpChat, `{"temperature":"zero"}`, "", false, false},
	} {
		m := parseMeta(c.op, []byte(c.body))
		if m.model != c.model || m.deterministic != c.det || m.bad != c.bad {
			t.Errorf("%s: %+v", c.body, m)
		}
		if !c.bad {
			peeked, err := peekModel([]byte(c.body))
			if err != nil || peeked != m.model {
				t.Errorf("%s: links read model %q, the router %q (%v)", c.body, m.model, peeked, err)
			}
		}
	}
}

func TestForwardBody(t *testing.T) {
	body := []byte(`{"model":"a","stream":true,"messages":[]}`)
	out, strip, err := forwardBody(body, "b", OpChat)
	if err != nil || !strip {
		t.Fatalf("%s %v %v", out, strip, err)
	}
	var v struct {
		Model         string
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	json.Unmarshal(out, &v)
	if v.Model != "b" || !v.StreamOptions.IncludeUsage {
		t.Fatalf("forwarded %s", out)
	}
	same := []byte(`{"model":"a","stream":true,"stream_options":{"include_usage":true}}`)
	if out, strip, _ := forwardBody(same, "a", OpChat); strip || string(out) != string(same) {
		t.Fatalf("unchanged body rewritten: %s %v", out, strip)
	}
}

func TestInspectEventStripsRequestedUsage(t *testing.T) {
	info := &RequestInfo{}
	chunk := []byte(`data: {"id":"x","choices":[{"index":0}],"usage":null}` + "\n")
	out, keep := inspectEvent(chunk, true, info)
	if !keep || strings.Contains(string(out), "usage") {
		t.Fatalf("chunk: %q %v", out, keep)
	}
	usage := []byte(`data: {"id":"x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}` + "\n")
	if _, keep := inspectEvent(usage, true, info); keep {
		t.Fatal("usage chunk the client did not ask for was kept")
	}
	if info.PromptTokens != 5 || info.CompletionTokens != 3 {
		t.Fatalf("usage not read: %+v", info)
	}
	if out, keep := inspectEvent(usage, false, info); !keep || string(out) != string(usage) {
		t.Fatal("usage chunk the client asked for was changed")
	}
}
