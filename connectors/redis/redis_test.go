package redis

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/limits"
	"github.com/hxp-ai/hxp/limits/limitstest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func open(ctx context.Context, t *testing.T, url string) *Client {
	t.Helper()
	c, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLimiterConformance runs the shared limiter suite with two clients on one Redis, as two
// gateways would use it.
func TestLimiterConformance(t *testing.T) {
	limitstest.Run(t, func(t *testing.T) (limits.Limiter, limits.Limiter) {
		db := testenv.SharedRedis(t)
		ctx := testCtx(t)
		return open(ctx, t, db.URL()).Limiter(), open(ctx, t, db.URL()).Limiter()
	})
}

func TestLimiterMatchesInProcessArithmetic(t *testing.T) {
	// The Lua script and limits.Decide must agree on every number for the same sequence.
	ctx := testCtx(t)
	rl := open(ctx, t, testenv.SharedRedis(t).URL()).Limiter()
	mem := limits.NewMemory(nil)
	lim := limits.Limits{Requests: 7, Tokens: 333, Period: time.Hour}
	costs := []limits.Cost{
		{Requests: 1, Tokens: 50},
		{Requests: 1, Tokens: 0},
		{Requests: 2, Tokens: 100},
		{Requests: 1, Tokens: 200},
		{Requests: 1, Tokens: 333},
		{Requests: 1, Tokens: 334},
		{Requests: 3, Tokens: 1},
		{Requests: 1, Tokens: 1},
		{Requests: 1, Tokens: 1},
		{Requests: 1, Tokens: 1},
	}
	for i, c := range costs {
		got, err := rl.Allow(ctx, "same", lim, c)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := mem.Allow(ctx, "same", lim, c)
		// Resets and RetryAfter differ by the microseconds between the two calls.
		if got.Allowed != want.Allowed || got.TooLarge != want.TooLarge ||
			got.Requests.Remaining != want.Requests.Remaining || got.Tokens.Remaining != want.Tokens.Remaining ||
			absDiff(got.Requests.Reset, want.Requests.Reset) > time.Second ||
			absDiff(got.Tokens.Reset, want.Tokens.Reset) > time.Second ||
			absDiff(got.RetryAfter, want.RetryAfter) > time.Second {
			t.Fatalf("step %d cost %+v: redis %+v, in-process %+v", i, c, got, want)
		}
	}
}

func TestLimiterErrorsWhenRedisDies(t *testing.T) {
	ctx := testCtx(t)
	srv := testenv.StartRedis(t)
	c := open(ctx, t, srv.URL())
	l := c.Limiter()
	lim := limits.Limits{Requests: 2, Period: time.Hour}
	if d, err := l.Allow(ctx, "k", lim, limits.Cost{Requests: 1}); err != nil || !d.Allowed {
		t.Fatalf("before the crash: %+v, %v", d, err)
	}

	srv.Kill()
	start := time.Now()
	_, err := l.Allow(ctx, "k", lim, limits.Cost{Requests: 1})
	if !errors.Is(err, limits.ErrUnavailable) {
		t.Fatalf("with redis dead: err = %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("failing took %s; the request path needs a fast answer", took)
	}
	if err := l.Charge(ctx, "k", limits.Limits{Tokens: 5}, 1); !errors.Is(err, limits.ErrUnavailable) {
		t.Fatalf("Charge with redis dead: err = %v", err)
	}
	if err := c.Health(ctx); err == nil {
		t.Fatal("Health reports a dead redis as healthy")
	}

	// Redis comes back empty (no persistence) and without the script: the limiter recovers.
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatalf("Health after restart: %v", err)
	}
	d, err := l.Allow(ctx, "k", lim, limits.Cost{Requests: 1})
	if err != nil || !d.Allowed || d.Requests.Remaining != 1 {
		t.Fatalf("after restart: %+v, %v", d, err)
	}
}

