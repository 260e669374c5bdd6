package limits_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/limits"
	"github.com/hxp-ai/hxp/limits/limitstest"
)

// backend is the shared backend of the tests: a Memory that counts the calls it answers and
// can be taken down.
type backend struct {
	*limits.Memory
	leases, allows, charges, refunds atomic.Int64
	down                             atomic.Bool
}

func newBackend(now func() time.Time) *backend { return &backend{Memory: limits.NewMemory(now)} }

func (b *backend) up() error {
	if b.down.Load() {
		return fmt.Errorf("test backend: %w", limits.ErrUnavailable)
	}
	return nil
}

func (b *backend) Lease(ctx context.Context, key string, lim limits.Limits, cost limits.Cost, extra limits.Extra) (limits.Decision, int64, error) {
	if err := b.up(); err != nil {
		return limits.Decision{}, 0, err
	}
	b.leases.Add(1)
	return b.Memory.Lease(ctx, key, lim, cost, extra)
}

func (b *backend) Allow(ctx context.Context, key string, lim limits.Limits, cost limits.Cost) (limits.Decision, error) {
	if err := b.up(); err != nil {
		return limits.Decision{}, err
	}
	b.allows.Add(1)
	return b.Memory.Allow(ctx, key, lim, cost)
}

func (b *backend) Charge(ctx context.Context, key string, lim limits.Limits, tokens int64) error {
	if err := b.up(); err != nil {
		return err
	}
	b.charges.Add(1)
	return b.Memory.Charge(ctx, key, lim, tokens)
}

func (b *backend) Refund(ctx context.Context, key string, lim limits.Limits, units limits.Cost) error {
	if err := b.up(); err != nil {
		return err
	}
	b.refunds.Add(1)
	return b.Memory.Refund(ctx, key, lim, units)
}

