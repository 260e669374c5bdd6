package route

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/breaker"
)

// Options configure a Pool. Zero fields take the defaults.
type Options struct {
	// Breaker are the thresholds of each remote member's circuit breaker.
	Breaker breaker.Config
	// Retries is how many other members of the same model a request may try after a
	// retryable failure (default 2; -1 for none).
	Retries int
	// Fallbacks lists, per model, the models tried in order when every member of the
	// model failed or is unavailable. A caller only falls back to models it may use.
	Fallbacks map[string][]string
	// HealthInterval is the period of the active health checks (default 5s; negative
	// disables them, leaving the passive checks of the breakers).
	HealthInterval time.Duration
	// HealthTimeout bounds one check (default 2s).
	HealthTimeout time.Duration
	// Log receives health transitions.
	Log zerolog.Logger
	// Now is the breakers' clock (nil: time.Now); tests pass a fake one.
	Now func() time.Time
}

// Pool routes requests by model to its members: each model has one or more (the
// model served in this process, remote hxp nodes) and a request goes to the one with
// the fewest requests in flight among the healthy ones whose circuit breaker admits
// it, ties taken in turn; members the health checks took out are a last resort.
//
// A member's error of a retryable kind (infer.Kind.Retryable: overloaded,
// unavailable, no answer, timeout) is retried on another member of the model, then
// on the model's fallbacks in order. A returned generation or result is final:
// nothing reached the client before it, and nothing is retried after it.
//
// Health is passive (a remote member's breaker counts consecutive failures: no
// answer, timeouts and internal errors; busy and not-ready answers and the client's
// own errors do not count) and active (a periodic check of every member takes failing
// ones out of rotation until they pass again). Local members' breakers never open:
// their failures are errors of single requests, and their health is their state.
//
// Models and members may come and go while the pool serves: nodes found by DNS
// (AddRemote, RemoveRemote), models loaded and unloaded in this process (AddLocal,
// RemoveLocal); the fallbacks may be replaced (SetFallbacks). The Service methods are
// safe for concurrent use.
type Pool struct {
	opts  Options
	table atomic.Pointer[table] // replaced, never changed in place (copy on write under mu)
	mu    sync.Mutex            // serializes membership changes

	startOnce, stopOnce sync.Once
	stop                chan struct{}
	done                chan struct{}
}

var _ infer.Service = (*Pool)(nil)

// table is the pool's models and fallbacks at one moment.
type table struct {
	models    map[string]*model
	order     []string
	fallbacks map[string][]string
}

// tab is the current table.
func (p *Pool) tab() *table { return p.table.Load() }

// change replaces the table by a copy that edit changes. p.mu is held.
func (p *Pool) change(edit func(*table)) {
	old := p.tab()
	next := &table{models: maps.Clone(old.models), order: slices.Clone(old.order), fallbacks: old.fallbacks}
	edit(next)
	p.table.Store(next)
}

// model is one model's members.
type model struct {
	// members is replaced, never changed in place (copy on write under Pool.mu), so
	// that requests read it without a lock.
	members atomic.Pointer[[]*member]
	next    atomic.Uint64 // rotates the scan start: ties go round robin
	pinned  bool          // declared (Declare): stays without members
}

// list is the model's members now.
func (r *model) list() []*member {
	if l := r.members.Load(); l != nil {
		return *l
	}
	return nil
}

// member is one upstream of one model.
type member struct {
	svc   infer.Service
	model string
	name  string // "local" or the remote's URL
	check func(ctx context.Context) error
	br    *breaker.Breaker
	local bool

	inflight atomic.Int64
	healthy  atomic.Bool
	served   atomic.Uint64 // attempts that answered
	failed   atomic.Uint64 // attempts that failed
}

