// Package limitstest is the behaviour every limits.Limiter must show, as a test suite that
// each implementation runs against itself: the in-process limiter in package limits and the
// Redis limiter in connectors/redis. It uses the real clock, with periods chosen so that the
// assertions hold however slow the machine is.
package limitstest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/limits"
)

// Factory returns two limiters that share state, as two gateways sharing one Redis do (for an
// in-process limiter, the same limiter twice). Each call must return limiters with no state
// yet: every subtest calls it once.
type Factory func(t *testing.T) (a, b limits.Limiter)

// year is a period long enough that nothing refills during a test: one unit of a limit of
// 100000 per year refills in about 5 minutes.
const year = 365 * 24 * time.Hour

// Options describe what an implementation deliberately does differently from a plain shared
// limiter; the zero value is a plain one.
type Options struct {
	// Leases reports that each limiter may hold units it took from the shared buckets ahead
	// of demand (limits.Leased), so that a debt charged through one limiter refuses the
	// other's requests only once the other has used what it holds. ChargeAndRefund then
	// charges through the limiter it asks. Everything else holds as for a plain limiter,
	// because the suite's limiters keep asking until they are refused.
	Leases bool
}

// Run runs the whole suite as parallel subtests.
func Run(t *testing.T, newLimiters Factory) { RunOptions(t, newLimiters, Options{}) }

// RunOptions runs the whole suite as parallel subtests, for an implementation that differs
// as opts say.
func RunOptions(t *testing.T, newLimiters Factory, opts Options) {
	tests := []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"ExactUnderConcurrentLoad", testExactUnderConcurrentLoad},
		{"TokensExactUnderConcurrentLoad", testTokensExact},
		{"HeaderNumbers", testHeaderNumbers},
		{"RefusalTakesNothing", testRefusalTakesNothing},
		{"WindowRefills", testWindowRefills},
		{"TooLarge", testTooLarge},
		{"ChargeAndRefund", func(t *testing.T, f Factory) { testChargeAndRefund(t, f, opts) }},
		{"KeysAreIndependent", testKeysAreIndependent},
		{"UnlimitedAndPeek", testUnlimitedAndPeek},
		{"RejectsNegative", testRejectsNegative},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newLimiters)
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func allow(ctx context.Context, t *testing.T, l limits.Limiter, key string, lim limits.Limits, cost limits.Cost) limits.Decision {
	t.Helper()
	d, err := l.Allow(ctx, key, lim, cost)
	if err != nil {
		t.Fatalf("Allow(%s): %v", key, err)
	}
	return d
}

// hammer sends about calls Allow requests from 8 goroutines spread over both limiters,
// each then asking until it is refused (so that a limiter holding leased units uses them),
// and returns how many were allowed.
func hammer(ctx context.Context, t *testing.T, a, b limits.Limiter, key string, lim limits.Limits, cost limits.Cost, calls int) int64 {
	t.Helper()
	return UntilRefused(ctx, t, []limits.Limiter{a, b}, 8, (calls+7)/8, key, lim, cost)
}

func testExactUnderConcurrentLoad(t *testing.T, f Factory) {
	ctx := ctxFor(t)
	a, b := f(t)
	lim := limits.Limits{Requests: 100, Tokens: 100000, Period: year}
	if got := hammer(ctx, t, a, b, "exact", lim, limits.Cost{Requests: 1, Tokens: 10}, 300); got != 100 {
		t.Fatalf("allowed %d of 300 requests against a limit of 100", got)
	}
	d := allow(ctx, t, b, "exact", lim, limits.Cost{Requests: 1})
	if d.Allowed || d.Requests.Remaining != 0 || d.RetryAfter <= 0 {
		t.Fatalf("after the limit: %+v", d)
	}
	// Only the admitted requests' tokens were taken.
	if d.Tokens.Remaining != 100000-100*10 {
		t.Fatalf("tokens remaining %d, want %d", d.Tokens.Remaining, 100000-100*10)
	}
}