// peek returns the backend's own view of key's buckets, without the leases.
func (b *backend) peek(t *testing.T, key string, lim limits.Limits) limits.Decision {
	t.Helper()
	d, err := b.Memory.Allow(context.Background(), key, lim, limits.Cost{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newLeased(t *testing.T, b limits.Leaser, opts limits.LeasedOptions) *limits.Leased {
	t.Helper()
	l, err := limits.NewLeased(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// held returns the units l holds for key: what it reports remaining less what b reports.
func held(t *testing.T, l *limits.Leased, b *backend, key string, lim limits.Limits) limits.Cost {
	t.Helper()
	d, err := l.Allow(context.Background(), key, lim, limits.Cost{})
	if err != nil {
		t.Fatal(err)
	}
	own := b.peek(t, key, lim)
	return limits.Cost{Requests: d.Requests.Remaining - own.Requests.Remaining, Tokens: d.Tokens.Remaining - own.Tokens.Remaining}
}

func TestLeasedConformance(t *testing.T) {
	opts := limits.LeasedOptions{TTL: time.Hour} // no lease expires within a subtest
	t.Run("OneGateway", func(t *testing.T) {
		limitstest.Run(t, func(t *testing.T) (limits.Limiter, limits.Limiter) {
			l := newLeased(t, limits.NewMemory(nil), opts)
			return l, l
		})
	})
	t.Run("TwoGateways", func(t *testing.T) {
		limitstest.RunOptions(t, func(t *testing.T) (limits.Limiter, limits.Limiter) {
			m := limits.NewMemory(nil)
			return newLeased(t, m, opts), newLeased(t, m, opts)
		}, limitstest.Options{Leases: true})
	})
}

func TestLeasedAdmitsFromItsLease(t *testing.T) {
	ctx := context.Background()
	// The backend's clock stands still (its buckets do not refill); the limiter's moves 1 ms
	// a request: 1000 requests a second, about 100 per horizon.
	frozen := limitstest.NewClock(time.Unix(1_700_000_000, 0))
	clock := limitstest.NewClock(frozen.Now())
	b := newBackend(frozen.Now)
	l := newLeased(t, b, limits.LeasedOptions{Now: clock.Now})
	lim := limits.Limits{Requests: 1_000_000, Tokens: 100_000_000, Period: time.Hour}
	cost := limits.Cost{Requests: 1, Tokens: 30}
	const n = 2000
	for i := range n {
		if d, err := l.Allow(ctx, "hot", lim, cost); err != nil || !d.Allowed || d.Requests.Limit != lim.Requests {
			t.Fatalf("request %d: %+v, %v", i, d, err)
		}
		clock.Add(time.Millisecond)
	}
	calls := b.leases.Load() + b.allows.Load()
	st := l.Stats()
	if calls*10 > n || st.Local+st.Backend != n || st.Local < n*9/10 {
		t.Fatalf("%d backend calls for %d requests (stats %+v); want most requests admitted from the lease", calls, n, st)
	}
	limits.Settle(l)
	if h := held(t, l, b, "hot", lim); h.Requests <= 0 || h.Tokens != 30*h.Requests {
		t.Fatalf("held %+v: want units of the average request leased ahead of demand", h)
	}
	// Close refunds what is held: the bucket holds exactly what was admitted.
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d := b.peek(t, "hot", lim); d.Requests.Remaining != lim.Requests-n || d.Tokens.Remaining != lim.Tokens-30*n {
		t.Fatalf("after Close: %+v; want %d requests and %d tokens taken", d, n, 30*n)
	}
	if st := l.Stats(); st.Refunds == 0 || st.RefundErrors != 0 {
		t.Fatalf("stats after Close: %+v", st)
	}
	// A closed limiter is a plain one.
	if d, err := l.Allow(ctx, "hot", lim, cost); err != nil || !d.Allowed || d.Requests.Remaining != lim.Requests-n-1 {
		t.Fatalf("after Close: %+v, %v", d, err)
	}
}

func TestLeasedHeadersCountOwnUse(t *testing.T) {
	// One gateway, one request at a time, no time passing: between backend calls the
	// reported buckets count this limiter's own admissions exactly.
	ctx := context.Background()
	clock := limitstest.NewClock(time.Unix(1_700_000_000, 0))
	b := newBackend(clock.Now)
	l := newLeased(t, b, limits.LeasedOptions{Now: clock.Now})
	lim := limits.Limits{Requests: 1000, Tokens: 100_000, Period: time.Hour}
	interval := time.Hour / 1000
	for i := int64(1); i <= 200; i++ {
		d, err := l.Allow(ctx, "h", lim, limits.Cost{Requests: 1, Tokens: 100})
		if err != nil || !d.Allowed {
			t.Fatalf("request %d: %+v, %v", i, d, err)
		}
		if d.Requests.Remaining != 1000-i || d.Tokens.Remaining != 100_000-100*i {
			t.Fatalf("request %d reports %d requests, %d tokens remaining; want %d, %d", i, d.Requests.Remaining, d.Tokens.Remaining, 1000-i, 100_000-100*i)
		}
		if want := time.Duration(i) * interval; d.Requests.Reset < want-time.Millisecond || d.Requests.Reset > want+time.Millisecond {
			t.Fatalf("request %d: reset %s, want %s", i, d.Requests.Reset, want)
		}
		limits.Settle(l)
	}
	if st := l.Stats(); st.Local < 100 {
		t.Fatalf("stats %+v: the lease answered few requests", st)
	}
}

func TestLeasedTwoGatewaysAdmitExactlyTheLimit(t *testing.T) {
	b := newBackend(nil)
	opts := limits.LeasedOptions{TTL: time.Hour}
	ls := []*limits.Leased{newLeased(t, b, opts), newLeased(t, b, opts)}
	lim := limits.Limits{Requests: 1000, Tokens: 1_000_000, Period: 365 * 24 * time.Hour}
	if got := limitstest.UntilRefused(context.Background(), t, ls, 8, 300, "k", lim, limits.Cost{Requests: 1, Tokens: 7}); got != 1000 {
		t.Fatalf("two gateways asking until refused admitted %d against a limit of 1000", got)
	}
	var local uint64
	for _, l := range ls {
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		local += l.Stats().Local
	}
	if local == 0 {
		t.Error("no request was answered from a lease")
	}
	// Nothing was held back: the closed limiters refunded nothing they had not used.
	if d := b.peek(t, "k", lim); d.Requests.Remaining != 0 || d.Tokens.Remaining != 1_000_000-7000 {
		t.Fatalf("after both closed: %+v", d)
	}
}

func TestLeasedNearTheLimitEveryDecisionIsExact(t *testing.T) {
	b := newBackend(nil)
	ls := []*limits.Leased{newLeased(t, b, limits.LeasedOptions{}), newLeased(t, b, limits.LeasedOptions{})}
	lim := limits.PerMinute(5, 0)
	if got := limitstest.UntilRefused(context.Background(), t, ls, 24, 1, "five", lim, limits.Cost{Requests: 1}); got != 5 {
		t.Fatalf("admitted %d at 5 per minute", got)
	}
	for _, l := range ls {
		if st := l.Stats(); st.Local != 0 {
			t.Fatalf("%d decisions of a 5-per-minute key came from a lease: %+v", st.Local, st)
		}
	}
	if n := b.allows.Load() + b.leases.Load(); n < 24 {
		t.Fatalf("%d backend calls for at least 24 requests", n)
	}
}

func TestLeasedRefundsExpiredLeases(t *testing.T) {
	frozen := limitstest.NewClock(time.Unix(1_700_000_000, 0))
	clock := limitstest.NewClock(frozen.Now())
	b := newBackend(frozen.Now)
	l := newLeased(t, b, limits.LeasedOptions{Now: clock.Now, TTL: 50 * time.Millisecond})
	lim := limits.Limits{Requests: 10_000, Period: time.Hour}
	for i := range 50 {
		if d, err := l.Allow(context.Background(), "idle", lim, limits.Cost{Requests: 1}); err != nil || !d.Allowed {
			t.Fatalf("request %d: %+v, %v", i, d, err)
		}
	}
	limits.Settle(l)
	if h := held(t, l, b, "idle", lim); h.Requests <= 0 {
		t.Fatalf("held %+v after 50 requests; want a lease", h)
	}
	// The key gets no more requests; once its lease has expired, the sweeper gives its
	// units back (counted once the backend has answered the refund, so wait for both).
	clock.Add(time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for b.peek(t, "idle", lim).Requests.Remaining != 10_000-50 || l.Stats().Refunds == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the expired lease was not refunded: %+v, stats %+v", b.peek(t, "idle", lim), l.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLeasedChargePaysFromTheLease(t *testing.T) {
	ctx := context.Background()
	frozen := limitstest.NewClock(time.Unix(1_700_000_000, 0))
	b := newBackend(frozen.Now)
	l := newLeased(t, b, limits.LeasedOptions{Now: frozen.Now})
	lim := limits.Limits{Requests: 1000, Tokens: 100_000, Period: time.Hour}
	for range 20 {
		if d, err := l.Allow(ctx, "c", lim, limits.Cost{Requests: 1, Tokens: 10}); err != nil || !d.Allowed {
			t.Fatalf("%+v, %v", d, err)
		}
	}
	limits.Settle(l)
	if h := held(t, l, b, "c", lim); h.Tokens < 5 {
		t.Fatalf("held %+v: want a lease of tokens", h)
	}
	// Tokens used beyond the estimate come out of the lease: no backend call.
	if err := l.Charge(ctx, "c", lim, 5); err != nil {
		t.Fatal(err)
	}
	if n := b.charges.Load(); n != 0 {
		t.Fatalf("%d backend charges for tokens the lease held", n)
	}
	// Over-estimates go back to the backend.
	if err := l.Charge(ctx, "c", lim, -7); err != nil {
		t.Fatal(err)
	}
	if n := b.charges.Load(); n != 1 {
		t.Fatalf("%d backend charges after a refund", n)
	}
	// Nothing was lost: after Close the bucket holds the admissions and both charges.
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d := b.peek(t, "c", lim); d.Requests.Remaining != 1000-20 || d.Tokens.Remaining != 100_000-200-5+7 {
		t.Fatalf("after Close: %+v", d)
	}
}

func TestLeasedBackendDown(t *testing.T) {
	ctx := context.Background()
	frozen := limitstest.NewClock(time.Unix(1_700_000_000, 0))
	b := newBackend(frozen.Now)
	l := newLeased(t, b, limits.LeasedOptions{Now: frozen.Now})
	lim := limits.Limits{Requests: 1000, Tokens: 100_000, Period: time.Hour}
	cost := limits.Cost{Requests: 1, Tokens: 10}
	for range 30 {
		if d, err := l.Allow(ctx, "d", lim, cost); err != nil || !d.Allowed {
			t.Fatalf("%+v, %v", d, err)
		}
	}
	limits.Settle(l)
	h := held(t, l, b, "d", lim)
	if h.Requests <= 0 {
		t.Fatalf("held %+v: want a lease", h)
	}
	// With the backend down, the lease admits what it holds, exactly; then requests fail
	// with ErrUnavailable, for the caller to fail open or closed.
	b.down.Store(true)
	var admitted int64
	for {
		d, err := l.Allow(ctx, "d", lim, cost)
		if err != nil {
			if !errors.Is(err, limits.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			break
		}
		if !d.Allowed {
			t.Fatalf("refused with the backend down: %+v", d)
		}
		if admitted++; admitted > h.Requests {
			t.Fatalf("admitted %d with the backend down, more than the %d held", admitted, h.Requests)
		}
	}
	if admitted != h.Requests {
		t.Fatalf("admitted %d with the backend down; the lease held %d", admitted, h.Requests)
	}
	limits.Settle(l)
	if st := l.Stats(); st.RefillErrors == 0 {
		t.Fatalf("stats %+v: the failed refills are not counted", st)
	}
	b.down.Store(false)
	if d, err := l.Allow(ctx, "d", lim, cost); err != nil || !d.Allowed {
		t.Fatalf("backend back: %+v, %v", d, err)
	}
}

func TestNewLeasedRejectsBadOptions(t *testing.T) {
	for _, o := range []limits.LeasedOptions{{Horizon: -1}, {TTL: -time.Second}, {Share: 1.5}, {Share: -0.5}, {Timeout: -1}} {
		if _, err := limits.NewLeased(limits.NewMemory(nil), o); !errors.Is(err, limits.ErrInvalid) {
			t.Errorf("NewLeased(%+v): err = %v, want ErrInvalid", o, err)
		}
	}
}

// heldBackend is a backend whose first Lease is decided at once and answered only when
// release is closed; decided is closed when it has been decided.
type heldBackend struct {
	*limits.Memory
	calls            atomic.Int64
	decided, release chan struct{}
}

func (b *heldBackend) Lease(ctx context.Context, key string, lim limits.Limits, cost limits.Cost, extra limits.Extra) (limits.Decision, int64, error) {
	d, n, err := b.Memory.Lease(ctx, key, lim, cost, extra)
	if b.calls.Add(1) == 1 {
		close(b.decided)
		<-b.release
	}
	return d, n, err
}

// waitSignal is a context that closes asked the first time its Done is called: Leased calls
// it only when a refused request waits for this limiter's calls in flight.
type waitSignal struct {
	context.Context
	once  sync.Once
	asked chan struct{}
}

func (c *waitSignal) Done() <-chan struct{} {
	c.once.Do(func() { close(c.asked) })
	return c.Context.Done()
}

func TestLeasedRefusalReportsNothingRemaining(t *testing.T) {
	// An admission's answer lands after a refusal decided later: the refusal must not report
	// the units the admission's stale figure shows, which another gateway has taken since.
	ctx := context.Background()
	clock := limitstest.NewClock(time.Unix(1_700_000_000, 0))
	b := &heldBackend{Memory: limits.NewMemory(clock.Now), decided: make(chan struct{}), release: make(chan struct{})}
	l := newLeased(t, b, limits.LeasedOptions{Now: clock.Now})
	lim := limits.PerMinute(5, 1000)
	cost := limits.Cost{Requests: 1, Tokens: 10}

	// allow asks l in the background; the decision comes on the channel.
	allow := func(ctx context.Context) <-chan limits.Decision {
		out := make(chan limits.Decision, 1)
		go func() {
			d, err := l.Allow(ctx, "k", lim, cost)
			if err != nil {
				t.Error(err)
			}
			out <- d
		}()
		return out
	}
	first := allow(ctx)
	<-b.decided // admitted by the backend: 4 requests remaining in its answer, not yet landed
	// Another gateway takes the rest.
	if d, err := b.Memory.Allow(ctx, "k", lim, limits.Cost{Requests: 4, Tokens: 40}); err != nil || !d.Allowed || d.Requests.Remaining != 0 {
		t.Fatalf("the other gateway: %+v, %v", d, err)
	}
	wait := &waitSignal{Context: ctx, asked: make(chan struct{})}
	second := allow(wait)
	<-wait.asked // refused by the backend, waiting for the first call to land
	close(b.release)
	if d := <-first; !d.Allowed || d.Requests.Remaining != 4 {
		t.Fatalf("first request: %+v; want admitted with 4 remaining", d)
	}
	d := <-second
	if d.Allowed || d.Requests.Remaining != 0 || d.RetryAfter <= 0 {
		t.Fatalf("refusal: %+v; want refused with 0 requests remaining", d)
	}
	// The tokens did not refuse it: they are the view's approximate figure, between the
	// backend's answers to the two calls.
	if d.Tokens.Remaining < 1000-50 || d.Tokens.Remaining > 1000-10 {
		t.Fatalf("refusal reports %d tokens remaining, want %d..%d", d.Tokens.Remaining, 1000-50, 1000-10)
	}
}

func TestLeasedAdmitsForAtMostItsTTLWhileTheBackendIsDown(t *testing.T) {
	ctx := context.Background()
	frozen := limitstest.NewClock(time.Unix(1_700_000_000, 0))
	clock := limitstest.NewClock(frozen.Now())
	b := newBackend(frozen.Now)
	const ttl = time.Second
	l := newLeased(t, b, limits.LeasedOptions{Now: clock.Now, TTL: ttl})
	lim := limits.Limits{Requests: 1000, Period: time.Hour}
	cost := limits.Cost{Requests: 1}
	for range 30 {
		if d, err := l.Allow(ctx, "ttl", lim, cost); err != nil || !d.Allowed {
			t.Fatalf("%+v, %v", d, err)
		}
	}
	limits.Settle(l)
	if h := held(t, l, b, "ttl", lim); h.Requests < 2 {
		t.Fatalf("held %+v: want a lease of at least 2", h)
	}
	// Down, within the TTL: the lease admits.
	b.down.Store(true)
	clock.Add(ttl / 2)
	if d, err := l.Allow(ctx, "ttl", lim, cost); err != nil || !d.Allowed {
		t.Fatalf("within the lease's TTL with the backend down: %+v, %v", d, err)
	}
	// Past the TTL the units it still holds no longer admit: the backend decides, and is down.
	clock.Add(ttl / 2)
	if d, err := l.Allow(ctx, "ttl", lim, cost); !errors.Is(err, limits.ErrUnavailable) {
		t.Fatalf("past the lease's TTL with the backend down: %+v, %v; want ErrUnavailable", d, err)
	}
	limits.Settle(l)
	if st := l.Stats(); st.RefundErrors == 0 {
		t.Fatalf("stats %+v: the expired lease's refund did not reach the backend", st)
	}
}
