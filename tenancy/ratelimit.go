package tenancy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/breaker"
	"github.com/hxp-ai/hxp/limits"
)

// rateLimiter decides each caller's RPM and TPM per model.
//
// shared may lease (limits.Leased, which Open puts over Redis unless
// redis.lease_horizon is 0): most requests are then admitted from units this gateway
// took from the shared buckets ahead of demand, without waiting on Redis. Leasing never
// over-admits across gateways, because units are taken from the shared bucket before
// they are used; it may under-admit briefly by units a gateway holds and does not use,
// which go back to Redis when its lease expires or the gateway closes; near a limit
// leases shrink to nothing and every decision is again one exact Redis call. Between
// Redis calls a decision's remaining figures are Redis' last figure less what this
// gateway admitted since (other gateways' use shows from the next call on). While Redis
// is unreachable a lease still admits what it holds (for at most its TTL); only the
// requests it cannot pay meet the outage below.
//
// With shared configured and unreachable, decisions fail open onto the in-process
// limiter by default: each gateway then enforces every key's limits on its own, so a
// key gets at most N times its limit from N gateways during the outage, while failing
// closed would turn a Redis outage into an outage of the whole API. failClosed is for
// deployments where the limits protect a contract or a bill more than availability
// matters. After a failure, shared is left alone for retryShared before one request
// tries it again, so that an outage costs one timeout, not one per request.
type rateLimiter struct {
	shared     limits.Limiter // nil: local only
	local      limits.Limiter
	failClosed bool
	breaker    *breaker.Breaker
	log        zerolog.Logger
}

// retryShared is how long a failed shared limiter is left alone.
const retryShared = 2 * time.Second

func newRateLimiter(shared limits.Limiter, failClosed bool, log zerolog.Logger) *rateLimiter {
	return &rateLimiter{shared: shared, local: limits.NewMemory(nil), failClosed: failClosed, log: log,
		breaker: breaker.New(breaker.Config{FailureThreshold: 1, OpenFor: retryShared}, nil)}
}

// errSharedDown is allow's error while the shared limiter is down and failing closed.
var errSharedDown = errors.New("shared rate limiter unreachable (fail closed)")

// limiterDown is the answer when no limiter could decide.
func limiterDown(err error) *infer.Error {
	return &infer.Error{Kind: infer.Unavailable, Code: "rate_limiter_unavailable",
		Message: "rate limits cannot be checked now; retry later", RetryAfter: retryShared, Err: err}
}

// allow asks the shared limiter, or the local one while the shared one is down (or
// refuses, when failing closed). It returns the limiter that decided, which is the
// one to charge the request's real tokens to.
func (r *rateLimiter) allow(ctx context.Context, key string, lim limits.Limits, cost limits.Cost) (limits.Decision, limits.Limiter, error) {
	if r.shared != nil && r.breaker.Allow() {
		d, err := r.shared.Allow(ctx, key, lim, cost)
		if err == nil {
			r.breaker.Success()
			return d, r.shared, nil
		}
		if !errors.Is(err, limits.ErrUnavailable) {
			r.breaker.Release()
			return limits.Decision{}, nil, fmt.Errorf("rate limit: %w", err)
		}
		if r.breaker.State() == breaker.Closed {
			mode := "falling back to the in-process limiter"
			if r.failClosed {
				mode = "refusing requests (fail closed)"
			}
			r.log.Error().Err(err).Msg("shared rate limiter unreachable; " + mode)
		}
		r.breaker.Failure()
	}
	if r.shared != nil && r.failClosed {
		return limits.Decision{}, nil, errSharedDown
	}
	d, err := r.local.Allow(ctx, key, lim, cost)
	return d, r.local, err
}

// charge settles the difference between the admission estimate and the real tokens
// on the limiter that admitted the request.
func (r *rateLimiter) charge(l limits.Limiter, key string, lim limits.Limits, delta int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.Charge(ctx, key, lim, delta); err != nil {
		r.log.Debug().Err(err).Msg("rate limit: charging tokens failed")
	}
}

// quotaOf is a decision's state as front ends report it (the x-ratelimit-* headers).
func quotaOf(d limits.Decision) *infer.Quota {
	return &infer.Quota{
		Requests: infer.Bucket{Limit: d.Requests.Limit, Remaining: d.Requests.Remaining, Reset: d.Requests.Reset},
		Tokens:   infer.Bucket{Limit: d.Tokens.Limit, Remaining: d.Tokens.Remaining, Reset: d.Tokens.Reset},
	}
}

// refusal is the RateLimited error of a refused decision.
func refusal(c *infer.Caller, model string, d limits.Decision, est int64) *infer.Error {
	e := &infer.Error{Kind: infer.RateLimited, Code: "rate_limit_exceeded", RetryAfter: d.RetryAfter, Quota: quotaOf(d)}
	switch {
	case d.TooLarge:
		e.Message = fmt.Sprintf("this request (about %d tokens) is larger than this key's limit of %d tokens per minute", est, c.TPM)
	case d.RetryAfter <= 0:
		e.RetryAfter = time.Second
		fallthrough
	default:
		e.Message = fmt.Sprintf("rate limit reached for %s on model %s (limits: %d requests, %d tokens per minute); retry after %s",
			c.ID, model, c.RPM, c.TPM, d.RetryAfter.Round(time.Millisecond))
	}
	return e
}

// overBudget is the QuotaExceeded error of a caller over its monthly budget.
func overBudget(c *infer.Caller, used int64, now time.Time) *infer.Error {
	return &infer.Error{Kind: infer.QuotaExceeded, Code: "insufficient_quota",
		Message:    fmt.Sprintf("this key has used its monthly budget of %d tokens (%d used)", c.Budget, used),
		RetryAfter: nextMonth(now)}
}
