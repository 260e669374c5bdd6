package server

import (
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// Op is a model endpoint.
type Op int

// Model endpoints, routed by the request's "model".
const (
	OpChat        Op = iota // POST /v1/chat/completions
	OpCompletions           // POST /v1/completions
	OpEmbeddings            // POST /v1/embeddings
	OpTokenize              // POST /tokenize
	OpDetokenize            // POST /detokenize
)

var opPaths = map[Op]string{
	OpChat: "/v1/chat/completions", OpCompletions: "/v1/completions", OpEmbeddings: "/v1/embeddings",
	OpTokenize: "/tokenize", OpDetokenize: "/detokenize",
}

func (o Op) String() string { return opPaths[o] }

// Upstream serves requests the gateway routed to it by model. A local model service
// (Local) and, later, a remote hxp node look the same to the gateway.
type Upstream interface {
	// Models lists the models the upstream serves, for routing and /v1/models.
	Models() []ModelCard
	// Serve answers a request for model (already read, body included) on ctx. The
	// request's path and method are those the client sent.
	Serve(ctx *fasthttp.RequestCtx, op Op, model string)
}

// Options configure a gateway or a model listener.
type Options struct {
	// Log receives access logs and errors.
	Log zerolog.Logger
	// APIKeys enables bearer-token auth when not empty.
	APIKeys []string
	// PublicPaths need no key (default DefaultPublicPaths).
	PublicPaths []string
	// MaxN is the largest n accepted (default 4).
	MaxN int
	// WriteTimeout bounds each write of a stream (default 10m).
	WriteTimeout time.Duration
	// Middleware are extra links run after auth and before routing, in order (rate
	// limits, response cache).
	Middleware []Middleware
	// Routes are extra endpoints (health, metrics); they replace built-in ones.
	Routes []Route
	// Metrics, when set, counts requests (a link right after the access log) and
	// times upstreams; NewApp sets it (see observe.go).
	Metrics *Metrics
	// Tenancy, when set, adds keys, limits, the ledger, the response cache and remote
	// upstreams (NewApp only; see tenancy.go).
	Tenancy *Tenancy
	// LogPrompts adds the prompt of model requests to the access log (config
	// log.prompts; off by default: prompts are user data).
	LogPrompts bool
}

func (o *Options) defaults() {
	if o.MaxN == 0 {
		o.MaxN = 4
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 10 * time.Minute
	}
	if o.PublicPaths == nil {
		o.PublicPaths = DefaultPublicPaths
	}
}

// Gateway routes the OpenAI API by the request's model to upstreams. The gateway on
// :8000 has every model; a model's own listener is a Gateway with one upstream that
// also accepts requests without a model.
type Gateway struct {
	opts      Options
	upstreams []Upstream
	routes    map[string]Upstream
	single    string // the only model of a model listener ("" on the gateway)
	chain     Chain
	handler   fasthttp.RequestHandler
	draining  atomic.Bool
}

// NewGateway builds a gateway over upstreams. Two upstreams serving the same model
// are an error.
func NewGateway(opts Options, upstreams ...Upstream) (*Gateway, error) {
	opts.defaults()
	g := &Gateway{opts: opts, upstreams: upstreams, routes: map[string]Upstream{}}
	for _, u := range upstreams {
		for _, c := range u.Models() {
			if _, dup := g.routes[c.ID]; dup {
				return nil, fmt.Errorf("server: model %q is served by two upstreams", c.ID)
			}
			g.routes[c.ID] = u
		}
	}
	g.build()
	return g, nil
}

// NewModelListener serves one model: requests naming another model are 404, and
// requests without a model go to it.
func NewModelListener(b Backend, opts Options) *Gateway {
	opts.defaults()
	up := NewLocal(b, opts)
	g := &Gateway{opts: opts, upstreams: []Upstream{up}, routes: map[string]Upstream{b.Name(): up}, single: b.Name()}
	g.build()
	return g
}

// build assembles the chain: request id, access log, recover, auth, the extra
// links, then the router.
func (g *Gateway) build() {
	r := newRouter()
	r.handle("GET", "/v1/models", g.listModels)
	r.handle("GET", "/v1/models/", g.getModel)
	r.handle("GET", "/health", g.health)
	for op, path := range opPaths {
		r.handle("POST", path, g.routeModel(op))
	}
	for _, rt := range g.opts.Routes {
		r.handle(rt.Method, rt.Path, rt.Handler)
	}
	g.chain = Chain{RequestID{}, AccessLog{Log: g.opts.Log, Prompts: g.opts.LogPrompts}}
	if g.opts.Metrics != nil {
		g.chain = append(g.chain, g.opts.Metrics.link(g))
	}
	g.chain = append(g.chain, Recover{Log: g.opts.Log}, NewAuth(g.opts.APIKeys, g.opts.PublicPaths))
	g.chain = append(g.chain, g.opts.Middleware...)
	g.handler = g.chain.Then(r.serve)
}

// Handler is the gateway's fasthttp handler.
func (g *Gateway) Handler() fasthttp.RequestHandler { return g.handler }

// Chain is the gateway's middleware chain, in order (without the router).
func (g *Gateway) Chain() Chain { return g.chain }

// SetDraining makes /health report that the server is shutting down (503).
func (g *Gateway) SetDraining() { g.draining.Store(true) }

// routeModel reads the request's model and hands the request to its upstream.
func (g *Gateway) routeModel(op Op) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		model, err := peekModel(ctx.PostBody())
		if err != nil {
			writeError(ctx, err, "")
			return
		}
		if model == "" {
			if g.single == "" {
				writeError(ctx, badRequest("model", "model is required; GET /v1/models lists the models served"), "")
				return
			}
			model = g.single
		}
		if info := infoOf(ctx); info != nil {
			info.Model = model
		}
		up, ok := g.routes[model]
		if !ok {
			ae := modelNotFound(model)
			if g.single != "" {
				ae.Message = fmt.Sprintf("The model %q is not served on this listener, which serves %q; use the gateway to reach other models.", model, g.single)
			}
			writeError(ctx, ae, "")
			return
		}
		g.serveUpstream(ctx, up, op, model)
	}
}