// NewPool returns an empty pool; add members with AddLocal and AddRemote, check the
// fallbacks with Validate, then Start the health checks.
func NewPool(opts Options) *Pool {
	if opts.Retries == 0 {
		opts.Retries = 2
	}
	if opts.Retries < 0 {
		opts.Retries = 0
	}
	if opts.HealthInterval == 0 {
		opts.HealthInterval = 5 * time.Second
	}
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = 2 * time.Second
	}
	p := &Pool{opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	p.table.Store(&table{models: map[string]*model{}, fallbacks: opts.Fallbacks})
	return p
}

// AddLocal adds the model served in this process as a member of its own model.
func (p *Pool) AddLocal(l *infer.Local) error {
	return p.add(localMember(l))
}

// localMember is the member of a model served in this process.
func localMember(l *infer.Local) *member {
	return &member{svc: l, model: l.Name(), name: "local", local: true,
		check: func(context.Context) error { return l.Ready() }}
}

// ReplaceLocal puts l in place of the local member of its model in one step (a model
// reloaded with a changed entry): new requests go to l, those already on the old
// member finish there. Without a local member it adds l.
func (p *Pool) ReplaceLocal(l *infer.Local) error { return p.replaceLocal(localMember(l)) }

// replaceLocal is ReplaceLocal for a member.
func (p *Pool) replaceLocal(m *member) error {
	m.br = breaker.New(p.opts.Breaker, p.opts.Now)
	m.healthy.Store(true)
	p.mu.Lock()
	r := p.tab().models[m.model]
	var old []*member
	if r != nil {
		old = r.list()
	}
	i := slices.IndexFunc(old, func(o *member) bool { return o.local })
	if i < 0 {
		p.mu.Unlock()
		return p.add(m)
	}
	defer p.mu.Unlock()
	next := slices.Clone(old)
	next[i] = m
	r.members.Store(&next)
	return nil
}

// AddRemote adds a node as a member of model, which must be one of the node's models.
func (p *Pool) AddRemote(model string, r *Remote) error {
	if !slices.Contains(r.opts.Models, model) {
		return fmt.Errorf("route: remote %s does not list model %q (its models: %v)", r.URL(), model, r.opts.Models)
	}
	return p.add(&member{svc: r, model: model, name: r.URL(),
		check: func(ctx context.Context) error { return r.Check(ctx, model) }})
}

// Declare makes model routable before it has members (its nodes are found by DNS
// later); until then its requests are answered upstream_unavailable.
func (p *Pool) Declare(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.declare(name).pinned = true
}

// declare returns model name, declaring it. p.mu is held.
func (p *Pool) declare(name string) *model {
	r := p.tab().models[name]
	if r == nil {
		r = &model{}
		p.change(func(t *table) {
			t.models[name] = r
			t.order = append(t.order, name)
		})
	}
	return r
}

// RemoveLocal takes the model served in this process out of model name's members:
// requests already on it finish there, new ones go to the other members. A model left
// without members (and not declared) is no longer routed: its requests get
// model_not_found and /v1/models stops listing it. It reports whether there was a
// local member.
func (p *Pool) RemoveLocal(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.tab().models[name]
	if r == nil {
		return false
	}
	old := r.list()
	i := slices.IndexFunc(old, func(m *member) bool { return m.local })
	if i < 0 {
		return false
	}
	next := slices.Delete(slices.Clone(old), i, i+1)
	r.members.Store(&next)
	if len(next) == 0 && !r.pinned {
		p.change(func(t *table) {
			delete(t.models, name)
			t.order = slices.DeleteFunc(t.order, func(n string) bool { return n == name })
		})
	}
	return true
}

// SetFallbacks replaces the fallbacks after checking them as Validate does; on an
// error the old ones stay.
func (p *Pool) SetFallbacks(fbs map[string][]string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.tab().validate(fbs); err != nil {
		return err
	}
	p.change(func(t *table) { t.fallbacks = fbs })
	return nil
}

