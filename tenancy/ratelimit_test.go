package tenancy

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/connectors/redis"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/limits"
)

// attempts is a Limiter that records when each decision reached it.
type attempts struct {
	limits.Limiter
	mu sync.Mutex
	at []time.Time
}

func (a *attempts) Allow(ctx context.Context, key string, lim limits.Limits, cost limits.Cost) (limits.Decision, error) {
	a.mu.Lock()
	a.at = append(a.at, time.Now())
	a.mu.Unlock()
	return a.Limiter.Allow(ctx, key, lim, cost)
}

func (a *attempts) times() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.at...)
}

func TestRedisRetriedEveryTwoSecondsNotPerRequest(t *testing.T) {
	rd := testenv.StartRedis(t)
	ctx := context.Background()
	rc, err := redis.Open(ctx, rd.URL(), redis.Options{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	shared := &attempts{Limiter: rc.Limiter()}
	r := newRateLimiter(shared, false, zerolog.Nop())
	lim, cost := limits.PerMinute(100_000, 0), limits.Cost{Requests: 1}
	if _, by, err := r.allow(ctx, "k", lim, cost); err != nil || by != shared {
		t.Fatalf("with Redis up: decided by %T, %v; want Redis", by, err)
	}
	rd.Kill()
	// Requests keep coming, one every 5 ms: Redis is tried by the first, then once per
	// retryShared; the in-process limiter answers the others at once.
	deadline := time.Now().Add(30 * time.Second)
	answered := 0
	for len(shared.times()) < 1+3 {
		if time.Now().After(deadline) {
			t.Fatalf("Redis was tried %d times during the outage in 30 s", len(shared.times())-1)
		}
		d, by, err := r.allow(ctx, "k", lim, cost)
		if err != nil || !d.Allowed || by != r.local {
			t.Fatalf("Redis down, failing open: %+v by %T, %v; want the in-process limiter's admission", d, by, err)
		}
		answered++
		time.Sleep(5 * time.Millisecond)
	}
	tried := shared.times()[1:]
	for i := 1; i < len(tried); i++ {
		if gap := tried[i].Sub(tried[i-1]); gap < retryShared {
			t.Errorf("Redis tried again %s after the last failure; want at least %s", gap, retryShared)
		}
	}
	if answered <= len(tried) {
		t.Errorf("%d requests answered while Redis was tried %d times: Redis is tried per request", answered, len(tried))
	}
}
