package redis

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

func TestLimiterLeaseMatchesInProcessArithmetic(t *testing.T) {
	// Leases, refunds and charges: the Lua script and limits.DecideLease, RefundState and
	// ChargeState must agree on every number, the units leased included.
	ctx := testCtx(t)
	rl := open(ctx, t, testenv.SharedRedis(t).URL()).Limiter()
	mem := limits.NewMemory(nil)
	lim := limits.Limits{Requests: 40, Tokens: 1000, Period: time.Hour}
	type step struct {
		cost   limits.Cost
		extra  limits.Extra
		refund limits.Cost // instead of a lease, when not zero
		charge int64       // instead of a lease, when not zero
	}
	unit := func(r, t int64) limits.Cost { return limits.Cost{Requests: r, Tokens: t} }
	steps := []step{
		{cost: unit(1, 10), extra: limits.Extra{Unit: unit(1, 10), Count: 5, Share: 0.5}},
		{cost: unit(1, 10), extra: limits.Extra{Unit: unit(1, 30), Count: 100, Share: 0.125}},
		{extra: limits.Extra{Unit: unit(2, 7), Count: 3, Share: 1}},
		{cost: unit(1, 900), extra: limits.Extra{Unit: unit(1, 1), Count: 3, Share: 1}},
		{refund: unit(3, 20)},
		{cost: unit(1, 1), extra: limits.Extra{Unit: unit(1, 1), Count: 1000, Share: 1}},
		{cost: unit(1, 1), extra: limits.Extra{Unit: unit(1, 1), Count: 1, Share: 1}},
		{charge: 50},
		{refund: unit(100, 10000)},
		{cost: unit(1, 3), extra: limits.Extra{Unit: unit(0, 50), Count: 30, Share: 1.0 / 3}},
		{cost: unit(1, 1001), extra: limits.Extra{Unit: unit(1, 1), Count: 3, Share: 1}},
		{charge: -30},
		{cost: unit(2, 0), extra: limits.Extra{Unit: unit(1, 0), Count: 7, Share: 0.3}},
	}
	for i, s := range steps {
		switch {
		case s.refund != (limits.Cost{}):
			if err := rl.Refund(ctx, "lease", lim, s.refund); err != nil {
				t.Fatal(err)
			}
			mem.Refund(ctx, "lease", lim, s.refund)
		case s.charge != 0:
			if err := rl.Charge(ctx, "lease", lim, s.charge); err != nil {
				t.Fatal(err)
			}
			mem.Charge(ctx, "lease", lim, s.charge)
		default:
			got, gotN, err := rl.Lease(ctx, "lease", lim, s.cost, s.extra)
			if err != nil {
				t.Fatal(err)
			}
			want, wantN, _ := mem.Lease(ctx, "lease", lim, s.cost, s.extra)
			if gotN != wantN || !sameDecision(got, want) {
				t.Fatalf("step %d %+v: redis %+v leased %d, in-process %+v leased %d", i, s, got, gotN, want, wantN)
			}
			continue
		}
		got, _ := rl.Allow(ctx, "lease", lim, limits.Cost{})
		want, _ := mem.Allow(ctx, "lease", lim, limits.Cost{})
		if !sameDecision(got, want) {
			t.Fatalf("after step %d %+v: redis %+v, in-process %+v", i, s, got, want)
		}
	}
}

// sameDecision reports whether two decisions taken microseconds apart agree: every count
// equal, times within a second.
func sameDecision(a, b limits.Decision) bool {
	return a.Allowed == b.Allowed && a.TooLarge == b.TooLarge &&
		a.Requests.Remaining == b.Requests.Remaining && a.Tokens.Remaining == b.Tokens.Remaining &&
		absDiff(a.Requests.Reset, b.Requests.Reset) <= time.Second &&
		absDiff(a.Tokens.Reset, b.Tokens.Reset) <= time.Second &&
		absDiff(a.RetryAfter, b.RetryAfter) <= time.Second
}

