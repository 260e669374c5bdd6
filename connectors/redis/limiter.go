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

// limiterScript runs limits.Decide and limits.ChargeState atomically inside Redis, on Redis'
// clock, so that any number of gateways share exact buckets.
//
//go:embed limiter.lua
var limiterScript string

var limiterLua = goredis.NewScript(limiterScript)

// limiterPrefix starts the key of every rate-limit bucket.
const limiterPrefix = "hxp:rl:"

// Limiter is a limits.Limiter with its buckets in Redis. Each (key) bucket is one small hash
// that expires once it has refilled completely.
type Limiter struct {
	c *Client
}

// Limiter returns the Redis rate limiter.
func (c *Client) Limiter() *Limiter { return &Limiter{c: c} }

var _ limits.Limiter = (*Limiter)(nil)

// Allow implements limits.Limiter. Errors from Redis wrap limits.ErrUnavailable.
func (l *Limiter) Allow(ctx context.Context, key string, lim limits.Limits, cost limits.Cost) (limits.Decision, error) {
	if err := lim.Validate(); err != nil {
		return limits.Decision{}, err
	}
	if err := cost.Validate(); err != nil {
		return limits.Decision{}, err
	}
	res, err := l.run(ctx, "allow", key, lim, cost.Requests, cost.Tokens)
	if err != nil {
		return limits.Decision{}, err
	}
	if len(res) != 7 {
		return limits.Decision{}, fmt.Errorf("redis: rate limit: %w: script returned %d values", limits.ErrUnavailable, len(res))
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return limits.Decision{
		Allowed:    res[0] == 1,
		TooLarge:   res[1] == 1,
		Requests:   limits.Bucket{Limit: lim.Requests, Remaining: res[2], Reset: us(res[3])},
		Tokens:     limits.Bucket{Limit: lim.Tokens, Remaining: res[4], Reset: us(res[5])},
		RetryAfter: us(res[6]),
	}, nil
}

// Charge implements limits.Limiter. Errors from Redis wrap limits.ErrUnavailable.
func (l *Limiter) Charge(ctx context.Context, key string, lim limits.Limits, tokens int64) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	_, err := l.run(ctx, "charge", key, lim, 0, tokens)
	return err
}

// run evaluates the script (EVALSHA, falling back to EVAL after a Redis restart emptied the
// script cache) and returns its integer results.
func (l *Limiter) run(ctx context.Context, mode, key string, lim limits.Limits, reqCost, tokCost int64) ([]int64, error) {
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
	res, err := limiterLua.Run(ctx, l.c.rdb, []string{limiterPrefix + key}, args...).Int64Slice()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redis: rate limit %s: %w: %w", mode, limits.ErrUnavailable, err)
	}
	return res, nil
}
