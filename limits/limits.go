// Package limits defines HXP's rate limiter: requests and tokens per period (a minute unless
// set otherwise) for each (API key, model), with the numbers the gateway needs for its
// x-ratelimit-* and Retry-After headers.
//
// Both dimensions are token buckets in GCRA form: a bucket holds Limit units, refills
// continuously at Limit per Period, and a request is admitted only when every limited
// dimension can pay its cost in full; otherwise nothing is taken. A bucket's state is a single
// "debt" (the time until it is full again), so it needs no per-request storage.
//
// Memory is the in-process implementation, used when Redis is not configured; the redis
// connector implements the same interface with identical semantics, shared across gateways.
// Both are also Leasers: they can lease units ahead of demand (DecideLease) and take back
// the unused ones. Leased builds on that a Limiter that admits most requests from units it
// holds, so that a request does not wait on Redis while the limits stay shared.
package limits

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrUnavailable is wrapped by errors from a Limiter whose backend cannot be reached (Redis
// down or timing out). Whether to admit the request then (fail open) or refuse it (fail
// closed) is the caller's policy.
var ErrUnavailable = errors.New("rate limiter unavailable")

// ErrInvalid is wrapped by errors about arguments: negative limits or costs.
var ErrInvalid = errors.New("invalid rate limit argument")

// Limiter admits or refuses requests against per-key limits. Implementations are safe for
// concurrent use.
type Limiter interface {
	// Allow takes cost from the buckets of key when every limited dimension can pay it, and
	// reports the buckets' state either way. A zero Cost only reports the state. The error is
	// non-nil only when the limiter could not decide.
	Allow(ctx context.Context, key string, limits Limits, cost Cost) (Decision, error)
	// Charge takes tokens from key's token bucket without checking it, for usage known only
	// after the response (for example completion tokens). The bucket may go into debt, which
	// refuses later requests until it has refilled. Negative tokens give back an over-estimate.
	Charge(ctx context.Context, key string, limits Limits, tokens int64) error
}

// Leaser is a Limiter that can also lease: take units of a key's buckets ahead of demand and
// take back those not used. It is what Leased needs of a shared backend.
type Leaser interface {
	Limiter
	// Lease is Allow that, when it admits cost, also takes up to extra.Count more units of
	// extra.Unit, as DecideLease does, and returns how many it took. The decision's buckets
	// count the leased units as taken.
	Lease(ctx context.Context, key string, limits Limits, cost Cost, extra Extra) (Decision, int64, error)
	// Refund gives back units that were taken and not used, in both dimensions: each limited
	// bucket gets their worth back, but never becomes fuller than full.
	Refund(ctx context.Context, key string, limits Limits, units Cost) error
}

// Limits are the limits of one key; a zero limit means that dimension is unlimited.
type Limits struct {
	// Requests is the number of requests allowed per Period (RPM for a minute).
	Requests int64
	// Tokens is the number of tokens allowed per Period (TPM for a minute).
	Tokens int64
	// Period is the time over which the limits apply and in which an empty bucket refills
	// completely; zero means one minute.
	Period time.Duration
}

// PerMinute returns limits of rpm requests and tpm tokens per minute.
func PerMinute(rpm, tpm int64) Limits {
	return Limits{Requests: rpm, Tokens: tpm, Period: time.Minute}
}

// period returns the effective period.
func (l Limits) period() time.Duration {
	if l.Period <= 0 {
		return time.Minute
	}
	return l.Period
}

// Validate rejects negative limits.
func (l Limits) Validate() error {
	if l.Requests < 0 || l.Tokens < 0 || l.Period < 0 {
		return fmt.Errorf("%w: limits must not be negative (requests %d, tokens %d, period %s)", ErrInvalid, l.Requests, l.Tokens, l.Period)
	}
	return nil
}

// Unlimited reports whether no dimension is limited.
func (l Limits) Unlimited() bool { return l.Requests == 0 && l.Tokens == 0 }

// Cost is what one request takes from the buckets.
type Cost struct {
	// Requests is usually 1.
	Requests int64
	// Tokens is the tokens to take at admission, typically the prompt tokens (plus the
	// requested max_tokens for a conservative limiter); the rest can be charged afterwards.
	Tokens int64
}

// Validate rejects negative costs.
func (c Cost) Validate() error {
	if c.Requests < 0 || c.Tokens < 0 {
		return fmt.Errorf("%w: cost must not be negative (requests %d, tokens %d)", ErrInvalid, c.Requests, c.Tokens)
	}
	return nil
}

// Bucket is the state of one dimension after a decision, as the x-ratelimit-* headers want it.
type Bucket struct {
	// Limit is the bucket's capacity (x-ratelimit-limit-*); 0 when the dimension is unlimited.
	Limit int64
	// Remaining is what could still be taken now (x-ratelimit-remaining-*).
	Remaining int64
	// Reset is the time until the bucket is full again (x-ratelimit-reset-*).
	Reset time.Duration
}

// Decision is the outcome of Allow.
type Decision struct {
	// Allowed reports whether the cost was taken and the request may proceed.
	Allowed bool
	// Requests is the request bucket after the decision.
	Requests Bucket
	// Tokens is the token bucket after the decision.
	Tokens Bucket
	// RetryAfter is, when the request was refused, how long until the same cost would be
	// admitted (absent other traffic). Zero when allowed or when TooLarge.
	RetryAfter time.Duration
	// TooLarge reports that the cost exceeds a bucket's capacity: waiting will never help.
	TooLarge bool
}

// Key returns the limiter key of an API key and a model. The key id's length is part of the
// key, so that no two (key id, model) pairs map to the same string whatever they contain.
func Key(keyID, model string) string {
	return strconv.Itoa(len(keyID)) + ":" + keyID + ":" + model
}
