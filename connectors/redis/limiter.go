package redis

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/hxp-ai/hxp/limits"
)

// limiterScript runs limits.DecideLease (of which limits.Decide is the case without extra
// units) and limits' bucket adjustments (ChargeState, RefundState) atomically inside Redis,
// on Redis' clock, so that any number of gateways share exact buckets.
//
//go:embed limiter.lua
var limiterScript string

var limiterLua = goredis.NewScript(limiterScript)

// limiterPrefix starts the key of every rate-limit bucket.
const limiterPrefix = "hxp:rl:"

// Limiter is a limits.Leaser with its buckets in Redis: a Limiter whose every decision is
// one script call, and the backend of limits.Leased, which answers most decisions from
// units leased ahead. Each (key) bucket is one small hash that expires once it has refilled
// completely.
type Limiter struct {
	c *Client
}

// Limiter returns the Redis rate limiter.
func (c *Client) Limiter() *Limiter { return &Limiter{c: c} }

var _ limits.Leaser = (*Limiter)(nil)

// Allow implements limits.Limiter. Errors from Redis wrap limits.ErrUnavailable.
func (l *Limiter) Allow(ctx context.Context, key string, lim limits.Limits, cost limits.Cost) (limits.Decision, error) {
	d, _, err := l.Lease(ctx, key, lim, cost, limits.Extra{})
	return d, err
}

// Lease implements limits.Leaser. Errors from Redis wrap limits.ErrUnavailable.
func (l *Limiter) Lease(ctx context.Context, key string, lim limits.Limits, cost limits.Cost, extra limits.Extra) (limits.Decision, int64, error) {
	if err := lim.Validate(); err != nil {
		return limits.Decision{}, 0, err
	}
	if err := cost.Validate(); err != nil {
		return limits.Decision{}, 0, err
	}
	if err := extra.Validate(); err != nil {
		return limits.Decision{}, 0, err
	}
	res, err := l.run(ctx, "lease", key, lim, cost.Requests, cost.Tokens,
		strconv.FormatInt(extra.Unit.Requests, 10), strconv.FormatInt(extra.Unit.Tokens, 10),
		strconv.FormatInt(extra.Count, 10), strconv.FormatFloat(extra.Share, 'g', -1, 64))
	if err != nil {
		return limits.Decision{}, 0, err
	}
	if len(res) != 8 {
		return limits.Decision{}, 0, fmt.Errorf("redis: rate limit: %w: script returned %d values", limits.ErrUnavailable, len(res))
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return limits.Decision{
		Allowed:    res[0] == 1,
		TooLarge:   res[1] == 1,
		Requests:   limits.Bucket{Limit: lim.Requests, Remaining: res[2], Reset: us(res[3])},
		Tokens:     limits.Bucket{Limit: lim.Tokens, Remaining: res[4], Reset: us(res[5])},
		RetryAfter: us(res[6]),
	}, res[7], nil
}

// Charge implements limits.Limiter. Errors from Redis wrap limits.ErrUnavailable.
func (l *Limiter) Charge(ctx context.Context, key string, lim limits.Limits, tokens int64) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	_, err := l.run(ctx, "adjust", key, lim, 0, tokens)
	return err
}

// Refund implements limits.Leaser. Errors from Redis wrap limits.ErrUnavailable.
func (l *Limiter) Refund(ctx context.Context, key string, lim limits.Limits, units limits.Cost) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	if err := units.Validate(); err != nil {
		return err
	}
	_, err := l.run(ctx, "adjust", key, lim, -units.Requests, -units.Tokens)
	return err
}

// run evaluates the script (EVALSHA, falling back to EVAL after a Redis restart emptied the
// script cache) and returns its integer results. more are the mode's further arguments.
func (l *Limiter) run(ctx context.Context, mode, key string, lim limits.Limits, reqCost, tokCost int64, more ...string) ([]int64, error) {
	period := lim.Period
	if period <= 0 {
		period = time.Minute
	}
	args := []any{
		mode,
		strconv.FormatInt(period.Microseconds(), 10),
		strconv.FormatInt(lim.Requests, 10),
		strconv.FormatInt(lim.Tokens, 10),
		strconv.FormatInt(reqCost, 10),
		strconv.FormatInt(tokCost, 10),
	}
	for _, a := range more {
		args = append(args, a)
	}
	res, err := limiterLua.Run(ctx, l.c.rdb, []string{limiterPrefix + key}, args...).Int64Slice()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redis: rate limit %s: %w: %w", mode, limits.ErrUnavailable, err)
	}
	return res, nil
}
