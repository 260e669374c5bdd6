package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hxp-ai/hxp/health"
	"github.com/hxp-ai/hxp/sched"
)

// ErrStalled means the model's scheduler has requests in flight but its loop has not
// completed a decode step for longer than the service's stall threshold: llama.cpp
// hangs, a deadlock, or a step far beyond the latency target. Such a model is loaded
// but not serving, which a state check alone would not notice.
var ErrStalled = errors.New("model scheduler stalled")

// MinStallThreshold is the shortest default stall threshold: steps of a loaded model
// normally take milliseconds to a few hundred milliseconds.
const MinStallThreshold = 5 * time.Second

// stallITLs is how many inter-token latency targets a step may take before the
// scheduler counts as stalled.
const stallITLs = 10

// HealthCheckInterval is how often the model check runs: it only reads atomics, and a
// stall must show within seconds.
const HealthCheckInterval = time.Second

// StallThreshold is how long a busy scheduler may go without progress before it is
// reported stalled: Options.StallAfter when set, otherwise the larger of
// MinStallThreshold and 10 inter-token latency targets (target_itl_ms, or
// target_latency_ms/10 when unset).
func (s *Service) StallThreshold() time.Duration {
	if s.opts.StallAfter > 0 {
		return s.opts.StallAfter
	}
	itl := s.cfg.TargetITL()
	if itl <= 0 {
		itl = s.cfg.TargetLatency() / 10
	}
	return max(MinStallThreshold, stallITLs*itl)
}

// Decoding returns nil when the service is ready and its scheduler is making progress
// at now: idle, or busy with a step completed within StallThreshold. Otherwise it
// returns an error wrapping ErrNotReady or sched.ErrClosed (see Ready) or ErrStalled.
// A model unloaded for idleness (or loading again on demand) is healthy.
func (s *Service) Decoding(now time.Time) error {
	if st := s.State(); s.idle.Load() && (st == StateUnloaded || st == StateLoading) {
		return nil // unloaded for idleness, or loading again on demand: healthy
	}
	if err := s.Ready(); err != nil {
		return err
	}
	sc := s.Scheduler()
	if sc == nil {
		return fmt.Errorf("model %s: %w", s.cfg.Name, sched.ErrClosed)
	}
	st := sc.Stats()
	if !st.Busy {
		return nil
	}
	if age, limit := now.Sub(sc.LastProgress()), s.StallThreshold(); age > limit {
		return fmt.Errorf("model %s: %w: %d requests in flight (%d running, %d queued) and no decode step for %s (threshold %s)",
			s.cfg.Name, ErrStalled, st.InFlight, st.Running, st.Queued, age.Round(time.Millisecond), limit)
	}
	return nil
}

// HealthCheckName is the name of a model's health check: "model:<name>".
func HealthCheckName(model string) string { return "model:" + model }

// HealthCheck is the model's critical health check: the model is loaded and actually
// decoding (see Decoding). It runs every HealthCheckInterval.
func (s *Service) HealthCheck() health.Check {
	return health.Check{
		Name:     HealthCheckName(s.cfg.Name),
		Level:    health.Critical,
		Interval: HealthCheckInterval,
		Timeout:  time.Second,
		Run:      func(context.Context) error { return s.Decoding(time.Now()) },
	}
}
