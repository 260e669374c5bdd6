package limits_test

import (
	"context"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/limits"
	"github.com/hxp-ai/hxp/limits/limitstest"
)

func TestMemoryConformance(t *testing.T) {
	limitstest.Run(t, func(t *testing.T) (limits.Limiter, limits.Limiter) {
		m := limits.NewMemory(nil)
		return m, m
	})
}

func TestMemoryRefillIsExact(t *testing.T) {
	ctx := context.Background()
	clock := limitstest.NewClock(time.Unix(1_700_000_000, 0))
	m := limits.NewMemory(clock.Now)
	lim := limits.PerMinute(6, 0) // one request every 10 s
	for i := range 6 {
		if d, _ := m.Allow(ctx, "k", lim, limits.Cost{Requests: 1}); !d.Allowed {
			t.Fatalf("request %d refused", i)
		}
	}
	d, _ := m.Allow(ctx, "k", lim, limits.Cost{Requests: 1})
	if d.Allowed || d.RetryAfter != 10*time.Second || d.Requests.Reset != time.Minute {
		t.Fatalf("7th request: %+v", d)
	}
	clock.Add(10*time.Second - time.Microsecond)
	if d, _ := m.Allow(ctx, "k", lim, limits.Cost{Requests: 1}); d.Allowed || d.RetryAfter != time.Microsecond {
		t.Fatalf("a microsecond early: %+v", d)
	}
	clock.Add(time.Microsecond)
	if d, _ := m.Allow(ctx, "k", lim, limits.Cost{Requests: 1}); !d.Allowed || d.Requests.Remaining != 0 {
		t.Fatalf("on time: %+v", d)
	}
	// Odd limits must not lose a request to rounding: 7 per minute, 7 admitted, 8th refused.
	lim7 := limits.PerMinute(7, 0)
	for i := range 7 {
		if d, _ := m.Allow(ctx, "k7", lim7, limits.Cost{Requests: 1}); !d.Allowed {
			t.Fatalf("request %d of 7 refused: %+v", i, d)
		}
	}
	if d, _ := m.Allow(ctx, "k7", lim7, limits.Cost{Requests: 1}); d.Allowed {
		t.Fatal("8th of 7 admitted")
	}
}

func TestMemoryForgetsIdleKeys(t *testing.T) {
	ctx := context.Background()
	clock := limitstest.NewClock(time.Unix(1_700_000_000, 0))
	m := limits.NewMemory(clock.Now)
	lim := limits.PerMinute(10, 0)
	for i := range 5000 {
		m.Allow(ctx, limits.Key("key", string(rune('a'+i%26))+time.Duration(i).String()), lim, limits.Cost{Requests: 1})
		if i == 100 {
			clock.Add(time.Minute) // the first hundred keys are idle from here on
		}
	}
	if n := m.Len(); n >= 5000-100 {
		t.Fatalf("%d keys kept; idle ones were not swept", n)
	}
	// A key whose bucket is full holds no state at all: a peek stores nothing, and a bucket
	// that has refilled is deleted.
	fresh := limits.NewMemory(clock.Now)
	if d, err := fresh.Allow(ctx, "peek", lim, limits.Cost{}); err != nil || !d.Allowed || d.Requests.Remaining != 10 {
		t.Fatalf("peek: %+v, %v", d, err)
	}
	if n := fresh.Len(); n != 0 {
		t.Fatalf("a peek on a full bucket left %d keys", n)
	}
	fresh.Allow(ctx, "used", lim, limits.Cost{Requests: 1})
	if n := fresh.Len(); n != 1 {
		t.Fatalf("a used bucket: %d keys, want 1", n)
	}
	clock.Add(time.Minute)
	fresh.Allow(ctx, "used", lim, limits.Cost{})
	if n := fresh.Len(); n != 0 {
		t.Fatalf("a refilled bucket: %d keys, want 0", n)
	}
}

func TestKeyIsUnambiguous(t *testing.T) {
	if limits.Key("a:b", "c") == limits.Key("a", "b:c") {
		t.Fatal("different (key, model) pairs share a limiter key")
	}
}
