package tenancy

import (
	"context"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/connectors/redis"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/testenv"
)

// A key revoked through one gateway's admin API stops working on another gateway
// that had it cached, through Redis' invalidation channel: the key cache's TTL is an
// hour, so only the published invalidation can explain the refusal. A gateway without
// the channel (no Redis) keeps serving the revoked key until its TTL, then refuses it.
func TestRevocationReachesOtherGateways(t *testing.T) {
	pg, rd := testenv.SharedPostgres(t), testenv.SharedRedis(t)
	hour := config.Duration(time.Hour)
	gw := func(redisURL string, ttl config.Duration) *opened {
		return openTenancy(t, Config{
			Auth:     config.KeyAuth{Required: true, AdminKey: "admin-secret-for-tests", CacheTTL: ttl},
			Postgres: config.Postgres{URL: pg.URL()},
			Redis:    config.Redis{URL: redisURL, FailMode: "open", Timeout: config.Duration(time.Second)},
		})
	}
	a, b := gw(rd.URL(), hour), gw(rd.URL(), hour)
	short := config.Duration(2 * time.Second)
	noRedis := gw("", short)
	ctx := context.Background()
	secret, k, err := a.DB.CreateKey(ctx, postgres.KeySpec{Name: "revoked-soon"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []*opened{a, b, noRedis} {
		o.login(t, secret) // cached on every gateway
	}
	if _, err := a.Admin().RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	refused := func(o *opened) bool {
		_, err := o.Authenticate(ctx, secret)
		return infer.KindOf(err) == infer.Unauthenticated
	}
	if !refused(a) {
		t.Fatal("the revoking gateway still accepts the key")
	}
	start := time.Now()
	waitFor(t, "gateway b to refuse the revoked key", func() bool { return refused(b) })
	t.Logf("revocation reached gateway b after %v (its key cache TTL is %v)", time.Since(start).Round(time.Millisecond), hour.D())

	// Without the channel the TTL bounds it: the cached key works until it expires.
	if refused(noRedis) && time.Since(start) < short.D() {
		t.Fatal("a gateway without Redis refused the key before its cache TTL: nothing should have told it")
	}
	waitFor(t, "the gateway without Redis to refuse after its TTL", func() bool { return refused(noRedis) })
}

// An "all" invalidation (sent when a lost subscription comes back) drops every cached
// key and budget.
func TestInvalidateAllFlushesCaches(t *testing.T) {
	pg := testenv.SharedPostgres(t)
	o := openTenancy(t, Config{Auth: config.KeyAuth{Required: true, CacheTTL: config.Duration(time.Hour)},
		Postgres: config.Postgres{URL: pg.URL()}})
	ctx := context.Background()
	secret, k, err := o.DB.CreateKey(ctx, postgres.KeySpec{Name: "flushed"})
	if err != nil {
		t.Fatal(err)
	}
	o.login(t, secret)
	if err := o.DB.RevokeKey(ctx, k.ID); err != nil { // behind the cache's back
		t.Fatal(err)
	}
	if _, err := o.Authenticate(ctx, secret); err != nil {
		t.Fatalf("the cached key should still work before the flush: %v", err)
	}
	o.Budgets.Add(k.ID, 10)
	o.invalidate(redisAll)
	if _, err := o.Authenticate(ctx, secret); infer.KindOf(err) != infer.Unauthenticated {
		t.Fatalf("after an all invalidation the revoked key authenticates: %v", err)
	}
	o.Budgets.mu.Lock()
	n := len(o.Budgets.m)
	o.Budgets.mu.Unlock()
	if n != 0 {
		t.Fatalf("budgets still cache %d keys after an all invalidation", n)
	}
}

var redisAll = redis.Invalidation{Kind: redis.InvalidateAll}