func testTokensExact(t *testing.T, f Factory) {
	ctx := ctxFor(t)
	a, b := f(t)
	// 1000 tokens at 7 a request: 142 requests fit (994 tokens), the 143rd does not.
	lim := limits.Limits{Tokens: 1000, Period: year}
	if got := hammer(ctx, t, a, b, "tokens", lim, limits.Cost{Requests: 1, Tokens: 7}, 200); got != 142 {
		t.Fatalf("allowed %d requests of 7 tokens against 1000 tokens, want 142", got)
	}
	d := allow(ctx, t, a, "tokens", lim, limits.Cost{Tokens: 6})
	if !d.Allowed || d.Tokens.Remaining != 0 {
		t.Fatalf("the last 6 tokens: %+v", d)
	}
}

func testHeaderNumbers(t *testing.T, f Factory) {
	ctx := ctxFor(t)
	a, _ := f(t)
	lim := limits.Limits{Requests: 10, Tokens: 1000, Period: year}
	var d limits.Decision
	for range 3 {
		d = allow(ctx, t, a, "headers", lim, limits.Cost{Requests: 1, Tokens: 100})
	}
	if !d.Allowed || d.Requests.Limit != 10 || d.Requests.Remaining != 7 || d.Tokens.Limit != 1000 || d.Tokens.Remaining != 700 {
		t.Fatalf("after 3 requests: %+v", d)
	}
	// Full again after 3 emission intervals of a tenth of the period each, less the time the
	// test took.
	want := 3 * year / 10
	if d.Requests.Reset > want || d.Requests.Reset < want-10*time.Second {
		t.Fatalf("requests reset %s, want about %s", d.Requests.Reset, want)
	}
	if absDiff(d.Tokens.Reset, want) > 10*time.Second {
		t.Fatalf("tokens reset %s, want about %s", d.Tokens.Reset, want)
	}
}

func testRefusalTakesNothing(t *testing.T, f Factory) {
	ctx := ctxFor(t)
	a, b := f(t)
	lim := limits.Limits{Requests: 2, Tokens: 100, Period: year}
	allow(ctx, t, a, "refusal", lim, limits.Cost{Requests: 1, Tokens: 90})
	// Enough requests left, not enough tokens: refused, and the request is not taken.
	d := allow(ctx, t, b, "refusal", lim, limits.Cost{Requests: 1, Tokens: 20})
	if d.Allowed || d.TooLarge || d.Requests.Remaining != 1 || d.Tokens.Remaining != 10 {
		t.Fatalf("refused decision: %+v", d)
	}
	// 10 tokens missing, each refilling in a hundredth of the period.
	if want := 10 * year / 100; absDiff(d.RetryAfter, want) > 10*time.Second {
		t.Fatalf("retry after %s, want about %s", d.RetryAfter, want)
	}
	d = allow(ctx, t, a, "refusal", lim, limits.Cost{Requests: 1, Tokens: 10})
	if !d.Allowed {
		t.Fatalf("what remained was not admitted: %+v", d)
	}
}

