package service

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
)

// Group is the set of model services of one server: those of the config, and those
// added and removed while it serves (Add, Remove). Its methods are safe for
// concurrent use.
type Group struct {
	log  zerolog.Logger
	opts Options

	mu         sync.RWMutex
	services   []*Service
	byName     map[string]*Service
	beforeWake func(*Service) error
}

// NewGroup creates one (unloaded) service per config entry.
func NewGroup(models []config.Model, log zerolog.Logger, opts Options) *Group {
	g := &Group{byName: map[string]*Service{}, log: log, opts: opts}
	for _, m := range models {
		s := New(m, log, opts)
		g.services = append(g.services, s)
		g.byName[m.Name] = s
	}
	return g
}

// Services returns the services in the order they were added (config order first).
func (g *Group) Services() []*Service {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return append([]*Service(nil), g.services...)
}

// Get returns the service of a model, or nil.
func (g *Group) Get(name string) *Service {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.byName[name]
}

// Add creates the (unloaded) service of a model entry with defaults applied; a name
// already served is ErrExists. The caller loads it.
func (g *Group) Add(m config.Model) (*Service, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byName[m.Name] != nil {
		return nil, fmt.Errorf("model %s: %w (unload it first, or use another name)", m.Name, ErrExists)
	}
	s := g.newService(m)
	g.services = append(g.services, s)
	g.byName[m.Name] = s
	return s, nil
}

// New creates the (unloaded) service of a model entry with defaults applied without
// adding it: Replace puts it in place of the running one of its name once loaded.
func (g *Group) New(m config.Model) *Service {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.newService(m)
}

// newService creates a service with the group's options. g.mu is held.
func (g *Group) newService(m config.Model) *Service {
	s := New(m, g.log, g.opts)
	s.SetBeforeWake(g.beforeWake)
	return s
}

// Replace puts s (from New) in place of old, keeping its order, and reports whether
// old was still the group's service of that name; the caller drains and closes old.
func (g *Group) Replace(old, s *Service) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := slices.Index(g.services, old)
	if i < 0 || g.byName[old.Name()] != old || s.Name() != old.Name() {
		return false
	}
	g.services = slices.Clone(g.services)
	g.services[i] = s
	g.byName[s.Name()] = s
	return true
}

// SetBeforeWake sets the check every service, present and added later, asks before
// it loads on demand (Service.SetBeforeWake).
func (g *Group) SetBeforeWake(check func(*Service) error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.beforeWake = check
	for _, s := range g.services {
		s.SetBeforeWake(check)
	}
}

// Remove takes a model's service out of the group and returns it (nil when there is
// none); the caller drains and closes it.
func (g *Group) Remove(name string) *Service {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.byName[name]
	if s == nil {
		return nil
	}
	delete(g.byName, name)
	g.services = slices.DeleteFunc(slices.Clone(g.services), func(x *Service) bool { return x == s })
	return s
}

// States describes every service, in order.
func (g *Group) States() []Status {
	ss := g.Services()
	out := make([]Status, len(ss))
	for i, s := range ss {
		out[i] = s.Status()
	}
	return out
}

// UnloadIdle unloads every ready model with an unload_after that has had no request
// for that long at now, and returns their names.
func (g *Group) UnloadIdle(ctx context.Context, now time.Time) []string {
	var out []string
	for _, s := range g.Services() {
		after := s.cfg.UnloadAfter.D()
		if after <= 0 || s.State() != StateReady || now.Sub(s.IdleSince(now)) < after {
			continue
		}
		if err := s.Unload(ctx, now, after); err != nil {
			if !errors.Is(err, errInUse) && !errors.Is(err, ErrNotReady) {
				g.log.Warn().Err(err).Str("model", s.Name()).Msg("idle unload")
			}
			continue
		}
		out = append(out, s.Name())
	}
	return out
}

// LoadAll loads every service, in parallel as long as the memory the loading models
// may take (their memory_limit_gb, or their file size when unset) fits within
// budget bytes; a model larger than the budget loads alone. budget <= 0 means the
// host's available memory. It returns once every load has finished, with the errors
// of the failed ones joined (the others serve).
func (g *Group) LoadAll(ctx context.Context, budget int64) error {
	if budget <= 0 {
		budget = AvailableMemory()
	}
	gate := newMemGate(budget)
	var wg sync.WaitGroup
	services := g.Services()
	errs := make([]error, len(services))
	for i, s := range services {
		need := s.PlannedBytes()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := gate.acquire(ctx, need); err != nil {
				errs[i] = fmt.Errorf("model %s: load cancelled: %w", s.cfg.Name, err)
				s.Close()
				return
			}
			defer gate.release(need)
			errs[i] = s.Load(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Drain stops every service from accepting requests and waits for the in-flight ones
// until ctx ends.
func (g *Group) Drain(ctx context.Context) error {
	var wg sync.WaitGroup
	services := g.Services()
	errs := make([]error, len(services))
	for i, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Drain(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops every service and frees its memory.
func (g *Group) Close() {
	for _, s := range g.Services() {
		s.Close()
	}
}

// memGate admits loads while their memory fits a budget; one load always runs.
type memGate struct {
	mu      sync.Mutex
	cond    *sync.Cond
	budget  int64
	used    int64
	running int
	waiting int // loads waiting for room (observable by tests)
}

func newMemGate(budget int64) *memGate {
	g := &memGate{budget: budget}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *memGate) acquire(ctx context.Context, n int64) error {
	stop := context.AfterFunc(ctx, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	defer stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.running > 0 && g.used+n > g.budget {
		if err := ctx.Err(); err != nil {
			return err
		}
		g.waiting++
		g.cond.Wait()
		g.waiting--
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	g.used += n
	g.running++
	return nil
}

func (g *memGate) release(n int64) {
	g.mu.Lock()
	g.used -= n
	g.running--
	g.cond.Broadcast()
	g.mu.Unlock()
}

// AvailableMemory is the host's MemAvailable from /proc/meminfo, in bytes (or 8 GiB
// when it cannot be read).
func AvailableMemory() int64 {
	const fallback = 8 << 30
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return fallback
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				return kb << 10
			}
		}
	}
	return fallback
}
