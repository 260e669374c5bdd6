package limits

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of LeasedOptions.
const (
	// DefaultLeaseHorizon is how much of a key's demand a lease covers by default.
	DefaultLeaseHorizon = 100 * time.Millisecond
	// DefaultLeaseShare is the most of a bucket's remaining capacity one lease takes by
	// default: a key with fewer than 8 units left is decided by the backend alone.
	DefaultLeaseShare = 1.0 / 8
	// leaseTTLHorizons is the default TTL in horizons.
	leaseTTLHorizons = 5
	// defaultLeaseTimeout bounds each background call by default.
	defaultLeaseTimeout = time.Second
	// refillPause is how long background refills stop after one failed, so that a dead
	// backend is not asked once per request in the background; requests that find no lease
	// ask it themselves, and their caller decides what an outage means.
	refillPause = time.Second
)

// LeasedOptions tune a Leased limiter; a zero field means its default.
type LeasedOptions struct {
	// Horizon is how much of a key's demand a lease covers: about the units this limiter
	// admitted for the key in the last Horizon (default DefaultLeaseHorizon).
	Horizon time.Duration
	// TTL is how long a lease's units are held after its last refill before the unused
	// ones are refunded (default 5 horizons). Keep it far below the limits' period: it
	// bounds how late a leased unit is used (see Leased).
	TTL time.Duration
	// Share caps each lease at this fraction (0..1] of what the bucket has left (default
	// DefaultLeaseShare), so that leases shrink to nothing as a key nears its limit.
	Share float64
	// Timeout bounds each background refill and refund (default 1s).
	Timeout time.Duration
	// Now is the clock (default time.Now); tests pass a fake one.
	Now func() time.Time
}

// Leased is a Limiter over a shared backend (the Redis limiter) that admits most requests
// from units it leased ahead of demand, so that a request does not wait on the backend while
// the limits stay shared across gateways. Each gateway has its own.
//
// Per key it holds a lease: units of the key's buckets taken from the backend and not yet
// used. A request whose cost the lease covers is admitted from it at once. When the lease
// falls below half its size, one background refill per key (never several at once) leases
// more. A request the lease cannot cover takes what the lease has toward its cost and asks
// the backend synchronously for the rest, leasing more in the same call. A lease is about
// the key's demand at this gateway over Horizon, capped by Share of what the bucket has left
// (the backend applies the cap atomically, see DecideLease). The first request of a key
// leases nothing: no demand is known yet. Guarantees:
//
//   - Never over-admits across gateways: leased units are taken from the shared bucket
//     before they are used, so N gateways together admit no more than the limit.
//   - May under-admit briefly by units one gateway holds and does not use: they are
//     refunded when its lease expires (TTL after its last refill) or the limiter closes.
//   - Near a limit leases shrink to nothing and every decision is again one exact backend
//     call. A refusal is final: a request is refused only after the backend refused what
//     the lease could not pay and this limiter's own backend calls in flight for the key
//     have landed, so gateways that keep asking admit exactly the limit together.
//
// Where it deliberately differs from a plain Limiter:
//
//   - Between backend calls, a decision answered from the lease reports the backend's last
//     figures adjusted by this limiter's own use since: Remaining is the last remaining plus
//     the units the lease still holds (so it falls by what this gateway admits, but does not
//     see other gateways' use meanwhile), Reset the last reset less the time since and less
//     the held units' worth; an admission never reports more remaining, or an earlier
//     reset, than a bucket that has just paid it. A refusal reports, in each dimension the
//     backend refused, at most the backend's figure in that refusal plus the units the lease
//     holds: less than the cost, as a plain Limiter's refusal does (0 requests remaining for
//     a one-request cost), whatever figure an earlier call that landed later brought.
//   - A leased unit is used a little after it was taken from the bucket (within about TTL),
//     so admissions conform to the shared bucket with its capacity raised by at most
//     limit × TTL / period (1/120 of a per-minute limit at the defaults); keys near their
//     limit lease nothing, so for them this is zero.
//   - A debt that another gateway's Charge puts on a bucket refuses this gateway's requests
//     only once its lease is used up.
//
// Charge pays positive tokens from the lease first (they were taken from the bucket
// already, so this is exact) and sends the rest to the backend, as it does refunds of
// over-estimates, which must not grow a lease: a bucket in debt would get back more than
// a refund gives it. Peeks (costs of zero in every limited dimension) and costs larger
// than a bucket go to the backend. Errors of the backend on the request path wrap its
// errors (limits.ErrUnavailable for Redis down); a failed background refill only lets
// the lease run out. Leased is safe for concurrent use; Close refunds what it holds.
type Leased struct {
	backend Leaser
	opts    LeasedOptions

	mu          sync.Mutex
	keys        map[string]*lease
	closed      bool
	pausedUntil time.Time // no background refills before this (one failed)

	wg    sync.WaitGroup // backend calls in flight that may leave units to refund
	stop  chan struct{}  // closed by Close: ends the sweeper
	swept chan struct{}  // closed when the sweeper has ended

	stats [numLeaseStats]atomic.Uint64
}