func TestLimiterKeyExpires(t *testing.T) {
	// A bucket's hash disappears once it has refilled, so idle keys cost no memory.
	ctx := testCtx(t)
	c := open(ctx, t, testenv.SharedRedis(t).URL())
	lim := limits.Limits{Requests: 10, Period: 200 * time.Millisecond}
	if _, err := c.Limiter().Allow(ctx, "idle", lim, limits.Cost{Requests: 1}); err != nil {
		t.Fatal(err)
	}
	pttl, err := c.rdb.PTTL(ctx, limiterPrefix+"idle").Result()
	if err != nil || pttl <= 0 || pttl > 25*time.Millisecond {
		t.Fatalf("PTTL = %s, %v; want (0, 21ms]", pttl, err)
	}
	waitUntil(ctx, t, "bucket key expired", func() bool {
		n, err := c.rdb.Exists(ctx, limiterPrefix+"idle").Result()
		return err == nil && n == 0
	})
	// A zero-cost peek on a full bucket stores nothing.
	if _, err := c.Limiter().Allow(ctx, "peek", lim, limits.Cost{}); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.rdb.Exists(ctx, limiterPrefix+"peek").Result(); n != 0 {
		t.Fatal("peek stored a bucket")
	}
}

func TestCache(t *testing.T) {
	ctx := testCtx(t)
	c := open(ctx, t, testenv.SharedRedis(t).URL())
	cache := c.Cache("")

	if _, found, err := cache.Get(ctx, "missing"); err != nil || found {
		t.Fatalf("Get(missing) = found %v, %v", found, err)
	}
	body := []byte("{\"id\":\"x\"}\x00\xff binary-safe")
	if err := cache.Set(ctx, "req1", body, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, found, err := cache.Get(ctx, "req1")
	if err != nil || !found || !bytes.Equal(got, body) {
		t.Fatalf("Get(req1) = %q, %v, %v", got, found, err)
	}
	// Another prefix is another namespace.
	if _, found, _ := c.Cache("other:").Get(ctx, "req1"); found {
		t.Fatal("prefixes share entries")
	}
	if err := cache.Delete(ctx, "req1"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := cache.Get(ctx, "req1"); found {
		t.Fatal("deleted entry still found")
	}
	if err := cache.Set(ctx, "bad", body, 0); err == nil || !strings.Contains(err.Error(), "ttl") {
		t.Fatalf("Set with ttl 0: err = %v", err)
	}
}

func TestCacheTTLExpiry(t *testing.T) {
	ctx := testCtx(t)
	c := open(ctx, t, testenv.SharedRedis(t).URL())
	cache := c.Cache("")
	const ttl = 150 * time.Millisecond
	set := time.Now()
	if err := cache.Set(ctx, "short", []byte("v"), ttl); err != nil {
		t.Fatal(err)
	}
	if _, found, err := cache.Get(ctx, "short"); (err != nil || !found) && time.Since(set) < ttl {
		t.Fatalf("fresh entry: found %v, %v", found, err)
	}
	if err := cache.Set(ctx, "long", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	waitUntil(ctx, t, "short entry expired", func() bool {
		_, found, err := cache.Get(ctx, "short")
		return err == nil && !found
	})
	if gone := time.Since(set); gone < ttl-10*time.Millisecond {
		t.Fatalf("entry gone after %s, before its ttl %s", gone, ttl)
	}
	if _, found, err := cache.Get(ctx, "long"); err != nil || !found {
		t.Fatalf("long-lived entry: found %v, %v", found, err)
	}
}

func TestCacheErrorsWhenRedisDies(t *testing.T) {
	ctx := testCtx(t)
	srv := testenv.StartRedis(t)
	cache := open(ctx, t, srv.URL()).Cache("")
	srv.Kill()
	if _, _, err := cache.Get(ctx, "k"); err == nil {
		t.Fatal("Get on a dead redis succeeded")
	}
	if err := cache.Set(ctx, "k", []byte("v"), time.Second); err == nil {
		t.Fatal("Set on a dead redis succeeded")
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := testCtx(t)
	if _, err := Open(ctx, "redis://:hunter2@127.0.0.1:1/0", Options{}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Open without a server: err = %v", err)
	}
	if _, err := Open(ctx, "http://:hunter2@x", Options{}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Open with a bad URL: err = %v", err)
	}
}

func waitUntil(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func absDiff(a, b time.Duration) time.Duration {
	if a > b {
		return a - b
	}
	return b - a
}
