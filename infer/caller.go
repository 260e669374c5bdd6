package infer

import (
	"context"
	"slices"
	"time"

	"github.com/hxp-ai/hxp/sched"
)

// Caller is who a request was authenticated as: one API key and what it may do.
// Transports put it into the request's context (WithCaller) after authentication;
// admission, routing and the scheduler read it from there. A request without auth
// has none.
type Caller struct {
	// ID is the key's public id: safe to log, used in the ledger and limiter keys.
	ID string
	// Name is the key's human label.
	Name string
	// Models are the models the key may use; empty allows every model.
	Models []string
	// RPM and TPM are the requests and tokens per minute allowed per model; 0 is
	// unlimited.
	RPM, TPM int64
	// Budget is the monthly token budget (prompt plus completion tokens, calendar
	// month in UTC); 0 is unlimited.
	Budget int64
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time
	// Weight is the key's share of a model's slots relative to other keys' when they
	// compete (fair share); 0 means 1.
	Weight float64
	// Priority is the key's scheduling class: interactive (default) or batch.
	Priority sched.Priority
	// Internal marks a node-to-node key (one gateway calling another hxp node): its
	// requests are neither limited nor recorded, because the gateway that received the
	// client's request already did both.
	Internal bool
}

// AllowsModel reports whether the caller may use model (a nil caller may use all).
func (c *Caller) AllowsModel(model string) bool {
	return c == nil || len(c.Models) == 0 || slices.Contains(c.Models, model)
}

// Expired reports whether the key has expired at now.
func (c *Caller) Expired(now time.Time) bool {
	return !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt)
}

type callerKey struct{}
type requestIDKey struct{}

// WithCaller returns ctx carrying the authenticated caller.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller of ctx, or nil.
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// WithRequestID returns ctx carrying the request's id (logs, the ledger, and the
// X-Request-Id sent to remote nodes).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFrom returns the request id of ctx, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
