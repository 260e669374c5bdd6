package redis

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/internal/testenv"
)

// subscriber runs Subscribe on its own client until the test ends and hands every
// delivered Invalidation to the returned channel.
func subscriber(t *testing.T, url string, logs *testenv.Buffer) (*Client, <-chan Invalidation) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := Open(ctx, url, Options{Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	got := make(chan Invalidation, 16)
	done := make(chan error, 1)
	go func() { done <- c.Subscribe(ctx, func(inv Invalidation) { got <- inv }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Subscribe returned %v", err)
		}
		c.Close()
	})
	return c, got
}

// waitSubscribed waits until Redis counts n subscribers on the channel: a message
// published before that is delivered to nobody.
func waitSubscribed(t *testing.T, c *Client, n int64) {
	t.Helper()
	ctx := testCtx(t)
	for {
		counts, err := c.rdb.PubSubNumSub(ctx, InvalidationChannel).Result()
		if err == nil && counts[InvalidationChannel] == n {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%d subscribers never appeared: %v %v", n, counts, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receive returns the next Invalidation, failing after within (the 1 s a revocation
// may take to reach every gateway).
func receive(t *testing.T, got <-chan Invalidation, within time.Duration) Invalidation {
	t.Helper()
	select {
	case inv := <-got:
		return inv
	case <-time.After(within):
		t.Fatalf("no invalidation within %s", within)
		return Invalidation{}
	}
}

// pubSubPair starts a Redis server of the test's own (channels are shared by all logical
// databases) with two gateways' clients: a publisher and a running subscriber.
func pubSubPair(t *testing.T) (r *testenv.Redis, pub *Client, got <-chan Invalidation, logs *testenv.Buffer) {
	t.Helper()
	r = testenv.StartRedis(t)
	pub = open(testCtx(t), t, r.URL())
	logs = &testenv.Buffer{}
	_, got = subscriber(t, r.URL(), logs)
	waitSubscribed(t, pub, 1)
	return r, pub, got, logs
}

func TestInvalidationReachesOtherGateway(t *testing.T) {
	ctx := testCtx(t)
	_, pub, got, logs := pubSubPair(t)

	for _, inv := range []Invalidation{{Kind: InvalidateKey, KeyID: "team-a"}, {Kind: InvalidateBudget, KeyID: "team-b"}} {
		if err := pub.Publish(ctx, inv); err != nil {
			t.Fatal(err)
		}
		if rec := receive(t, got, time.Second); rec != inv {
			t.Fatalf("received %+v, published %+v", rec, inv)
		}
	}

	// Malformed messages (another program on the channel) are skipped and logged without
	// their payload; the subscription goes on.
	for _, bad := range []string{"not json", `{"kind":"key"}`, `{"kind":"zap","key_id":"x"}`, `{"kind":"key","key_id":"x","secret":"s3cr3t"}`} {
		if err := pub.rdb.Publish(ctx, InvalidationChannel, bad).Err(); err != nil {
			t.Fatal(err)
		}
	}
	want := Invalidation{Kind: InvalidateKey, KeyID: "after-garbage"}
	if err := pub.Publish(ctx, want); err != nil {
		t.Fatal(err)
	}
	if rec := receive(t, got, time.Second); rec != want {
		t.Fatalf("after malformed messages: received %+v", rec)
	}
	if l := logs.String(); strings.Count(l, "malformed invalidation skipped") != 4 || strings.Contains(l, "s3cr3t") {
		t.Errorf("malformed messages' log:\n%s", l)
	}
}

func TestPublishValidates(t *testing.T) {
	c := open(testCtx(t), t, testenv.SharedRedis(t).URL())
	for _, inv := range []Invalidation{{Kind: InvalidateKey}, {Kind: "zap", KeyID: "x"}, {Kind: InvalidateAll, KeyID: "x"}} {
		if err := c.Publish(testCtx(t), inv); err == nil {
			t.Errorf("Publish(%+v) accepted", inv)
		}
	}
}

// TestSubscriptionSurvivesRestart kills Redis under a subscriber: the loss is logged once,
// and when Redis is back the subscriber resubscribes, drops everything it cached (what was
// published meanwhile is lost) and receives new invalidations again.
func TestSubscriptionSurvivesRestart(t *testing.T) {
	ctx := testCtx(t)
	r, pub, got, logs := pubSubPair(t)

	r.Kill()
	for !strings.Contains(logs.String(), "invalidation subscription lost") {
		if ctx.Err() != nil {
			t.Fatalf("loss never logged:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, pub, 1)
	if inv := receive(t, got, 10*time.Second); inv.Kind != InvalidateAll {
		t.Fatalf("first delivery after the restart: %+v, want %s", inv, InvalidateAll)
	}
	want := Invalidation{Kind: InvalidateKey, KeyID: "revoked-during-restart"}
	if err := pub.Publish(ctx, want); err != nil {
		t.Fatal(err)
	}
	if rec := receive(t, got, time.Second); rec != want {
		t.Fatalf("after the restart: received %+v", rec)
	}
	l := logs.String()
	if strings.Count(l, `"level":"warn"`) != 1 || !strings.Contains(l, "invalidation subscription restored") {
		t.Errorf("want one warning for the outage and a restore line:\n%s", l)
	}
}
