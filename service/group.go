package service

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
)

// Group is the set of configured model services of one server.
type Group struct {
	services []*Service
	byName   map[string]*Service
	log      zerolog.Logger
}

// NewGroup creates one (unloaded) service per config entry.
func NewGroup(models []config.Model, log zerolog.Logger, opts Options) *Group {
	g := &Group{byName: map[string]*Service{}, log: log}
	for _, m := range models {
		s := New(m, log, opts)
		g.services = append(g.services, s)
		g.byName[m.Name] = s
	}
	return g
}

// Services returns the services in config order.
func (g *Group) Services() []*Service { return append([]*Service(nil), g.services...) }

// Get returns the service of a model, or nil.
func (g *Group) Get(name string) *Service { return g.byName[name] }

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
	errs := make([]error, len(g.services))
	for i, s := range g.services {
		need := s.cfg.MemoryLimitBytes()
		if need <= 0 {
			need = modelFileSize(s.cfg.Path)
		}
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
	errs := make([]error, len(g.services))
	for i, s := range g.services {
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
	for _, s := range g.services {
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