// add adds a member; it starts healthy. A model not declared yet is declared.
func (p *Pool) add(m *member) error {
	if m.model == "" {
		return fmt.Errorf("route: upstream %s has no model name", m.name)
	}
	m.br = breaker.New(p.opts.Breaker, p.opts.Now)
	m.healthy.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.declare(m.model)
	old := r.list()
	for _, o := range old {
		if o.name == m.name {
			return fmt.Errorf("route: model %q has upstream %s twice", m.model, m.name)
		}
	}
	next := append(slices.Clip(old), m)
	r.members.Store(&next)
	return nil
}

// RemoveRemote takes the node at url out of model's members: requests already on it
// finish there, new ones go to the others. It reports whether the node was a member.
func (p *Pool) RemoveRemote(name, url string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.tab().models[name]
	if r == nil {
		return false
	}
	old := r.list()
	i := slices.IndexFunc(old, func(m *member) bool { return !m.local && m.name == url })
	if i < 0 {
		return false
	}
	next := slices.Delete(slices.Clone(old), i, i+1)
	r.members.Store(&next)
	return true
}

// Validate checks the fallbacks: every model named must be served by the pool and no
// model may fall back to itself.
func (p *Pool) Validate() error { t := p.tab(); return t.validate(t.fallbacks) }

// validate checks fallbacks against the table's models.
func (t *table) validate(fallbacks map[string][]string) error {
	for name, fbs := range fallbacks {
		if t.models[name] == nil {
			return fmt.Errorf("route: fallbacks for %q, which no upstream serves", name)
		}
		for _, fb := range fbs {
			if fb == name {
				return fmt.Errorf("route: model %q falls back to itself", name)
			}
			if t.models[fb] == nil {
				return fmt.Errorf("route: model %q falls back to %q, which no upstream serves", name, fb)
			}
		}
	}
	return nil
}

// Start runs the active health checks in the background until Close.
func (p *Pool) Start() {
	p.startOnce.Do(func() {
		if p.opts.HealthInterval < 0 {
			close(p.done)
			return
		}
		go p.healthLoop()
	})
}

// Close stops the health checks.
func (p *Pool) Close() {
	p.stopOnce.Do(func() { close(p.stop) })
	p.Start() // so that done is closed either way
	<-p.done
}

func (p *Pool) healthLoop() {
	defer close(p.done)
	tick := time.NewTicker(p.opts.HealthInterval)
	defer tick.Stop()
	for {
		p.CheckHealth()
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

// CheckHealth runs one round of active checks, all members at once.
func (p *Pool) CheckHealth() {
	var wg sync.WaitGroup
	t := p.tab()
	for _, name := range t.order {
		for _, m := range t.models[name].list() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), p.opts.HealthTimeout)
				defer cancel()
				err := m.check(ctx)
				if was := m.healthy.Swap(err == nil); was != (err == nil) {
					if err != nil {
						p.opts.Log.Warn().Err(err).Str("model", m.model).Str("upstream", m.name).Msg("upstream failed its health check: out of rotation")
					} else {
						p.opts.Log.Info().Str("model", m.model).Str("upstream", m.name).Msg("upstream healthy again: back in rotation")
					}
				}
			}()
		}
	}
	wg.Wait()
}

// Models implements infer.Service: one entry per model in the order added, from a
// ready member if any, else the first member's, else status "unknown".
func (p *Pool) Models(ctx context.Context) []infer.Model {
	t := p.tab()
	out := make([]infer.Model, 0, len(t.order))
	for _, name := range t.order {
		best, found := infer.Model{ID: name, Status: "unknown"}, false
		for _, m := range t.models[name].list() {
			for _, c := range m.svc.Models(ctx) {
				if c.ID == name && (!found || !best.Ready() && c.Ready()) {
					best, found = c, true
				}
			}
		}
		out = append(out, best)
	}
	return out
}

// Chat implements infer.Service.
func (p *Pool) Chat(ctx context.Context, r *infer.ChatRequest) (*infer.Generation, error) {
	return dispatch(p, ctx, r.Model, func(svc infer.Service, model string) (*infer.Generation, error) {
		req := *r
		req.Model = model
		return svc.Chat(ctx, &req)
	})
}