// What Leased counts, in the order of LeasedStats' fields.
const (
	statLocal = iota
	statBackend
	statRefills
	statRefillErrors
	statRefunds
	statRefundErrors
	numLeaseStats
)

// LeasedStats counts what a Leased limiter did since it was made.
type LeasedStats struct {
	// Local is the decisions answered from a lease, without a backend call.
	Local uint64
	// Backend is the decisions that waited on a backend call.
	Backend uint64
	// Refills and RefillErrors are the background refills that succeeded and failed.
	Refills, RefillErrors uint64
	// Refunds and RefundErrors are the refunds of unused units (expired leases, changed
	// limits, Close) that succeeded and failed.
	Refunds, RefundErrors uint64
}

// lease is one key's state in this limiter. Its fields are guarded by Leased.mu.
type lease struct {
	key string
	lim Limits // the limits its units were taken under

	have    Cost      // units taken from the backend and not used, in the limited dimensions
	expires time.Time // when the unused units are refunded
	base    Decision  // the backend's last decision for the key
	baseAt  time.Time
	granted bool // whether the backend's last answer to a lease granted units

	// Demand: the calls, requests and tokens asked for (charges included), as counts
	// decaying over the horizon (about those of the last horizon), at seen.
	calls, reqs, toks float64
	seen              time.Time

	refilling bool
	flights   map[*flight]struct{} // backend calls in flight that may add units
	dead      bool                 // no longer the key's lease: units given to it are refunded
}

// flight is one backend call that may bring units; done is closed when it has landed.
type flight struct{ done chan struct{} }

// NewLeased returns a Leased limiter over backend. Close it to refund what it holds.
func NewLeased(backend Leaser, opts LeasedOptions) (*Leased, error) {
	if opts.Horizon < 0 || opts.TTL < 0 || opts.Timeout < 0 || !(opts.Share >= 0 && opts.Share <= 1) {
		return nil, fmt.Errorf("%w: lease options must not be negative and share must be within 0..1 (horizon %s, ttl %s, timeout %s, share %g)",
			ErrInvalid, opts.Horizon, opts.TTL, opts.Timeout, opts.Share)
	}
	if opts.Horizon == 0 {
		opts.Horizon = DefaultLeaseHorizon
	}
	if opts.TTL == 0 {
		opts.TTL = leaseTTLHorizons * opts.Horizon
	}
	if opts.Share == 0 {
		opts.Share = DefaultLeaseShare
	}
	if opts.Timeout == 0 {
		opts.Timeout = defaultLeaseTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Leased{backend: backend, opts: opts, keys: make(map[string]*lease), stop: make(chan struct{}), swept: make(chan struct{})}
	go l.sweeper()
	return l, nil
}

var _ Limiter = (*Leased)(nil)

// Allow implements Limiter.
func (l *Leased) Allow(ctx context.Context, key string, lim Limits, cost Cost) (Decision, error) {
	if err := lim.Validate(); err != nil {
		return Decision{}, err
	}
	if err := cost.Validate(); err != nil {
		return Decision{}, err
	}
	if lim.Unlimited() {
		return Decision{Allowed: true}, nil
	}
	need := cost.in(lim)
	if need == (Cost{}) || need.Requests > lim.Requests || need.Tokens > lim.Tokens {
		// A peek, or a cost that no bucket can ever pay: the backend answers alone.
		return l.ask(ctx, key, lim, cost)
	}
	now := l.opts.Now()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.ask(ctx, key, lim, cost)
	}
	e := l.lease(key, lim, now)
	extra := e.wish(l.opts.Share)
	e.observe(now, 1, cost, l.opts.Horizon)
	if e.have.covers(need) {
		d := l.take(e, need, now)
		l.mu.Unlock()
		l.stats[statLocal].Add(1)
		return d, nil
	}
	// Take what the lease has toward the cost; the backend decides on the rest.
	part := e.have.upTo(need)
	e.have = e.have.minus(part)
	f := l.takeoff(e)
	defer l.wg.Done()
	l.mu.Unlock()

	d, n, err := l.backend.Lease(ctx, key, lim, cost.minus(part), extra)
	l.stats[statBackend].Add(1)
	now = l.opts.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.land(e, f)
	if err != nil {
		l.give(e, part)
		return Decision{}, fmt.Errorf("limits: lease: %w", err)
	}
	if d.Allowed {
		l.grant(e, extra, n, d, now)
		out := e.admitted(now, need)
		l.refillAhead(e, now)
		return out, nil
	}
	l.give(e, part)
	e.base, e.baseAt, e.granted = d, now, false
	// Units may still be on their way from this limiter's own calls: wait for them rather
	// than refuse what they would pay.
	if waits := e.inFlight(); len(waits) > 0 && !e.dead {
		l.mu.Unlock()
		for _, done := range waits {
			select {
			case <-done:
			case <-ctx.Done():
			}
		}
		l.mu.Lock()
	}
	if !e.dead && e.have.covers(need) {
		return l.take(e, need, now), nil
	}
	return e.refused(now, d, cost.minus(part)), nil
}

