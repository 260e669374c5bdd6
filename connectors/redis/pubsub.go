package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// InvalidationChannel is the Redis channel on which gateways tell each other to drop
// cached key and budget entries.
const InvalidationChannel = "hxp:invalidate"

// InvalidationKind says what an Invalidation drops.
type InvalidationKind string

// Invalidation kinds.
const (
	// InvalidateKey drops a cached API key (revoked or changed).
	InvalidateKey InvalidationKind = "key"
	// InvalidateBudget drops a key's cached budget state (the budget was reset or changed).
	InvalidateBudget InvalidationKind = "budget"
	// InvalidateAll drops every cached key and budget. Subscribe delivers it when the
	// subscription comes back after a loss, since invalidations published meanwhile were
	// missed.
	InvalidateAll InvalidationKind = "all"
)

// Invalidation tells every gateway to drop cached state.
type Invalidation struct {
	Kind InvalidationKind `json:"kind"`
	// KeyID is the key's public id (never the key itself); empty for InvalidateAll.
	KeyID string `json:"key_id,omitempty"`
}

// validate checks an Invalidation before it is sent or delivered.
func (inv Invalidation) validate() error {
	switch inv.Kind {
	case InvalidateKey, InvalidateBudget:
		if inv.KeyID == "" {
			return fmt.Errorf("redis: %s invalidation without key_id", inv.Kind)
		}
	case InvalidateAll:
		if inv.KeyID != "" {
			return errors.New("redis: invalidation of all entries with a key_id")
		}
	default:
		return fmt.Errorf("redis: invalidation kind %q is not one of key, budget, all", inv.Kind)
	}
	return nil
}

// Publish sends inv to every gateway subscribed to InvalidationChannel.
func (c *Client) Publish(ctx context.Context, inv Invalidation) error {
	if err := inv.validate(); err != nil {
		return err
	}
	msg, err := json.Marshal(inv)
	if err != nil {
		return fmt.Errorf("redis: encode invalidation: %w", err)
	}
	if err := c.rdb.Publish(ctx, InvalidationChannel, msg).Err(); err != nil {
		return fmt.Errorf("redis: publish %s invalidation: %w", inv.Kind, err)
	}
	return nil
}

// How Subscribe keeps its subscription: a ping after this long without a message (a
// connection that does not answer it is lost), and the waits between attempts while
// Redis is unreachable.
const (
	subscribePing       = 15 * time.Second
	subscribeRetryFirst = 100 * time.Millisecond
	subscribeRetryMax   = 5 * time.Second
)

// Subscribe calls fn with every Invalidation published on InvalidationChannel until ctx
// ends, and returns ctx's error. fn runs on Subscribe's goroutine, one call at a time.
//
// While Redis is unreachable it retries, logging one warning per outage (cached entries
// then expire by their TTL alone); when the subscription is back it logs so and calls fn
// with InvalidateAll, because invalidations published during the outage were lost.
// Malformed messages are logged and skipped.
func (c *Client) Subscribe(ctx context.Context, fn func(Invalidation)) error {
	retry := subscribeRetryFirst
	lost := false
	for {
		established, err := c.subscribeOnce(ctx, func() {
			if lost {
				c.log.Info().Str("channel", InvalidationChannel).Msg("redis: invalidation subscription restored; dropping every cached entry")
				fn(Invalidation{Kind: InvalidateAll})
			}
			lost = false
		}, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if established {
			retry = subscribeRetryFirst
		}
		ev := c.log.Debug()
		if !lost {
			ev = c.log.Warn()
		}
		ev.Err(err).Str("channel", InvalidationChannel).
			Msg("redis: invalidation subscription lost; cached keys and budgets expire by their TTL until it is back")
		lost = true
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
		retry = min(2*retry, subscribeRetryMax)
	}
}

// subscribeOnce subscribes on one connection, calls ready once Redis confirms, delivers
// messages until the connection fails, and reports whether it got as far as ready.
func (c *Client) subscribeOnce(ctx context.Context, ready func(), fn func(Invalidation)) (bool, error) {
	ps := c.rdb.Subscribe(ctx, InvalidationChannel)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { ps.Close() }) // unblocks a waiting receive
	defer stop()
	msg, err := ps.ReceiveTimeout(ctx, subscribePing)
	if err != nil {
		return false, fmt.Errorf("subscribe: %w", err)
	}
	if _, ok := msg.(*goredis.Subscription); !ok {
		return false, fmt.Errorf("subscribe: unexpected first reply %T", msg)
	}
	ready()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, subscribePing)
		var nerr net.Error
		switch {
		case err != nil && errors.As(err, &nerr) && nerr.Timeout() && !pinged:
			if err := ps.Ping(ctx); err != nil {
				return true, fmt.Errorf("ping: %w", err)
			}
			pinged = true
			continue
		case err != nil:
			return true, fmt.Errorf("receive: %w", err)
		}
		pinged = false
		if m, ok := msg.(*goredis.Message); ok {
			c.deliver(m.Payload, fn)
		}
	}
}

// deliver decodes one published message and passes it to fn.
func (c *Client) deliver(payload string, fn func(Invalidation)) {
	var inv Invalidation
	dec := json.NewDecoder(strings.NewReader(payload))
	dec.DisallowUnknownFields()
	err := dec.Decode(&inv)
	if err == nil {
		err = inv.validate()
	}
	if err != nil {
		// The payload is not logged: whoever can publish on the channel chooses it.
		c.log.Warn().Err(err).Int("bytes", len(payload)).Str("channel", InvalidationChannel).Msg("redis: malformed invalidation skipped")
		return
	}
	fn(inv)
}
