package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	hxplimits "github.com/hxp-ai/hxp/limits"
)

// RateLimitOptions configure the RateLimit link.
type RateLimitOptions struct {
	// Shared is the limiter shared by every gateway (Redis, usually leased ahead of
	// demand: limits.Leased); nil uses Local only.
	Shared hxplimits.Limiter
	// Local is the in-process limiter: the limiter without Redis, and the fallback
	// while Redis is unreachable unless FailClosed (default: a new limits.Memory).
	Local hxplimits.Limiter
	// FailClosed refuses requests (503) while Shared is unreachable instead of
	// limiting them with Local.
	FailClosed bool
	// RetryShared is how long Shared is left alone after it failed before one request
	// tries it again (default 2s), so that an outage costs one timeout, not one per
	// request.
	RetryShared time.Duration
	// Budgets enforces monthly token budgets; nil disables them.
	Budgets *Budgets
	// DefaultModel is the model of requests without one (a model's own listener).
	DefaultModel string
	// Log receives limiter outages.
	Log zerolog.Logger

	counters *tenancyCounters // nil: not counted
}

// RateLimit enforces each tenant's RPM and TPM per model, and its monthly budget.
// Every limited response carries OpenAI's x-ratelimit-* headers; a refused request
// gets 429 with Retry-After. Tokens are charged in two steps: an estimate from the
// body size at admission (so that concurrent requests cannot all pass on one empty
// bucket), then the difference to the real prompt plus completion tokens once the
// response is complete.
//
// Shared may lease (limits.Leased, which OpenTenancy puts over Redis unless
// redis.lease_horizon is 0): most requests are then admitted from units this gateway
// took from the shared buckets ahead of demand, without waiting on Redis. Leasing never
// over-admits across gateways, because units are taken from the shared bucket before
// they are used; it may under-admit briefly by units a gateway holds and does not use,
// which go back to Redis when its lease expires or the gateway closes; near a limit
// leases shrink to nothing and every decision is again one exact Redis call. Between
// Redis calls the x-ratelimit-remaining-* headers are Redis' last figure less what this
// gateway admitted since (other gateways' use shows from the next call on), and the
// reset headers likewise. While Redis is unreachable a lease still admits what it holds
// (for at most its TTL); only the requests it cannot pay meet the outage below.
//
// With Shared configured and unreachable, the link fails open onto the in-process
// limiter by default: each gateway then enforces every key's limits on its own, so a
// key gets at most N times its limit from N gateways during the outage, while
// failing closed would turn a Redis outage into an outage of the whole API.
// FailClosed is for deployments where the limits protect a contract or a bill more
// than availability matters.
type RateLimit struct {
	opts   RateLimitOptions
	shared *Breaker
}

// NewRateLimit returns the link.
func NewRateLimit(opts RateLimitOptions) *RateLimit {
	if opts.Local == nil {
		opts.Local = hxplimits.NewMemory(nil)
	}
	if opts.RetryShared <= 0 {
		opts.RetryShared = 2 * time.Second
	}
	return &RateLimit{opts: opts, shared: NewBreaker(BreakerConfig{FailureThreshold: 1, OpenFor: opts.RetryShared}, nil)}
}

// Name implements Middleware.
func (*RateLimit) Name() string { return "rate-limit" }

// errLimiterDown is the 503 of a fail-closed limiter outage.
var errLimiterDown = &APIError{Status: fasthttp.StatusServiceUnavailable, Type: typeUnavailable, Code: "rate_limiter_unavailable",
	Message: "rate limits cannot be checked now; retry later", RetryAfter: 2 * time.Second}