// Complete implements infer.Service.
func (p *Pool) Complete(ctx context.Context, r *infer.CompletionRequest) (*infer.Generation, error) {
	return dispatch(p, ctx, r.Model, func(svc infer.Service, model string) (*infer.Generation, error) {
		req := *r
		req.Model = model
		return svc.Complete(ctx, &req)
	})
}

// Embed implements infer.Service.
func (p *Pool) Embed(ctx context.Context, r *infer.EmbedRequest) (*infer.Embeddings, error) {
	return dispatch(p, ctx, r.Model, func(svc infer.Service, model string) (*infer.Embeddings, error) {
		req := *r
		req.Model = model
		return svc.Embed(ctx, &req)
	})
}

// Tokenize implements infer.Service.
func (p *Pool) Tokenize(ctx context.Context, r *infer.TokenizeRequest) (*infer.Tokens, error) {
	return dispatch(p, ctx, r.Model, func(svc infer.Service, model string) (*infer.Tokens, error) {
		req := *r
		req.Model = model
		return svc.Tokenize(ctx, &req)
	})
}

// Detokenize implements infer.Service.
func (p *Pool) Detokenize(ctx context.Context, r *infer.DetokenizeRequest) (*infer.Text, error) {
	return dispatch(p, ctx, r.Model, func(svc infer.Service, model string) (*infer.Text, error) {
		req := *r
		req.Model = model
		return svc.Detokenize(ctx, &req)
	})
}

// ApplyTemplate implements infer.Service.
func (p *Pool) ApplyTemplate(ctx context.Context, r *infer.ApplyTemplateRequest) (*infer.RenderedPrompt, error) {
	return dispatch(p, ctx, r.Model, func(svc infer.Service, model string) (*infer.RenderedPrompt, error) {
		req := *r
		req.Model = model
		return svc.ApplyTemplate(ctx, &req)
	})
}

// result is what the Service methods return.
type result interface {
	*infer.Generation | *infer.Embeddings | *infer.Tokens | *infer.Text | *infer.RenderedPrompt
}

// dispatch runs call on members of model, then of its fallbacks, until one returns a
// result or an error that another member would not change. call gets the member and
// the model to ask it for (a fallback's name when falling back).
func dispatch[T result](p *Pool, ctx context.Context, name string, call func(infer.Service, string) (T, error)) (T, error) {
	if name == "" {
		return nil, infer.Invalid("model", "model is required; GET /v1/models lists the models served")
	}
	t := p.tab()
	if t.models[name] == nil {
		return nil, infer.ModelNotFound(name)
	}
	caller := infer.CallerFrom(ctx)
	var last error
	wait := time.Duration(math.MaxInt64)
	for i, target := range append([]string{name}, t.fallbacks[name]...) {
		mod := t.models[target]
		if mod == nil || i > 0 && !caller.AllowsModel(target) {
			continue
		}
		var tried []*member
		for a := 0; a <= p.opts.Retries; a++ {
			if err := ctx.Err(); err != nil {
				return nil, infer.AsError(err, "")
			}
			m, retryIn := mod.pick(tried)
			wait = min(wait, retryIn)
			if m == nil {
				break
			}
			tried = append(tried, m)
			v, err := attempt(m, target, call)
			if err == nil {
				return v, nil
			}
			if !infer.KindOf(err).Retryable() {
				return nil, err
			}
			last = err
		}
	}
	if last != nil {
		return nil, last
	}
	if wait == math.MaxInt64 || wait < time.Second {
		wait = time.Second
	}
	return nil, &infer.Error{Kind: infer.Unavailable, Code: "upstream_unavailable", RetryAfter: wait,
		Message: fmt.Sprintf("no upstream of model %q is available now (circuit breakers open); retry in %s", name, wait.Round(time.Second))}
}