// Charge implements Limiter: positive tokens are paid from the key's lease as far as it
// holds tokens, the rest and refunds (negative tokens) by the backend.
func (l *Leased) Charge(ctx context.Context, key string, lim Limits, tokens int64) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	if tokens > 0 && lim.Tokens > 0 {
		if tokens = l.payFromLease(key, lim, tokens); tokens == 0 {
			return nil
		}
	}
	if err := l.backend.Charge(ctx, key, lim, tokens); err != nil {
		return fmt.Errorf("limits: lease: %w", err)
	}
	return nil
}

// Stats returns the counts so far.
func (l *Leased) Stats() LeasedStats {
	return LeasedStats{
		Local:        l.stats[statLocal].Load(),
		Backend:      l.stats[statBackend].Load(),
		Refills:      l.stats[statRefills].Load(),
		RefillErrors: l.stats[statRefillErrors].Load(),
		Refunds:      l.stats[statRefunds].Load(),
		RefundErrors: l.stats[statRefundErrors].Load(),
	}
}

// Close stops leasing, waits for the backend calls in flight (until ctx ends) and refunds
// every unused unit. Afterwards every decision is a backend call. It does not close the
// backend.
func (l *Leased) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.swept
	landed := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(landed)
	}()
	select {
	case <-landed:
	case <-ctx.Done():
		return fmt.Errorf("limits: closing the lease limiter: %w", ctx.Err())
	}
	l.mu.Lock()
	held := l.keys
	l.keys = make(map[string]*lease)
	for _, e := range held {
		e.dead = true
	}
	l.mu.Unlock()
	var errs []error
	for _, e := range held {
		if e.have == (Cost{}) {
			continue
		}
		if err := l.backend.Refund(ctx, e.key, e.lim, e.have); err != nil {
			l.stats[statRefundErrors].Add(1)
			errs = append(errs, fmt.Errorf("limits: refunding a lease on close: %w", err))
			continue
		}
		l.stats[statRefunds].Add(1)
	}
	return errors.Join(errs...)
}

