package tenancy

import (
	"context"
	"time"

	"github.com/hxp-ai/hxp/connectors/redis"
)

// Instant invalidation between gateways: a key revoked (or a budget reset) through one
// gateway's admin API is published on Redis (redis.InvalidationChannel); every
// gateway subscribed drops its cached entry as the message arrives, so the key stops
// working everywhere within a second instead of auth.cache_ttl. While Redis is
// unreachable the TTL still bounds it, and when the subscription comes back every
// cached key and budget is dropped (invalidations sent meanwhile were lost).

// subscribe starts the gateway's subscription; Close stops it.
func (t *Tenancy) subscribe() {
	if t.Redis == nil || (t.Keys == nil && t.Budgets == nil) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.stopSub = func() {
		cancel()
		<-done
	}
	go func() {
		defer close(done)
		_ = t.Redis.Subscribe(ctx, t.invalidate)
	}()
}

// invalidate applies one invalidation to this gateway's caches.
func (t *Tenancy) invalidate(inv redis.Invalidation) {
	switch inv.Kind {
	case redis.InvalidateKey:
		if t.Keys != nil {
			t.Keys.Invalidate(inv.KeyID)
		}
	case redis.InvalidateBudget:
		if t.Budgets != nil {
			t.Budgets.Forget(inv.KeyID)
		}
	case redis.InvalidateAll:
		if t.Keys != nil {
			t.Keys.Flush()
		}
		if t.Budgets != nil {
			t.Budgets.Flush()
		}
	}
	t.cfg.Log.Debug().Str("kind", string(inv.Kind)).Str("key_id", inv.KeyID).Msg("tenancy: invalidation applied")
}

// Publish tells every gateway (this one included) to drop what it caches of inv's
// key. Without Redis it applies inv here only. A failed publish is logged: the other
// gateways then learn within auth.cache_ttl.
func (t *Tenancy) Publish(ctx context.Context, inv redis.Invalidation) {
	t.invalidate(inv)
	if t.Redis == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := t.Redis.Publish(ctx, inv); err != nil {
		t.cfg.Log.Warn().Err(err).Str("key_id", inv.KeyID).Msg("tenancy: invalidation not published; other gateways see it within auth.cache_ttl")
	}
}