func testWindowRefills(t *testing.T, f Factory) {
	ctx := ctxFor(t)
	a, b := f(t)
	// One request refills every 500 ms.
	lim := limits.Limits{Requests: 4, Period: 2 * time.Second}
	for i := range 4 {
		if d := allow(ctx, t, a, "refill", lim, limits.Cost{Requests: 1}); !d.Allowed {
			t.Fatalf("request %d of 4 refused: %+v", i, d)
		}
	}
	// The bucket is empty now, unless the machine took over 500 ms for those calls and it
	// refilled a little: take until refused.
	var d limits.Decision
	var refused time.Time
	for i := 0; ; i++ {
		refused = time.Now()
		if d = allow(ctx, t, b, "refill", lim, limits.Cost{Requests: 1}); !d.Allowed {
			break
		}
		if i == 10 {
			t.Fatalf("%d requests admitted beyond a limit of 4: %+v", i+1, d)
		}
	}
	if d.RetryAfter <= 0 || d.RetryAfter > 500*time.Millisecond {
		t.Fatalf("retry after %s, want (0, 500ms]", d.RetryAfter)
	}
	// Admitted again once RetryAfter has passed, not before, and not long after. Times are
	// taken before each call: the limiter decided at or after them.
	var calledAt time.Time
	d2 := waitFor(ctx, t, d.RetryAfter+2*time.Second, func() (limits.Decision, bool) {
		calledAt = time.Now()
		d2 := allow(ctx, t, b, "refill", lim, limits.Cost{Requests: 1})
		return d2, d2.Allowed
	})
	if waited := time.Since(refused); waited < d.RetryAfter-5*time.Millisecond {
		t.Fatalf("admitted after %s, before RetryAfter %s", waited, d.RetryAfter)
	}
	// Left alone for Reset, the bucket is full again.
	reset := d2.Requests.Reset
	if reset <= 0 || reset > lim.Period {
		t.Fatalf("reset %s, want (0, %s]", reset, lim.Period)
	}
	admitted := calledAt
	waitFor(ctx, t, reset+2*time.Second, func() (limits.Decision, bool) {
		d := allow(ctx, t, a, "refill", lim, limits.Cost{})
		return d, d.Requests.Remaining == lim.Requests && d.Requests.Reset == 0
	})
	if waited := time.Since(admitted); waited < reset-5*time.Millisecond {
		t.Fatalf("full after %s, before the announced reset %s", waited, reset)
	}
}

