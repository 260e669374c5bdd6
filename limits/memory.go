package limits

import (
	"context"
	"sync"
	"time"
)

// sweepEvery is how many operations pass between sweeps of idle keys.
const sweepEvery = 4096

// Memory is the in-process Limiter: the same buckets as the Redis limiter, kept in a map, for
// a single gateway without Redis. It is also a Leaser, so that Leased can be tested (and
// used) without Redis. The zero value is not usable; call NewMemory.
type Memory struct {
	now func() time.Time

	mu    sync.Mutex
	state map[string]State
	ops   int
}

// NewMemory returns an empty in-process limiter. now is the clock (nil means time.Now); tests
// pass a fake one.
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now, state: make(map[string]State)}
}

// Allow implements Limiter.
func (m *Memory) Allow(ctx context.Context, key string, lim Limits, cost Cost) (Decision, error) {
	d, _, err := m.Lease(ctx, key, lim, cost, Extra{})
	return d, err
}

// Lease implements Leaser.
func (m *Memory) Lease(ctx context.Context, key string, lim Limits, cost Cost, extra Extra) (Decision, int64, error) {
	if err := lim.Validate(); err != nil {
		return Decision{}, 0, err
	}
	if err := cost.Validate(); err != nil {
		return Decision{}, 0, err
	}
	if err := extra.Validate(); err != nil {
		return Decision{}, 0, err
	}
	now := m.now().UnixMicro()
	m.mu.Lock()
	defer m.mu.Unlock()
	s, d, n := DecideLease(m.state[key], now, lim, cost, extra)
	m.store(key, s, now)
	return d, n, nil
}

// Charge implements Limiter.
func (m *Memory) Charge(ctx context.Context, key string, lim Limits, tokens int64) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	m.update(key, func(s State, now int64) State { return ChargeState(s, now, lim, tokens) })
	return nil
}

// Refund implements Leaser.
func (m *Memory) Refund(ctx context.Context, key string, lim Limits, units Cost) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	if err := units.Validate(); err != nil {
		return err
	}
	m.update(key, func(s State, now int64) State { return RefundState(s, now, lim, units) })
	return nil
}

// update replaces key's state by f of it.
func (m *Memory) update(key string, f func(s State, now int64) State) {
	now := m.now().UnixMicro()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.store(key, f(m.state[key], now), now)
}

// Len returns the number of keys with state, for tests and metrics.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.state)
}

// store saves a key's state (deleting it when it is idle) and now and then sweeps idle keys,
// so that the map holds only keys used within their period. Called with mu held.
func (m *Memory) store(key string, s State, now int64) {
	if s.Idle() == 0 {
		delete(m.state, key)
	} else {
		m.state[key] = s
	}
	m.ops++
	if m.ops%sweepEvery != 0 {
		return
	}
	for k, st := range m.state {
		if now-st.At >= st.Idle().Microseconds() {
			delete(m.state, k)
		}
	}
}

var _ Leaser = (*Memory)(nil)