// ask is a plain backend decision, reported with the key's lease added back.
func (l *Leased) ask(ctx context.Context, key string, lim Limits, cost Cost) (Decision, error) {
	d, err := l.backend.Allow(ctx, key, lim, cost)
	l.stats[statBackend].Add(1)
	if err != nil {
		return Decision{}, fmt.Errorf("limits: lease: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.keys[key]; e != nil && e.lim == lim {
		d.Requests = held(d.Requests, e.have.Requests, 0, lim.interval(lim.Requests))
		d.Tokens = held(d.Tokens, e.have.Tokens, 0, lim.interval(lim.Tokens))
	}
	return d, nil
}

// payFromLease pays up to tokens from key's lease and returns what is left to charge.
func (l *Leased) payFromLease(key string, lim Limits, tokens int64) int64 {
	now := l.opts.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.keys[key]
	if l.closed || e == nil || e.lim != lim {
		return tokens
	}
	l.expire(e, now)
	e.observe(now, 0, Cost{Tokens: tokens}, l.opts.Horizon)
	paid := min(tokens, e.have.Tokens)
	e.have.Tokens -= paid
	l.refillAhead(e, now)
	return tokens - paid
}

// lease returns key's lease for lim, refunding one taken under other limits or expired.
// Called with mu held.
func (l *Leased) lease(key string, lim Limits, now time.Time) *lease {
	e := l.keys[key]
	if e != nil && e.lim == lim {
		l.expire(e, now)
		return e
	}
	if e != nil { // the key's limits changed: its units were taken under the old ones
		e.dead = true
		l.refund(e, e.have)
		e.have = Cost{}
	}
	e = &lease{key: key, lim: lim, flights: make(map[*flight]struct{})}
	l.keys[key] = e
	return e
}

// take admits need from e's lease. Called with mu held.
func (l *Leased) take(e *lease, need Cost, now time.Time) Decision {
	e.have = e.have.minus(need)
	d := e.admitted(now, need)
	l.refillAhead(e, now)
	return d
}

// grant adds the n units of extra that the backend leased with decision d. Called with mu
// held.
func (l *Leased) grant(e *lease, extra Extra, n int64, d Decision, now time.Time) {
	units := extra.Unit.times(n).in(e.lim)
	e.base, e.baseAt, e.granted = d, now, n > 0
	if e.dead {
		l.refund(e, units)
		return
	}
	if n > 0 {
		e.have = e.have.plus(units)
		e.expires = now.Add(l.opts.TTL)
	}
}

// give returns units taken from e's lease and not used. Called with mu held.
func (l *Leased) give(e *lease, units Cost) {
	if e.dead {
		l.refund(e, units)
		return
	}
	e.have = e.have.plus(units)
}

// expire refunds e's units once its lease has expired. Called with mu held.
func (l *Leased) expire(e *lease, now time.Time) {
	if e.have != (Cost{}) && !now.Before(e.expires) {
		l.refund(e, e.have)
		e.have = Cost{}
	}
}

// refillAhead starts e's background refill when its lease is below half its size and the
// key's demand is worth leasing for. Called with mu held.
func (l *Leased) refillAhead(e *lease, now time.Time) {
	if e.refilling || !e.granted || e.dead || l.closed || now.Before(l.pausedUntil) {
		return
	}
	extra := e.wish(l.opts.Share)
	if extra.Count == 0 || e.have.covers(extra.Unit.times(max(extra.Count/2, 1)).in(e.lim)) {
		return
	}
	e.refilling = true
	f := l.takeoff(e)
	go l.refill(e, extra, f)
}

// refill is one background refill of e's lease.
func (l *Leased) refill(e *lease, extra Extra, f *flight) {
	defer l.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
	d, n, err := l.backend.Lease(ctx, e.key, e.lim, Cost{}, extra)
	cancel()
	now := l.opts.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e.refilling = false
	l.land(e, f)
	if err != nil {
		l.pausedUntil = now.Add(refillPause)
		l.stats[statRefillErrors].Add(1)
		return
	}
	l.stats[statRefills].Add(1)
	l.grant(e, extra, n, d, now)
}

// refund gives units back to the backend in the background. Called with mu held, either
// before Close or from a call that Close waits for.
func (l *Leased) refund(e *lease, units Cost) {
	if units == (Cost{}) {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
		defer cancel()
		if err := l.backend.Refund(ctx, e.key, e.lim, units); err != nil {
			l.stats[statRefundErrors].Add(1)
			return
		}
		l.stats[statRefunds].Add(1)
	}()
}

// takeoff records a backend call for e that may bring units; the caller calls land when
// it is back and l.wg.Done when it has handled the answer. Called with mu held.
func (l *Leased) takeoff(e *lease) *flight {
	f := &flight{done: make(chan struct{})}
	e.flights[f] = struct{}{}
	l.wg.Add(1)
	return f
}

// land records that f is back. Called with mu held.
func (l *Leased) land(e *lease, f *flight) {
	delete(e.flights, f)
	close(f.done)
}

// sweeper refunds expired leases and forgets idle keys until Close.
func (l *Leased) sweeper() {
	defer close(l.swept)
	t := time.NewTicker(max(l.opts.TTL/2, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		now := l.opts.Now()
		l.mu.Lock()
		for key, e := range l.keys {
			l.expire(e, now)
			if e.have == (Cost{}) && len(e.flights) == 0 && now.Sub(e.seen) >= l.opts.TTL {
				e.dead = true
				delete(l.keys, key)
			}
		}
		l.mu.Unlock()
	}
}

// wish is what the next lease of e asks for: the key's demand over the horizon, in units
// of its average request.
func (e *lease) wish(share float64) Extra {
	if e.calls < 1 {
		return Extra{Share: share}
	}
	avg := func(x float64) int64 { return int64(math.Ceil(x/e.calls - 1e-9)) }
	return Extra{Unit: Cost{Requests: avg(e.reqs), Tokens: avg(e.toks)}, Count: int64(e.calls), Share: share}
}

// observe adds calls and cost to e's demand at now.
func (e *lease) observe(now time.Time, calls float64, cost Cost, horizon time.Duration) {
	keep := 0.0
	if !e.seen.IsZero() {
		keep = math.Exp(-float64(max(now.Sub(e.seen), 0)) / float64(horizon))
	}
	e.calls = e.calls*keep + calls
	e.reqs = e.reqs*keep + float64(cost.Requests)
	e.toks = e.toks*keep + float64(cost.Tokens)
	e.seen = now
}

// view is the key's buckets as e sees them at now: the backend's last figures with the units
// e holds added back.
func (e *lease) view(now time.Time) Decision {
	since := max(now.Sub(e.baseAt), 0)
	return Decision{
		Requests: held(e.base.Requests, e.have.Requests, since, e.lim.interval(e.lim.Requests)),
		Tokens:   held(e.base.Tokens, e.have.Tokens, since, e.lim.interval(e.lim.Tokens)),
	}
}

// admitted is the decision that admits need at now: the view, with no more remaining and
// no earlier reset than a bucket that just paid need can have (held units can keep the
// view full while the backend's debt for them has already run off).
func (e *lease) admitted(now time.Time, need Cost) Decision {
	d := e.view(now)
	d.Allowed = true
	d.Requests = paid(d.Requests, need.Requests, e.lim.interval(e.lim.Requests))
	d.Tokens = paid(d.Tokens, need.Tokens, e.lim.interval(e.lim.Tokens))
	return d
}

// refused is the decision that refuses a request at now, after the backend refused asked
// (the part of its cost the lease could not pay) with d: the view, except that a dimension
// the backend refused reports no more remaining than d's figure plus the units e holds. The
// view's base is the backend's last answer to land, and an earlier call of this limiter that
// lands after the refusal would otherwise show units that other gateways have taken since.
func (e *lease) refused(now time.Time, d Decision, asked Cost) Decision {
	out := e.view(now)
	out.RetryAfter, out.TooLarge = d.RetryAfter, d.TooLarge
	out.Requests = emptied(out.Requests, d.Requests, asked.Requests, e.have.Requests)
	out.Tokens = emptied(out.Tokens, d.Tokens, asked.Tokens, e.have.Tokens)
	return out
}

// emptied is bucket b of a refusal: when the backend's bucket r could not pay asked, b's
// remaining is at most r's plus the have units held.
func emptied(b, r Bucket, asked, have int64) Bucket {
	if b.Limit > 0 && r.Remaining < asked {
		b.Remaining = min(b.Remaining, r.Remaining+have)
	}
	return b
}

// paid is bucket b right after paying units of interval each.
func paid(b Bucket, units int64, interval time.Duration) Bucket {
	if b.Limit == 0 {
		return b
	}
	b.Remaining = min(b.Remaining, b.Limit-units)
	b.Reset = max(b.Reset, time.Duration(units)*interval)
	return b
}

// inFlight returns the done channels of e's backend calls in flight.
func (e *lease) inFlight() []chan struct{} {
	var out []chan struct{}
	for f := range e.flights {
		out = append(out, f.done)
	}
	return out
}

// held is bucket b, reported since ago, with have units of interval each added back.
func held(b Bucket, have int64, since, interval time.Duration) Bucket {
	if b.Limit == 0 {
		return b
	}
	b.Remaining = min(b.Remaining+have, b.Limit)
	b.Reset = max(b.Reset-since-time.Duration(have)*interval, 0)
	return b
}

// interval returns the emission interval of a dimension of limit units (0 if unlimited).
func (l Limits) interval(limit int64) time.Duration {
	if limit <= 0 {
		return 0
	}
	return l.period() / time.Duration(limit)
}

// in returns c in the dimensions lim limits, the others zero.
func (c Cost) in(lim Limits) Cost {
	if lim.Requests == 0 {
		c.Requests = 0
	}
	if lim.Tokens == 0 {
		c.Tokens = 0
	}
	return c
}

// covers reports whether c pays need in both dimensions.
func (c Cost) covers(need Cost) bool { return c.Requests >= need.Requests && c.Tokens >= need.Tokens }

// upTo returns what c can pay of need in each dimension.
func (c Cost) upTo(need Cost) Cost {
	return Cost{Requests: min(c.Requests, need.Requests), Tokens: min(c.Tokens, need.Tokens)}
}

// plus, minus and times are Cost arithmetic, dimension by dimension.
func (c Cost) plus(o Cost) Cost {
	return Cost{Requests: c.Requests + o.Requests, Tokens: c.Tokens + o.Tokens}
}

func (c Cost) minus(o Cost) Cost {
	return Cost{Requests: c.Requests - o.Requests, Tokens: c.Tokens - o.Tokens}
}

func (c Cost) times(n int64) Cost { return Cost{Requests: c.Requests * n, Tokens: c.Tokens * n} }
