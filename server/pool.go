package server

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// PoolOptions configure a Pool. Zero fields take the defaults.
type PoolOptions struct {
	// Breaker are the thresholds of each upstream's circuit breaker.
	Breaker BreakerConfig
	// Retries is how many other upstreams of the same model a request may try after
	// a failed attempt (default 2; -1 for none).
	Retries int
	// Fallbacks lists, per model, the models tried in order when every upstream of
	// the model failed or is unavailable. A tenant only falls back to models it may use.
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

// Pool is the gateway's router over upstreams: each model has one or more upstreams
// (the local model service, remote hxp nodes) and a request goes to the one with the
// fewest requests in flight among the healthy ones whose circuit breaker is closed
// (or half-open with a probe slot free). A failed attempt (connection error, timeout,
// 5xx, or 429 from a busy upstream) is retried on another upstream as long as nothing
// was sent to the client, which for a stream means before its first byte; when every
// upstream of the model failed, the model's fallbacks are tried in order. Health is
// passive (each upstream's breaker counts consecutive failures: no answer, timeouts
// and 5xx other than 503, which means loading or draining) and active (a
// periodic check of every upstream takes failing ones out of rotation until they
// pass again). Only remote upstreams' breakers open: a local service's 5xx is the
// error of one request, and its health is its state. Pool implements Upstream.
type Pool struct {
	opts   PoolOptions
	routes map[string]*route
	order  []string

	startOnce, stopOnce sync.Once
	stop                chan struct{}
	done                chan struct{}
}

// route is one model's upstreams.
type route struct {
	model   string
	members []*member
	next    atomic.Uint64 // rotates the scan start: ties go round robin
}

// member is one upstream of one model.
type member struct {
	up      Upstream
	model   string
	name    string // "local" or the remote's URL
	check   func(ctx context.Context) error
	breaker *Breaker
	// local members' failures are errors of single requests, not of a peer: their
	// breaker never opens (their health is their service's state, checked directly).
	local bool

	inflight atomic.Int64
	healthy  atomic.Bool
	served   atomic.Uint64 // attempts that answered
	failed   atomic.Uint64 // attempts that failed
}

// NewPool returns an empty pool; add upstreams with Add, then Start the health checks.
func NewPool(opts PoolOptions) *Pool {
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
	return &Pool{opts: opts, routes: map[string]*route{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// Add makes up an upstream of model. A *Local serves its own model; a *Remote any of
// its models. Upstreams start healthy.
func (p *Pool) Add(model string, up Upstream) error {
	m := &member{up: up, model: model, breaker: NewBreaker(p.opts.Breaker, p.opts.Now)}
	switch u := up.(type) {
	case *Local:
		if u.b.Name() != model {
			return fmt.Errorf("server: local upstream serves %q, not %q", u.b.Name(), model)
		}
		m.name, m.local = "local", true
		m.check = func(context.Context) error { return u.b.Ready() }
	case *Remote:
		m.name = u.URL()
		m.check = func(ctx context.Context) error { return u.Check(ctx, model) }
	default:
		m.name = fmt.Sprintf("%T", up)
	}
	m.healthy.Store(true)
	r := p.routes[model]
	if r == nil {
		r = &route{model: model}
		p.routes[model] = r
		p.order = append(p.order, model)
	}
	for _, o := range r.members {
		if o.name == m.name {
			return fmt.Errorf("server: model %q has upstream %s twice", model, m.name)
		}
	}
	r.members = append(r.members, m)
	return nil
}

// Validate checks the fallbacks: every model named must be served by the pool and no
// model may fall back to itself.
func (p *Pool) Validate() error {
	for model, fbs := range p.opts.Fallbacks {
		if p.routes[model] == nil {
			return fmt.Errorf("server: fallbacks for %q, which no upstream serves", model)
		}
		for _, fb := range fbs {
			if fb == model {
				return fmt.Errorf("server: model %q falls back to itself", model)
			}
			if p.routes[fb] == nil {
				return fmt.Errorf("server: model %q falls back to %q, which no upstream serves", model, fb)
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

// CheckHealth runs one round of active checks, all upstreams at once.
func (p *Pool) CheckHealth() {
	var wg sync.WaitGroup
	for _, model := range p.order {
		for _, m := range p.routes[model].members {
			if m.check == nil {
				continue
			}
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

// Models implements Upstream: one card per model, from a ready upstream if any.
func (p *Pool) Models() []ModelCard {
	out := make([]ModelCard, 0, len(p.order))
	for _, model := range p.order {
		var best ModelCard
		found := false
		for _, m := range p.routes[model].members {
			for _, c := range m.up.Models() {
				if c.ID != model {
					continue
				}
				if !found || best.Status != "ready" && c.Status == "ready" {
					best, found = c, true
				}
			}
		}
		if !found {
			best = ModelCard{ID: model, Object: "model", OwnedBy: "hxp", Status: "unknown"}
		}
		out = append(out, best)
	}
	return out
}

// FallbackHeader names the model that answered when it is a fallback of the one asked for.
const FallbackHeader = "X-Hxp-Fallback"

// attempt outcomes.
const (
	outcomeOK     = iota // answered (any status below 500 but 429), or a stream began
	outcomeBusy          // 429 or 503: retry elsewhere, the upstream itself answered
	outcomeFailed        // another 5xx, or no answer (502, 504)
)

// Serve implements Upstream.
func (p *Pool) Serve(ctx *fasthttp.RequestCtx, op Op, model string) {
	info := infoOf(ctx)
	t := TenantOf(ctx)
	attempted := false
	var wait time.Duration = math.MaxInt64
	models := append([]string{model}, p.opts.Fallbacks[model]...)
	for i, target := range models {
		r := p.routes[target]
		if r == nil || i > 0 && !t.AllowsModel(target) {
			continue
		}
		var tried []*member
		for a := 0; a <= p.opts.Retries; a++ {
			m, retryIn := r.pick(tried)
			wait = min(wait, retryIn)
			if m == nil {
				break
			}
			tried = append(tried, m)
			if attempted {
				clearAttempt(ctx, info)
			}
			attempted = true
			if info != nil {
				info.Model = target
			}
			switch p.try(ctx, m, op, target, info) {
			case outcomeOK:
				if i > 0 {
					ctx.Response.Header.Set(FallbackHeader, target)
				}
				return
			case outcomeBusy, outcomeFailed:
			}
		}
	}
	if !attempted {
		if wait == math.MaxInt64 || wait <= 0 {
			wait = time.Second
		}
		writeError(ctx, &APIError{Status: fasthttp.StatusServiceUnavailable, Type: typeUnavailable, Code: "upstream_unavailable",
			Message:    fmt.Sprintf("no upstream of model %q is available now (circuit breakers open)", model),
			RetryAfter: wait}, "")
	}
	// Otherwise the last failed attempt's answer stands.
}

// try runs one attempt on m and settles its breaker.
func (p *Pool) try(ctx *fasthttp.RequestCtx, m *member, op Op, model string, info *RequestInfo) int {
	m.inflight.Add(1)
	m.up.Serve(ctx, op, model)
	if ctx.Response.IsBodyStream() && info != nil && info.Streaming {
		info.OnFinish(func(*RequestInfo) { m.inflight.Add(-1) })
	} else {
		m.inflight.Add(-1)
	}
	status := ctx.Response.StatusCode()
	switch {
	case ctx.Response.IsBodyStream():
		m.breaker.Success()
	case status == fasthttp.StatusTooManyRequests, status == fasthttp.StatusServiceUnavailable:
		// Busy, or not ready (loading, shutting down): try elsewhere, but the upstream
		// answered, so its breaker does not count it; the health checks see "not ready".
		m.breaker.Release()
		m.served.Add(1)
		return outcomeBusy
	case status >= 500:
		if m.local {
			m.breaker.Release()
		} else {
			m.breaker.Failure()
		}
		m.failed.Add(1)
		return outcomeFailed
	default:
		m.breaker.Success()
	}
	m.served.Add(1)
	return outcomeOK
}

// clearAttempt removes a failed attempt's answer before the next attempt.
func clearAttempt(ctx *fasthttp.RequestCtx, info *RequestInfo) {
	ctx.Response.ResetBody()
	ctx.Response.SetStatusCode(fasthttp.StatusOK)
	ctx.Response.Header.Del("Retry-After")
	if info != nil {
		info.ErrType, info.ErrCode = "", ""
		info.PromptTokens, info.CompletionTokens, info.CachedTokens = 0, 0, 0
	}
}

// pick returns the member with the fewest requests in flight among those not yet
// tried: healthy ones first, then, as a last resort, ones the health checks took out
// (their check may be stale). A member's breaker must admit the request. When none
// can be had, retryIn is the shortest wait until an open breaker lets probes through.
func (r *route) pick(tried []*member) (*member, time.Duration) {
	n := uint64(len(r.members))
	retryIn := time.Duration(math.MaxInt64)
	skip := func(m *member) bool {
		for _, t := range tried {
			if t == m {
				return true
			}
		}
		return false
	}
	var refused []*member
	for _, wantHealthy := range []bool{true, false} {
		for {
			var best *member
			bestN := int64(math.MaxInt64)
			start := r.next.Add(1)
			for i := uint64(0); i < n; i++ {
				m := r.members[(start+i)%n]
				if skip(m) || m.healthy.Load() != wantHealthy || contains(refused, m) {
					continue
				}
				if !m.breaker.Available() {
					retryIn = min(retryIn, m.breaker.RetryIn())
					continue
				}
				if in := m.inflight.Load(); in < bestN {
					best, bestN = m, in
				}
			}
			if best == nil {
				break
			}
			if best.breaker.Allow() {
				return best, 0
			}
			refused = append(refused, best) // lost the half-open probe slot to another request
		}
	}
	return nil, retryIn
}

func contains(ms []*member, m *member) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// UpstreamStats describe one upstream of one model.
type UpstreamStats struct {
	// Model and Upstream name the member ("local" or the node's URL).
	Model    string `json:"model"`
	Upstream string `json:"upstream"`
	// Healthy is the last active check's verdict.
	Healthy bool `json:"healthy"`
	// Breaker is the circuit breaker's state; Opens counts how often it opened.
	Breaker string `json:"breaker"`
	Opens   int    `json:"breaker_opens"`
	// Inflight counts requests in progress (streams until their last byte).
	Inflight int64 `json:"inflight"`
	// Served and Failed count attempts that answered and that failed.
	Served uint64 `json:"served"`
	Failed uint64 `json:"failed"`
}

// Stats describes every upstream, in the order they were added.
func (p *Pool) Stats() []UpstreamStats {
	var out []UpstreamStats
	for _, model := range p.order {
		for _, m := range p.routes[model].members {
			out = append(out, UpstreamStats{Model: model, Upstream: m.name, Healthy: m.healthy.Load(),
				Breaker: m.breaker.State().String(), Opens: m.breaker.Opens(), Inflight: m.inflight.Load(),
				Served: m.served.Load(), Failed: m.failed.Load()})
		}
	}
	return out
}