// attempt runs call on m, settles m's breaker on the outcome and counts the request
// in flight until its result is done (a generation's end).
func attempt[T result](m *member, target string, call func(infer.Service, string) (T, error)) (T, error) {
	m.inflight.Add(1)
	v, err := call(m.svc, target)
	if err != nil {
		m.inflight.Add(-1)
		m.settle(infer.KindOf(err))
		return nil, err
	}
	m.br.Success()
	m.served.Add(1)
	switch x := any(v).(type) {
	case *infer.Generation:
		x.Model = target
		x.OnEnd(func(infer.Summary) { m.inflight.Add(-1) })
		return v, nil
	case *infer.Embeddings:
		x.Model = target
	case *infer.Tokens:
		x.Model = target
	case *infer.Text:
		x.Model = target
	}
	m.inflight.Add(-1)
	return v, nil
}

// settle ends a failed attempt's breaker slot: a remote member that gave no answer,
// ran out of time or failed inside counts a failure; an answer (busy, not ready, the
// client's own error) says nothing about its health. Local members never fail their
// breaker.
func (m *member) settle(k infer.Kind) {
	failure := k == infer.UpstreamFailed || k == infer.DeadlineExceeded || k == infer.Internal
	if failure {
		m.failed.Add(1)
	} else {
		m.served.Add(1)
	}
	if failure && !m.local {
		m.br.Failure()
		return
	}
	m.br.Release()
}

// pick returns the member with the fewest requests in flight among those not yet
// tried: healthy ones first, then, as a last resort, ones the health checks took out
// (their check may be stale). A member's breaker must admit the request. When none
// can be had, retryIn is the shortest wait until an open breaker lets probes through.
func (r *model) pick(tried []*member) (*member, time.Duration) {
	members := r.list()
	n := uint64(len(members))
	retryIn := time.Duration(math.MaxInt64)
	var refused []*member
	for _, wantHealthy := range []bool{true, false} {
		for {
			var best *member
			bestN := int64(math.MaxInt64)
			start := r.next.Add(1)
			for i := uint64(0); i < n; i++ {
				m := members[(start+i)%n]
				if slices.Contains(tried, m) || m.healthy.Load() != wantHealthy || slices.Contains(refused, m) {
					continue
				}
				if !m.br.Available() {
					retryIn = min(retryIn, m.br.RetryIn())
					continue
				}
				if in := m.inflight.Load(); in < bestN {
					best, bestN = m, in
				}
			}
			if best == nil {
				break
			}
			if best.br.Allow() {
				return best, 0
			}
			refused = append(refused, best) // lost the half-open probe slot to another request
		}
	}
	return nil, retryIn
}

// UpstreamStats describe one member of one model.
type UpstreamStats struct {
	// Model and Upstream name the member ("local" or the node's URL).
	Model    string `json:"model"`
	Upstream string `json:"upstream"`
	// Healthy is the last active check's verdict.
	Healthy bool `json:"healthy"`
	// Breaker is the circuit breaker's state; Opens counts how often it opened.
	Breaker string `json:"breaker"`
	Opens   int    `json:"breaker_opens"`
	// Inflight counts requests in progress (generations until their end).
	Inflight int64 `json:"inflight"`
	// Served and Failed count attempts that answered and that failed.
	Served uint64 `json:"served"`
	Failed uint64 `json:"failed"`
}

// Stats describes every member, in the order they were added.
func (p *Pool) Stats() []UpstreamStats {
	var out []UpstreamStats
	t := p.tab()
	for _, name := range t.order {
		for _, m := range t.models[name].list() {
			out = append(out, UpstreamStats{Model: name, Upstream: m.name, Healthy: m.healthy.Load(),
				Breaker: m.br.State().String(), Opens: m.br.Opens(), Inflight: m.inflight.Load(),
				Served: m.served.Load(), Failed: m.failed.Load()})
		}
	}
	return out
}
