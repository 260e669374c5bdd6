package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hxp-ai/hxp/config"
)

// Errors of the model lifecycle (Group.Add, planning).
var (
	// ErrExists means a model of that name is already served.
	ErrExists = errors.New("model already exists")
	// ErrDoesNotFit means the model's planned memory does not fit what is free.
	ErrDoesNotFit = errors.New("model does not fit the free memory")
)

// LoadAsync begins loading the model now (the service is loading when it returns)
// and finishes in the background, then calls done with the load's result. It fails
// at once unless the service is new or unloaded.
func (s *Service) LoadAsync(ctx context.Context, done func(error)) error {
	if !s.beginLoad(StateNew, StateUnloaded) {
		return fmt.Errorf("service %s: load in state %s", s.cfg.Name, s.State())
	}
	go func() { done(s.load(ctx)) }()
	return nil
}

// errInUse is Unload's answer for a model used since it was found idle.
var errInUse = errors.New("model in use")

// Unload frees a model that has had no request for idle at now, keeping the service:
// the next request's Wake loads it again. The check and the switch to unloading are
// one step with respect to requests (see acquire), so a request either keeps the
// model loaded or waits for its reload; none is refused. It returns an error wrapping
// errInUse when the model was used meanwhile, or ErrNotReady when it is not ready.
func (s *Service) Unload(ctx context.Context, now time.Time, idle time.Duration) error {
	s.use.Lock()
	if s.State() != StateReady {
		s.use.Unlock()
		return fmt.Errorf("model %s: unload in state %s: %w", s.cfg.Name, s.State(), ErrNotReady)
	}
	if now.Sub(s.IdleSince(now)) < idle {
		s.use.Unlock()
		return fmt.Errorf("model %s: %w", s.cfg.Name, errInUse)
	}
	s.mu.Lock()
	s.unload = make(chan struct{})
	done := s.unload
	s.mu.Unlock()
	defer close(done)
	s.idle.Store(true)
	s.state.Store(int32(StateDraining))
	s.use.Unlock()
	var err error
	if sc := s.Scheduler(); sc != nil {
		err = sc.Drain(ctx) // nothing runs: it was idle and no request began since
	}
	s.free(StateDraining)
	// A Close that came meanwhile wins: the service stays closed.
	s.state.CompareAndSwap(int32(StateDraining), int32(StateUnloaded))
	s.log.Info().Str("unload_after", s.cfg.UnloadAfter.String()).Msg("model unloaded while idle; the next request loads it")
	return err
}

// SetBeforeWake sets the check a load on demand must pass first (see Wake); nil
// removes it.
func (s *Service) SetBeforeWake(check func(*Service) error) {
	if check == nil {
		s.beforeWake.Store(nil)
		return
	}
	s.beforeWake.Store(&check)
}

// Wake loads a model unloaded for idleness and waits for its load (or for a load on
// demand already running) until the config's load_wait has passed or ctx ends; the
// load itself goes on either way. A model in any other state (new ones included) is
// left as it is. The caller then checks Ready, which says "loading" when the wait was
// too short.
//
// Before such a load begins, the check set by SetBeforeWake (the app's memory plan)
// is asked: when it refuses, nothing is loaded and Wake returns its error wrapped
// (the model stays unloaded; a later request asks again).
func (s *Service) Wake(ctx context.Context) error {
	// A request: not idle. Under the use lock, so that an Unload either sees this use
	// or has already marked the model idle (and this Wake loads it again).
	s.use.RLock()
	s.lastUsed.Store(time.Now().UnixNano())
	idle := s.idle.Load()
	s.use.RUnlock()
	if !idle {
		return nil
	}
	t := time.NewTimer(s.cfg.LoadWait.D())
	defer t.Stop()
	if s.State() == StateDraining { // an idle unload is ending (its channel is set first): then load
		s.mu.Lock()
		unloading := s.unload
		s.mu.Unlock()
		select {
		case <-unloading:
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	if check := s.beforeWake.Load(); check != nil && s.State() == StateUnloaded {
		if err := (*check)(s); err != nil {
			s.log.Warn().Err(err).Msg("an unloaded model was not loaded on demand")
			return fmt.Errorf("model %s is unloaded and was not loaded: %w", s.cfg.Name, err)
		}
	}
	if s.beginLoad(StateUnloaded) {
		s.log.Info().Msg("loading an unloaded model on demand")
		go func() { _ = s.load(context.Background()) }()
	} else if s.State() != StateLoading {
		return nil
	}
	s.mu.Lock()
	done := s.loaded
	s.mu.Unlock()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	return nil
}

// IdleSince is when the model last had a request, or now when requests are in flight.
func (s *Service) IdleSince(now time.Time) time.Time {
	if s.InFlight() > 0 {
		s.lastUsed.Store(now.UnixNano())
		return now
	}
	return time.Unix(0, s.lastUsed.Load())
}

// SetPlannedBytes records the memory the planner reserved for the model.
func (s *Service) SetPlannedBytes(n int64) { s.planned.Store(n) }

// PlannedBytes is the memory planned for the model: the planner's figure when one was
// recorded, else its memory_limit_gb, else its file size.
func (s *Service) PlannedBytes() int64 {
	if n := s.planned.Load(); n > 0 {
		return n
	}
	return plannedBytes(s.cfg)
}

// plannedBytes is what a model may take before the planner has seen it: its
// memory_limit_gb, or its file size when unset.
func plannedBytes(m config.Model) int64 {
	if n := m.MemoryLimitBytes(); n > 0 {
		return n
	}
	return modelFileSize(m.Path)
}

// Status is one model as the admin API lists it.
type Status struct {
	// Name is the model id.
	Name string `json:"name"`
	// State is new, loading, ready, draining, unloaded, failed or closed.
	State string `json:"state"`
	// LoadProgress is 0..1 while loading, 1 once loaded.
	LoadProgress float64 `json:"load_progress"`
	// Error is why a failed model failed.
	Error string `json:"error,omitempty"`
	// MemoryPlannedBytes is the memory reserved for the model; MemoryUsedBytes what its
	// weights and KV cache take while it is loaded (0 otherwise).
	MemoryPlannedBytes int64 `json:"memory_planned_bytes"`
	MemoryUsedBytes    int64 `json:"memory_used_bytes"`
	// InFlight requests are not finished; SlotsBusy of SlotsTotal sequences are
	// generating; Queued requests wait.
	InFlight   int `json:"in_flight"`
	SlotsBusy  int `json:"slots_busy"`
	SlotsTotal int `json:"slots_total"`
	Queued     int `json:"queued"`
	// Port is the model's own listener port (0: the gateway only).
	Port int `json:"port"`
	// UnloadAfter is the idle time after which the model is unloaded ("0s": never).
	UnloadAfter string `json:"unload_after"`
}

// Status describes the service now.
func (s *Service) Status() Status {
	st := Status{Name: s.cfg.Name, State: s.State().String(), LoadProgress: s.Progress(), MemoryPlannedBytes: s.PlannedBytes(),
		MemoryUsedBytes: s.used.Load(), SlotsTotal: s.cfg.Parallel, Port: s.cfg.Port, UnloadAfter: s.cfg.UnloadAfter.String()}
	if err := s.Err(); err != nil && s.State() == StateFailed {
		st.Error = err.Error()
	}
	sc := s.Stats()
	st.InFlight, st.SlotsBusy, st.Queued = sc.InFlight, sc.Running, sc.Queued
	return st
}