// Wrap implements Middleware.
func (r *RateLimit) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		t := TenantOf(ctx)
		m := metaOf(ctx)
		if t == nil || t.Internal || m == nil || m.bad {
			next(ctx)
			return
		}
		if b := r.opts.Budgets; b != nil && t.Budget > 0 {
			if used, _ := b.Used(t.ID); used >= t.Budget {
				r.opts.counters.limit(limitBudget)
				writeError(ctx, &APIError{Status: fasthttp.StatusTooManyRequests, Type: "insufficient_quota", Code: "insufficient_quota",
					Message:    fmt.Sprintf("this key has used its monthly budget of %d tokens (%d used)", t.Budget, used),
					RetryAfter: nextMonth(time.Now())}, "")
				return
			}
		}
		lim := hxplimits.PerMinute(t.RPM, t.TPM)
		if lim.Unlimited() {
			next(ctx)
			return
		}
		model := m.model
		if model == "" {
			model = r.opts.DefaultModel
		}
		key := hxplimits.Key(t.ID, model)
		est := int64(0)
		if m.op != OpTokenize && m.op != OpDetokenize { // the tokenizer generates nothing
			est = estimateTokens(len(ctx.PostBody()), t.TPM)
		}
		d, decider, err := r.allow(ctx, key, lim, hxplimits.Cost{Requests: 1, Tokens: est})
		if err != nil {
			r.opts.counters.limit(limitUnavailable)
			writeError(ctx, errLimiterDown, "")
			return
		}
		setRateHeaders(&ctx.Response.Header, d)
		if !d.Allowed {
			r.opts.counters.limit(limitRefused)
			ae := &APIError{Status: fasthttp.StatusTooManyRequests, Type: typeRateLimit, Code: "rate_limit_exceeded", RetryAfter: d.RetryAfter}
			switch {
			case d.TooLarge:
				ae.Message = fmt.Sprintf("this request (about %d tokens) is larger than this key's limit of %d tokens per minute", est, t.TPM)
			case d.RetryAfter <= 0:
				ae.RetryAfter = time.Second
				fallthrough
			default:
				ae.Message = fmt.Sprintf("rate limit reached for %s on model %s (limits: %d requests, %d tokens per minute); retry after %s",
					t.ID, model, t.RPM, t.TPM, d.RetryAfter.Round(time.Millisecond))
			}
			writeError(ctx, ae, "")
			return
		}
		r.opts.counters.limit(limitAllowed)
		if t.TPM > 0 {
			if info := infoOf(ctx); info != nil {
				info.OnFinish(func(ri *RequestInfo) {
					if delta := int64(ri.PromptTokens+ri.CompletionTokens) - est; delta != 0 {
						go r.charge(decider, key, lim, delta)
					}
				})
			}
		}
		next(ctx)
	}
}

// allow asks the shared limiter, or the local one while the shared one is down (or
// refuses, when failing closed). It returns the limiter that decided.
func (r *RateLimit) allow(ctx context.Context, key string, lim hxplimits.Limits, cost hxplimits.Cost) (hxplimits.Decision, hxplimits.Limiter, error) {
	if r.opts.Shared != nil && r.shared.Allow() {
		d, err := r.opts.Shared.Allow(ctx, key, lim, cost)
		if err == nil {
			r.shared.Success()
			return d, r.opts.Shared, nil
		}
		if !errors.Is(err, hxplimits.ErrUnavailable) {
			r.shared.Release()
			return hxplimits.Decision{}, nil, fmt.Errorf("rate limit: %w", err)
		}
		if r.shared.State() == BreakerClosed {
			mode := "falling back to the in-process limiter"
			if r.opts.FailClosed {
				mode = "refusing requests (fail closed)"
			}
			r.opts.Log.Error().Err(err).Msg("shared rate limiter unreachable; " + mode)
		}
		r.shared.Failure()
	}
	if r.opts.Shared != nil && r.opts.FailClosed {
		return hxplimits.Decision{}, nil, errLimiterDown
	}
	d, err := r.opts.Local.Allow(ctx, key, lim, cost)
	return d, r.opts.Local, err
}

// charge settles the difference between the admission estimate and the real tokens.
func (r *RateLimit) charge(l hxplimits.Limiter, key string, lim hxplimits.Limits, delta int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.Charge(ctx, key, lim, delta); err != nil {
		r.opts.Log.Debug().Err(err).Msg("rate limit: charging tokens failed")
	}
}

// estimateTokens is the admission estimate of a request's tokens: a quarter of its
// body size (a token is about four bytes of text), at least 1 and at most the limit,
// so that an estimate alone never makes a request too large.
func estimateTokens(bodyLen int, tpm int64) int64 {
	if tpm <= 0 {
		return 0
	}
	return min(max(int64(bodyLen/4), 1), tpm)
}

// setRateHeaders adds OpenAI's rate-limit headers for the limited dimensions.
func setRateHeaders(h *fasthttp.ResponseHeader, d hxplimits.Decision) {
	for _, b := range []struct {
		name string
		b    hxplimits.Bucket
	}{{"requests", d.Requests}, {"tokens", d.Tokens}} {
		if b.b.Limit == 0 {
			continue
		}
		h.Set("X-Ratelimit-Limit-"+b.name, strconv.FormatInt(b.b.Limit, 10))
		h.Set("X-Ratelimit-Remaining-"+b.name, strconv.FormatInt(b.b.Remaining, 10))
		h.Set("X-Ratelimit-Reset-"+b.name, resetString(b.b.Reset))
	}
}

// resetString formats a reset time as OpenAI does ("1s", "6m0s", "20ms").
func resetString(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10) + "ms"
	}
	return d.Round(time.Millisecond).String()
}
