// Package redis is HXP's Redis connector: the shared rate limiter (a limits.Leaser whose
// buckets live in Redis, so every gateway sees the same counts), the response cache, and
// the invalidation channel on which gateways tell each other to drop cached keys
// (Publish, Subscribe).
package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Options tunes the client; the zero value is usable. Settings in the URL's query (for
// example dial_timeout) win over these defaults.
type Options struct {
	// Logger receives the connector's logs; the zero value discards them.
	Logger zerolog.Logger
	// Timeout bounds dialing and each read or write when the URL does not set them; 0 means
	// 1 second. The limiter sits on the request path, so a dead Redis must fail fast.
	Timeout time.Duration
}

// Client is a connection pool to Redis. It is safe for concurrent use.
type Client struct {
	rdb *goredis.Client
	log zerolog.Logger
}

// Open connects to the Redis server at url (redis:// or rediss://, with an optional /db) and
// checks that it answers PING. The URL may carry a password; it is never logged.
func Open(ctx context.Context, url string, opts Options) (*Client, error) {
	ro, err := goredis.ParseURL(url)
	if err != nil {
		// The parse error may quote the URL, password included: do not wrap it.
		return nil, errors.New("redis: invalid connection URL")
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	if ro.DialTimeout == 0 {
		ro.DialTimeout = timeout
	}
	if ro.ReadTimeout == 0 {
		ro.ReadTimeout = timeout
	}
	if ro.WriteTimeout == 0 {
		ro.WriteTimeout = timeout
	}
	// A dead Redis must not hold a request for seconds of retries: one retry covers a pooled
	// connection broken by a Redis restart, one dial attempt covers a refused connection.
	if ro.MaxRetries == 0 {
		ro.MaxRetries = 1
	}
	if ro.DialerRetries == 0 {
		ro.DialerRetries = 1
	}
	if ro.DialerRetryTimeout == 0 {
		ro.DialerRetryTimeout = 10 * time.Millisecond
	}
	c := &Client{rdb: goredis.NewClient(ro), log: opts.Logger.With().Str("component", "redis").Logger()}
	routeLibraryLogs(c.log)
	if err := c.Health(ctx); err != nil {
		c.rdb.Close()
		return nil, err
	}
	c.log.Info().Str("addr", ro.Addr).Int("db", ro.DB).Msg("redis connected")
	return c, nil
}

// Health checks that Redis answers PING.
func (c *Client) Health(ctx context.Context) error {
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: health check: %w", err)
	}
	return nil
}

// Close closes the pool.
func (c *Client) Close() error {
	if err := c.rdb.Close(); err != nil {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}

var libraryLogsOnce sync.Once

// routeLibraryLogs sends go-redis' own log lines (dial failures and the like, also returned as
// errors) to zerolog at debug level instead of the standard logger. go-redis has one logger
// per process, so the first client's logger is used.
func routeLibraryLogs(log zerolog.Logger) {
	libraryLogsOnce.Do(func() { goredis.SetLogger(libraryLogger{log: log}) })
}

// libraryLogger adapts zerolog to go-redis' logging interface.
type libraryLogger struct{ log zerolog.Logger }

// Printf implements go-redis' internal.Logging.
func (l libraryLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug().Msgf(format, v...)
}