// cards lists every upstream's models, sorted by id.
func (g *Gateway) cards() []ModelCard {
	var out []ModelCard
	for _, u := range g.upstreams {
		out = append(out, u.Models()...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (g *Gateway) listModels(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, fasthttp.StatusOK, ModelList{Object: "list", Data: g.cards()})
}

func (g *Gateway) getModel(ctx *fasthttp.RequestCtx) {
	id := strings.TrimPrefix(string(ctx.Path()), "/v1/models/")
	for _, c := range g.cards() {
		if c.ID == id {
			writeJSON(ctx, fasthttp.StatusOK, c)
			return
		}
	}
	writeError(ctx, modelNotFound(id), "")
}

// HealthResponse is the body of GET /health.
type HealthResponse struct {
	// Status is ok (every model ready), loading, degraded (some model failed or
	// stopped) or shutting_down.
	Status string        `json:"status"`
	Models []ModelHealth `json:"models"`
}

// ModelHealth is one model's state in /health.
type ModelHealth struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// health answers 200 while the process serves (even while models load) and 503
// once it is shutting down. The health package adds /health/ready and details.
func (g *Gateway) health(ctx *fasthttp.RequestCtx) {
	resp := HealthResponse{Status: "ok", Models: []ModelHealth{}}
	for _, c := range g.cards() {
		resp.Models = append(resp.Models, ModelHealth{ID: c.ID, Status: c.Status})
		switch c.Status {
		case "ready":
		case "new", "loading":
			if resp.Status == "ok" {
				resp.Status = "loading"
			}
		default:
			resp.Status = "degraded"
		}
	}
	status := fasthttp.StatusOK
	if g.draining.Load() {
		resp.Status, status = "shutting_down", fasthttp.StatusServiceUnavailable
	}
	writeJSON(ctx, status, resp)
}
