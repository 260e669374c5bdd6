// Package breaker is a circuit breaker: it stops traffic to a dependency that keeps
// failing and lets a few probes through after a pause. route.Pool keeps one per
// remote upstream; the tenancy's rate limiter keeps one around its shared store.
//
// It imports only the standard library.
package breaker

import (
	"sync"
	"time"
)

// State is the state of a circuit breaker.
type State int

// Circuit breaker states.
const (
	// Closed lets every request through and counts consecutive failures.
	Closed State = iota
	// Open refuses requests until its open period has passed.
	Open
	// HalfOpen lets a few probe requests through: their successes close the
	// breaker, a failure opens it again.
	HalfOpen
)

// String returns closed, open or half-open.
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "unknown"
}

// Config are a circuit breaker's thresholds. Zero fields take the defaults.
type Config struct {
	// FailureThreshold is the number of consecutive failures that opens the breaker
	// (default 5).
	FailureThreshold int
	// OpenFor is how long an open breaker refuses requests before it lets probes
	// through (default 10s).
	OpenFor time.Duration
	// HalfOpenProbes is the number of probe requests let through at once while
	// half-open, and the number of successes that close the breaker again (default 1).
	HalfOpenProbes int
}

func (c Config) withDefaults() Config {
	if c.FailureThreshold <= 0 {
		c.FailureThreshold = 5
	}
	if c.OpenFor <= 0 {
		c.OpenFor = 10 * time.Second
	}
	if c.HalfOpenProbes <= 0 {
		c.HalfOpenProbes = 1
	}
	return c
}

// Breaker is a circuit breaker: closed, it counts consecutive failures and opens at
// the threshold; open, it refuses requests for OpenFor; then half-open, it admits up
// to HalfOpenProbes probes at a time and closes after as many successes, or opens
// again on the first failure. Every admitted request must be ended with exactly one
// Success, Failure or Release. Safe for concurrent use.
type Breaker struct {
	cfg Config
	now func() time.Time

	mu        sync.Mutex
	state     State
	failures  int       // consecutive failures while closed
	openedAt  time.Time // when it last opened
	probes    int       // probes admitted and not yet ended while half-open
	successes int       // probe successes while half-open
	opens     int       // times it opened, for stats
}

// New returns a closed breaker. now is the clock (nil: time.Now).
func New(cfg Config, now func() time.Time) *Breaker {
	if now == nil {
		now = time.Now
	}
	return &Breaker{cfg: cfg.withDefaults(), now: now}
}

// advance moves an open breaker whose period has passed to half-open. mu is held.
func (b *Breaker) advance() {
	if b.state == Open && b.now().Sub(b.openedAt) >= b.cfg.OpenFor {
		b.state, b.probes, b.successes = HalfOpen, 0, 0
	}
}

// Allow reports whether a request may go through now, and takes a probe slot when
// the breaker is half-open.
func (b *Breaker) Allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	switch b.state {
	case Closed:
		return true
	case HalfOpen:
		if b.probes < b.cfg.HalfOpenProbes {
			b.probes++
			return true
		}
	}
	return false
}

// Available reports whether Allow would admit a request now, without taking a slot.
func (b *Breaker) Available() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	return b.state == Closed || b.state == HalfOpen && b.probes < b.cfg.HalfOpenProbes
}

// Success ends an admitted request that worked.
func (b *Breaker) Success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case Closed:
		b.failures = 0
	case HalfOpen:
		b.probes = max(b.probes-1, 0)
		b.successes++
		if b.successes >= b.cfg.HalfOpenProbes {
			b.state, b.failures = Closed, 0
		}
	}
}

// Failure ends an admitted request that failed.
func (b *Breaker) Failure() {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case Closed:
		b.failures++
		if b.failures >= b.cfg.FailureThreshold {
			b.open()
		}
	case HalfOpen:
		b.open()
	}
}

// Release ends an admitted request whose outcome says nothing about the dependency's
// health (the client went away, the upstream was busy): it frees a half-open probe
// slot without moving the breaker.
func (b *Breaker) Release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == HalfOpen {
		b.probes = max(b.probes-1, 0)
	}
}

// open moves the breaker to open. mu is held.
func (b *Breaker) open() {
	b.state, b.openedAt, b.failures, b.probes, b.successes = Open, b.now(), 0, 0, 0
	b.opens++
}

// State returns the breaker's state now.
func (b *Breaker) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	return b.state
}

// RetryIn is how long until an open breaker lets probes through (0 otherwise).
func (b *Breaker) RetryIn() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != Open {
		return 0
	}
	return max(b.cfg.OpenFor-b.now().Sub(b.openedAt), 0)
}

// Opens counts how often the breaker has opened.
func (b *Breaker) Opens() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opens
}