// newLeased returns a leased limiter over c's limiter, closed when the test ends.
func newLeased(t *testing.T, c *Client, opts limits.LeasedOptions) *limits.Leased {
	t.Helper()
	l, err := limits.NewLeased(c.Limiter(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// TestLeasedLimiterConformance runs the shared limiter suite on two leased limiters over
// two clients, as two gateways use them.
func TestLeasedLimiterConformance(t *testing.T) {
	limitstest.RunOptions(t, func(t *testing.T) (limits.Limiter, limits.Limiter) {
		db := testenv.SharedRedis(t)
		ctx := testCtx(t)
		opts := limits.LeasedOptions{TTL: time.Hour} // no lease expires within a subtest
		return newLeased(t, open(ctx, t, db.URL()), opts), newLeased(t, open(ctx, t, db.URL()), opts)
	}, limitstest.Options{Leases: true})
}

func TestLeasedTwoGatewaysShareExactLimits(t *testing.T) {
	ctx := testCtx(t)
	db := testenv.SharedRedis(t)
	opts := limits.LeasedOptions{TTL: time.Hour}
	ls := []*limits.Leased{newLeased(t, open(ctx, t, db.URL()), opts), newLeased(t, open(ctx, t, db.URL()), opts)}
	lim := limits.Limits{Requests: 1000, Tokens: 1_000_000, Period: 365 * 24 * time.Hour}
	if got := limitstest.UntilRefused(ctx, t, ls, 8, 300, "shared", lim, limits.Cost{Requests: 1, Tokens: 7}); got != 1000 {
		t.Fatalf("two gateways asking until refused admitted %d against a limit of 1000", got)
	}
	var local uint64
	for _, l := range ls {
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		local += l.Stats().Local
	}
	if local == 0 {
		t.Error("no request was answered from a lease")
	}
	// Closing refunded nothing that was used, and nothing stays held.
	d, err := open(ctx, t, db.URL()).Limiter().Allow(ctx, "shared", lim, limits.Cost{})
	if err != nil || d.Requests.Remaining != 0 || d.Tokens.Remaining != 1_000_000-7000 {
		t.Fatalf("after both closed: %+v, %v", d, err)
	}
}

// scriptCalls returns how many times srv ran a script (EVALSHA or EVAL).
func scriptCalls(ctx context.Context, t *testing.T, c *Client) int64 {
	t.Helper()
	info, err := c.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(stats, "calls="), ",")
		v, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		n += v
	}
	return n
}

func TestLeasedHighLimitKeyMakesFewRedisCalls(t *testing.T) {
	ctx := testCtx(t)
	srv := testenv.StartRedis(t) // its own server: the command counts are this test's
	a, b := open(ctx, t, srv.URL()), open(ctx, t, srv.URL())
	ls := []*limits.Leased{newLeased(t, a, limits.LeasedOptions{}), newLeased(t, b, limits.LeasedOptions{})}
	lim := limits.PerMinute(1<<30, 1<<30)
	before := scriptCalls(ctx, t, a)
	const workers, each = 8, 500
	var wg sync.WaitGroup
	var refused atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				d, err := ls[w%2].Allow(ctx, "hot", lim, limits.Cost{Requests: 1, Tokens: 25})
				if err != nil || !d.Allowed {
					refused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := refused.Load(); n > 0 {
		t.Fatalf("%d requests refused or failed under a limit of 2^30", n)
	}
	calls := scriptCalls(ctx, t, a) - before
	if calls*10 > workers*each {
		t.Fatalf("%d Redis script calls for %d requests; want fewer than one per 10", calls, workers*each)
	}
	t.Logf("%d Redis script calls for %d requests", calls, workers*each)
}

func TestLeasedRefundsExpiredLeasesToRedis(t *testing.T) {
	ctx := testCtx(t)
	c := open(ctx, t, testenv.SharedRedis(t).URL())
	l := newLeased(t, c, limits.LeasedOptions{Horizon: 50 * time.Millisecond, TTL: 100 * time.Millisecond})
	lim := limits.Limits{Requests: 1_000_000, Period: 365 * 24 * time.Hour} // nothing refills during the test
	const n = 200
	for i := range n {
		if d, err := l.Allow(ctx, "expiring", lim, limits.Cost{Requests: 1}); err != nil || !d.Allowed {
			t.Fatalf("request %d: %+v, %v", i, d, err)
		}
	}
	// The key gets no more requests: its lease expires and goes back to Redis. The
	// refund is counted after Redis answers it, so wait for both.
	waitUntil(ctx, t, "the expired lease refunded", func() bool {
		d, err := c.Limiter().Allow(ctx, "expiring", lim, limits.Cost{})
		return err == nil && d.Requests.Remaining == lim.Requests-n && l.Stats().Refunds > 0
	})
	if st := l.Stats(); st.Local == 0 {
		t.Fatalf("stats %+v: want requests answered from a lease", st)
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

// TestLeaseAdmitsAtMostItsTTLWhileRedisIsDown: with the real Redis killed, a gateway goes on
// admitting from the units it leased, but only until the lease's TTL: then its units are no
// longer usable and every request fails with ErrUnavailable, for the caller to fail open or
// closed. The limiter's clock is fake, so that the TTL passes exactly when the test says.
func TestLeaseAdmitsAtMostItsTTLWhileRedisIsDown(t *testing.T) {
	ctx := testCtx(t)
	srv := testenv.StartRedis(t) // its own server: the test kills it
	c := open(ctx, t, srv.URL())
	clock := limitstest.NewClock(time.Unix(1_700_000_000, 0))
	const ttl = time.Minute
	l := newLeased(t, c, limits.LeasedOptions{Now: clock.Now, TTL: ttl})
	lim := limits.Limits{Requests: 1_000_000, Period: 365 * 24 * time.Hour} // nothing refills
	cost := limits.Cost{Requests: 1}
	for i := range 200 {
		if d, err := l.Allow(ctx, "down", lim, cost); err != nil || !d.Allowed {
			t.Fatalf("request %d: %+v, %v", i, d, err)
		}
	}
	// The lease holds units: what the gateway reports remaining exceeds Redis's own figure.
	waitUntil(ctx, t, "a lease held", func() bool {
		mine, err1 := l.Allow(ctx, "down", lim, limits.Cost{})
		redis, err2 := c.Limiter().Allow(ctx, "down", lim, limits.Cost{})
		return err1 == nil && err2 == nil && mine.Requests.Remaining >= redis.Requests.Remaining+2
	})

	srv.Kill()
	if _, err := c.Limiter().Allow(ctx, "down", lim, cost); !errors.Is(err, limits.ErrUnavailable) {
		t.Fatalf("Redis killed, a direct call: err = %v, want ErrUnavailable", err)
	}
	// Just before the TTL, the lease still admits.
	clock.Add(ttl - time.Millisecond)
	if d, err := l.Allow(ctx, "down", lim, cost); err != nil || !d.Allowed {
		t.Fatalf("Redis down, within the lease's TTL: %+v, %v; want admitted from the lease", d, err)
	}
	// At the TTL it admits no more, although it still held units.
	clock.Add(time.Millisecond)
	for i := range 3 {
		if d, err := l.Allow(ctx, "down", lim, cost); !errors.Is(err, limits.ErrUnavailable) {
			t.Fatalf("Redis down, the lease's TTL over, request %d: %+v, %v; want ErrUnavailable", i, d, err)
		}
	}

	// Redis comes back (empty: no persistence): requests are admitted again.
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(ctx, t, "admitted after Redis restarted", func() bool {
		d, err := l.Allow(ctx, "down", lim, cost)
		return err == nil && d.Allowed
	})
}

func TestLimiterKeyExpires(t *testing.T) {
	// A bucket's hash disappears once it has refilled, so idle keys cost no memory.
	ctx := testCtx(t)
	c := open(ctx, t, testenv.SharedRedis(t).URL())
	// The TTL is the refill time of what was taken (one request: half an hour), plus 1 ms,
	// not the period (an hour). The key cannot expire while the test reads it; the lower
	// bound leaves a loaded machine a minute between the two calls.
	slow := limits.Limits{Requests: 2, Period: time.Hour}
	if _, err := c.Limiter().Allow(ctx, "slow", slow, limits.Cost{Requests: 1}); err != nil {
		t.Fatal(err)
	}
	pttl, err := c.rdb.PTTL(ctx, limiterPrefix+"slow").Result()
	if refill := 30 * time.Minute; err != nil || pttl > refill+time.Millisecond || pttl < refill-time.Minute {
		t.Fatalf("PTTL = %s, %v; want the refill time, %s", pttl, err, refill)
	}
	lim := limits.Limits{Requests: 10, Period: 200 * time.Millisecond}
	if _, err := c.Limiter().Allow(ctx, "idle", lim, limits.Cost{Requests: 1}); err != nil {
		t.Fatal(err)
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
	if err := cache.Add(ctx, "req1", body, time.Minute); err != nil {
		t.Fatal(err)
	}
	// A second value under the key does not replace the first.
	if err := cache.Add(ctx, "req1", []byte("later"), time.Minute); err != nil {
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
	if err := cache.Add(ctx, "bad", body, 0); err == nil || !strings.Contains(err.Error(), "ttl") {
		t.Fatalf("Add with ttl 0: err = %v", err)
	}
}

func TestCacheTTLExpiry(t *testing.T) {
	ctx := testCtx(t)
	c := open(ctx, t, testenv.SharedRedis(t).URL())
	cache := c.Cache("")
	const ttl = 150 * time.Millisecond
	set := time.Now()
	if err := cache.Add(ctx, "short", []byte("v"), ttl); err != nil {
		t.Fatal(err)
	}
	if _, found, err := cache.Get(ctx, "short"); (err != nil || !found) && time.Since(set) < ttl {
		t.Fatalf("fresh entry: found %v, %v", found, err)
	}
	if err := cache.Add(ctx, "long", []byte("v"), time.Hour); err != nil {
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
	if err := cache.Add(ctx, "k", []byte("v"), time.Second); err == nil {
		t.Fatal("Add on a dead redis succeeded")
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