// waitFor polls check every 10 ms until it reports true, failing the test after timeout.
func waitFor(ctx context.Context, t *testing.T, timeout time.Duration, check func() (limits.Decision, bool)) limits.Decision {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d, ok := check()
		if ok {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached within %s; last decision %+v", timeout, d)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func testTooLarge(t *testing.T, f Factory) {
	ctx := ctxFor(t)
	a, _ := f(t)
	lim := limits.Limits{Requests: 10, Tokens: 100, Period: year}
	d := allow(ctx, t, a, "large", lim, limits.Cost{Requests: 1, Tokens: 101})
	if d.Allowed || !d.TooLarge || d.RetryAfter != 0 || d.Tokens.Remaining != 100 || d.Requests.Remaining != 10 {
		t.Fatalf("cost above capacity: %+v", d)
	}
	if d := allow(ctx, t, a, "large", lim, limits.Cost{Requests: 1, Tokens: 100}); !d.Allowed {
		t.Fatalf("cost equal to capacity refused: %+v", d)
	}
}

func testChargeAndRefund(t *testing.T, f Factory, opts Options) {
	ctx := ctxFor(t)
	a, b := f(t)
	charger := b
	if opts.Leases {
		charger = a
	}
	lim := limits.Limits{Requests: 100, Tokens: 100, Period: year}
	if d := allow(ctx, t, a, "charge", lim, limits.Cost{Requests: 1, Tokens: 10}); !d.Allowed {
		t.Fatalf("first request: %+v", d)
	}
	// The completion used 150 tokens more than admitted: the bucket goes into debt.
	if err := charger.Charge(ctx, "charge", lim, 150); err != nil {
		t.Fatal(err)
	}
	d := allow(ctx, t, a, "charge", lim, limits.Cost{Requests: 1, Tokens: 1})
	if d.Allowed || d.Tokens.Remaining != 0 {
		t.Fatalf("after overspending: %+v", d)
	}
	// 160 tokens of debt, 100 of capacity: 61 tokens must refill (a hundredth of the period
	// each) before 1 fits.
	if want := 61 * year / 100; absDiff(d.RetryAfter, want) > 10*time.Second {
		t.Fatalf("retry after %s, want about %s", d.RetryAfter, want)
	}
	// Giving back an over-estimate makes room again.
	if err := a.Charge(ctx, "charge", lim, -100); err != nil {
		t.Fatal(err)
	}
	d = allow(ctx, t, b, "charge", lim, limits.Cost{Requests: 1, Tokens: 40})
	if !d.Allowed || d.Tokens.Remaining != 0 {
		t.Fatalf("after the refund: %+v", d)
	}
	// A refund never makes a bucket fuller than full.
	if err := a.Charge(ctx, "charge", lim, -1000); err != nil {
		t.Fatal(err)
	}
	if d := allow(ctx, t, a, "charge", lim, limits.Cost{}); d.Tokens.Remaining != 100 {
		t.Fatalf("after a large refund: %+v", d)
	}
}

func testKeysAreIndependent(t *testing.T, f Factory) {
	ctx := ctxFor(t)
	a, _ := f(t)
	lim := limits.Limits{Requests: 1, Period: year}
	k1, k2 := limits.Key("key1", "model-a"), limits.Key("key1", "model-b")
	if !allow(ctx, t, a, k1, lim, limits.Cost{Requests: 1}).Allowed {
		t.Fatal("first request on k1 refused")
	}
	if allow(ctx, t, a, k1, lim, limits.Cost{Requests: 1}).Allowed {
		t.Fatal("second request on k1 admitted")
	}
	if !allow(ctx, t, a, k2, lim, limits.Cost{Requests: 1}).Allowed {
		t.Fatal("another model's bucket was affected")
	}
}

func testUnlimitedAndPeek(t *testing.T, f Factory) {
	ctx := ctxFor(t)
	a, _ := f(t)
	for i := range 50 {
		d := allow(ctx, t, a, "free", limits.Limits{}, limits.Cost{Requests: 1, Tokens: 1 << 40})
		if !d.Allowed || d.Requests != (limits.Bucket{}) || d.Tokens != (limits.Bucket{}) {
			t.Fatalf("unlimited request %d: %+v", i, d)
		}
	}
	lim := limits.Limits{Requests: 3, Period: year}
	for range 5 {
		if d := allow(ctx, t, a, "peek", lim, limits.Cost{}); !d.Allowed || d.Requests.Remaining != 3 {
			t.Fatalf("a zero cost took something: %+v", d)
		}
	}
}

func testRejectsNegative(t *testing.T, f Factory) {
	ctx := ctxFor(t)
	a, _ := f(t)
	for _, c := range []struct {
		lim  limits.Limits
		cost limits.Cost
	}{
		{limits.Limits{Requests: -1}, limits.Cost{Requests: 1}},
		{limits.Limits{Tokens: -1}, limits.Cost{Requests: 1}},
		{limits.Limits{Requests: 1}, limits.Cost{Requests: -1}},
		{limits.Limits{Tokens: 1}, limits.Cost{Tokens: -1}},
	} {
		_, err := a.Allow(ctx, "neg", c.lim, c.cost)
		if !errors.Is(err, limits.ErrInvalid) {
			t.Errorf("Allow(%+v, %+v): err = %v, want ErrInvalid", c.lim, c.cost, err)
		}
	}
	if err := a.Charge(ctx, "neg", limits.Limits{Tokens: -1}, 1); !errors.Is(err, limits.ErrInvalid) {
		t.Errorf("Charge with negative limits: err = %v", err)
	}
}

func absDiff(a, b time.Duration) time.Duration {
	if a > b {
		return a - b
	}
	return b - a
}

// UntilRefused runs workers goroutines, spread over ls round robin, that ask for cost until
// each was refused after at least min calls, and returns how many requests were admitted:
// with limiters that share a bucket, what they admit together. A goroutine gives up after
// 10*min+10 calls, so that a limiter that never refuses fails the test instead of hanging
// it.
func UntilRefused[L limits.Limiter](ctx context.Context, t *testing.T, ls []L, workers, min int, key string, lim limits.Limits, cost limits.Cost) int64 {
	t.Helper()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := ls[w%len(ls)]
			for i := 0; i < 10*min+10; i++ {
				d, err := l.Allow(ctx, key, lim, cost)
				if err != nil {
					errs <- err
					return
				}
				if d.Allowed {
					admitted.Add(1)
				} else if i >= min {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return admitted.Load()
}
