package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// DefaultCachePrefix starts every cache entry's Redis key unless Cache is given another.
const DefaultCachePrefix = "hxp:cache:"

// Cache stores response bodies by key (the gateway hashes the canonical request into the key)
// with a time to live.
type Cache struct {
	c      *Client
	prefix string
}

// Cache returns the response cache; keys are stored under prefix ("" means
// DefaultCachePrefix).
func (c *Client) Cache(prefix string) *Cache {
	if prefix == "" {
		prefix = DefaultCachePrefix
	}
	return &Cache{c: c, prefix: prefix}
}

// Get returns the value stored under key; found is false when there is none (never set,
// expired or deleted).
func (c *Cache) Get(ctx context.Context, key string) (value []byte, found bool, err error) {
	value, err = c.c.rdb.Get(ctx, c.prefix+key).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis: cache get: %w", err)
	}
	return value, true, nil
}

// Add stores value under key for ttl, which must be positive (with millisecond
// resolution), unless key already holds a value (SET NX): the first value stays.
func (c *Cache) Add(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("redis: cache add: ttl %s must be at least 1ms", ttl)
	}
	if err := c.c.rdb.SetNX(ctx, c.prefix+key, value, ttl).Err(); err != nil {
		return fmt.Errorf("redis: cache add: %w", err)
	}
	return nil
}

// Delete removes key; deleting a missing key is not an error.
func (c *Cache) Delete(ctx context.Context, key string) error {
	if err := c.c.rdb.Del(ctx, c.prefix+key).Err(); err != nil {
		return fmt.Errorf("redis: cache delete: %w", err)
	}
	return nil
}
