package rest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/responses"
	"github.com/hxp-ai/hxp/retrieval"
)

// Authenticator checks a presented API key; *tenancy.Tenancy implements it. Its
// errors are infer errors (Unauthenticated, Unavailable); it never logs the key.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (*infer.Caller, error)
}

// Options configure a Server. Zero fields take the defaults.
type Options struct {
	// Log receives access logs and errors.
	Log zerolog.Logger
	// DefaultModel makes the server a model's own listener: requests without a model
	// go to it, requests naming another model are 404. "" is the gateway, where a
	// request must name its model.
	DefaultModel string
	// Auth, when set, requires a valid key on every path but PublicPaths, preflights
	// and the admin API (which checks its own key).
	Auth Authenticator
	// PublicPaths need no key (default DefaultPublicPaths).
	PublicPaths []string
	// CORS, when it has origins, answers browsers' cross-origin checks.
	CORS CORS
	// MaxN is the largest n accepted (default 4).
	MaxN int
	// WriteTimeout bounds each write of a stream (default 10m).
	WriteTimeout time.Duration
	// Routes are extra endpoints (health, metrics, admin); they replace built-in ones.
	Routes []Route
	// Metrics, when set, counts requests and times the service.
	Metrics *Metrics
	// LogPrompts adds the prompt of model requests to the access log (config
	// log.prompts; off by default: prompts are user data).
	LogPrompts bool
	// Responses stores the Responses API's conversations (default: a bounded
	// in-process store of this server only).
	Responses responses.Store
	// Retrieval, when set, serves the files and vector stores API (/v1/files,
	// /v1/vector_stores).
	Retrieval *retrieval.Service
}

// DefaultPublicPaths need no API key.
var DefaultPublicPaths = []string{"/health", "/health/ready", "/metrics"}

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
	if o.Responses == nil {
		o.Responses = responses.NewMemory(defaultStoredResponses, defaultStoredResponseBytes)
	}
}

// Server is the REST transport: the OpenAI-compatible API over an infer.Service. The
// gateway on :8000 serves every model through the router; a model's own listener is
// a Server with a DefaultModel over that model's service. Handlers decode the body
// once into the core's request type, call the service, and render its result; the
// service behind (admission, cache, router, model) never sees HTTP.
type Server struct {
	svc      infer.Service
	opts     Options
	lim      openai.Limits
	known    map[string]bool // the models this server routes (bounded metric labels)
	chain    Chain
	handler  fasthttp.RequestHandler
	draining atomic.Bool
}

// New returns the REST server over svc.
func New(svc infer.Service, opts Options) *Server {
	opts.defaults()
	s := &Server{svc: svc, opts: opts, lim: openai.Limits{MaxN: opts.MaxN}, known: map[string]bool{}}
	for _, m := range svc.Models(context.Background()) {
		s.known[m.ID] = true
	}
	s.build()
	return s
}

// Model endpoints, routed by the request's "model".
const (
	pathChat        = "/v1/chat/completions"
	pathCompletions = "/v1/completions"
	pathEmbeddings  = "/v1/embeddings"
	pathTokenize    = "/tokenize"
	pathDetokenize  = "/detokenize"
	pathApplyTmpl   = "/apply-template"
)

// modelPaths are the endpoints whose requests name a model.
var modelPaths = []string{pathChat, pathCompletions, pathEmbeddings, pathTokenize, pathDetokenize, pathApplyTmpl,
	pathMessages, pathCountTokens, pathResponses}

// build assembles the chain: request id, access log, metrics, recover, CORS, auth,
// then the router.
func (s *Server) build() {
	r := newRouter()
	r.handle("GET", "/v1/models", s.listModels)
	r.handle("GET", "/v1/models/", s.getModel)
	r.handle("GET", "/health", s.health)
	r.handle("POST", pathChat, s.chat)
	r.handle("POST", pathCompletions, s.completions)
	r.handle("POST", pathEmbeddings, s.embeddings)
	r.handle("POST", pathTokenize, s.tokenize)
	r.handle("POST", pathDetokenize, s.detokenize)
	r.handle("POST", pathApplyTmpl, s.applyTemplate)
	r.handle("POST", pathMessages, s.messages)
	r.handle("POST", pathCountTokens, s.countTokens)
	r.handle("POST", pathResponses, s.createResponse)
	r.handle("GET", pathResponseID, s.responseByID)
	r.handle("DELETE", pathResponseID, s.responseByID)
	if s.opts.Retrieval != nil {
		s.retrievalRoutes(r)
	}
	for _, rt := range s.opts.Routes {
		r.handle(rt.Method, rt.Path, rt.Handler)
	}
	s.chain = Chain{RequestID{}, AccessLog{Log: s.opts.Log, Prompts: s.opts.LogPrompts}}
	if s.opts.Metrics != nil {
		s.chain = append(s.chain, s.opts.Metrics.link(s))
	}
	s.chain = append(s.chain, Recover{Log: s.opts.Log})
	if len(s.opts.CORS.Origins) > 0 {
		s.chain = append(s.chain, s.opts.CORS)
	}
	if s.opts.Auth != nil {
		s.chain = append(s.chain, newKeyAuth(s.opts.Auth, s.opts.PublicPaths, s.opts.Log))
	}
	s.handler = s.chain.Then(r.serve)
}

// Handler is the server's fasthttp handler.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handler }

// Chain is the server's middleware chain, in order (without the router).
func (s *Server) Chain() Chain { return s.chain }

// SetDraining makes /health report that the server is shutting down (503).
func (s *Server) SetDraining() { s.draining.Store(true) }

// context is the service's context for a request: its caller and id, cancelled by
// the returned function (when the client leaves or the response is complete).
func (s *Server) context(ctx *fasthttp.RequestCtx) (context.Context, context.CancelFunc) {
	c := context.Background()
	if info := infoOf(ctx); info != nil {
		c = infer.WithRequestID(c, info.ledgerID)
		info.serviceStart = time.Now()
	}
	if caller := callerOf(ctx); caller != nil {
		c = infer.WithCaller(c, caller)
	}
	return context.WithCancel(c)
}

// resolve applies the listener's default model to a request's model and records it.
func (s *Server) resolve(ctx *fasthttp.RequestCtx, model string) (string, error) {
	switch {
	case model == "" && s.opts.DefaultModel == "":
		return "", infer.Invalid("model", "model is required; GET /v1/models lists the models served")
	case model == "":
		model = s.opts.DefaultModel
	case s.opts.DefaultModel != "" && model != s.opts.DefaultModel:
		e := infer.ModelNotFound(model)
		e.Message = fmt.Sprintf("The model %q is not served on this listener, which serves %q; use the gateway to reach other models.", model, s.opts.DefaultModel)
		return "", e
	}
	if info := infoOf(ctx); info != nil {
		info.Model = model
	}
	return model, nil
}

// modelLabel bounds a request's model for labels: a model this server routes, or
// "unknown".
func (s *Server) modelLabel(model string) string {
	if model == "" {
		model = s.opts.DefaultModel
	}
	if s.known[model] {
		return model
	}
	return unknownModel
}

func (s *Server) chat(ctx *fasthttp.RequestCtx) {
	in, err := openai.DecodeChat(ctx.PostBody(), s.lim)
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.generate(ctx, &in.Model, openai.KindChat, &in.GenParams, in.IncludeUsage, func(c context.Context) (*infer.Generation, error) {
		return s.svc.Chat(c, &in.ChatRequest)
	})
}

func (s *Server) completions(ctx *fasthttp.RequestCtx) {
	in, err := openai.DecodeCompletion(ctx.PostBody(), s.lim)
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.generate(ctx, &in.Model, openai.KindCompletion, &in.GenParams, in.IncludeUsage, func(c context.Context) (*infer.Generation, error) {
		return s.svc.Complete(c, &in.CompletionRequest)
	})
}

// generate serves a decoded chat or completion request: it resolves the request's
// model (in place), starts the generation with the service's context, and answers it
// as one JSON response or a stream of kind's chunks.
func (s *Server) generate(ctx *fasthttp.RequestCtx, model *string, kind openai.Kind, p *infer.GenParams, includeUsage bool,
	start func(context.Context) (*infer.Generation, error)) {
	m, err := s.resolve(ctx, *model)
	if err != nil {
		writeError(ctx, err)
		return
	}
	*model = m
	c, cancel := s.context(ctx)
	g, err := start(c)
	if err != nil {
		cancel()
		writeError(ctx, err)
		return
	}
	s.respond(ctx, g, cancel, m, openai.NewStream(kind, g.Served, g.Choices, includeUsage, p.Logprobs), p.Stream, includeUsage)
}

func (s *Server) embeddings(ctx *fasthttp.RequestCtx) {
	in, err := openai.DecodeEmbeddings(ctx.PostBody())
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.answer(ctx, &in.Model, func(c context.Context) (*infer.Served, any, error) {
		e, err := s.svc.Embed(c, &in.EmbedRequest)
		if err != nil {
			return nil, nil, err
		}
		if info := infoOf(ctx); info != nil {
			info.PromptTokens = e.Usage.PromptTokens
		}
		return &e.Served, openai.EmbeddingsResponse(e, in.Base64), nil
	})
}

func (s *Server) tokenize(ctx *fasthttp.RequestCtx) {
	in, err := openai.DecodeTokenize(ctx.PostBody())
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.answer(ctx, &in.Model, func(c context.Context) (*infer.Served, any, error) {
		t, err := s.svc.Tokenize(c, in)
		if err != nil {
			return nil, nil, err
		}
		return &t.Served, openai.TokenizeResponseOf(t), nil
	})
}

func (s *Server) detokenize(ctx *fasthttp.RequestCtx) {
	in, err := openai.DecodeDetokenize(ctx.PostBody())
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.answer(ctx, &in.Model, func(c context.Context) (*infer.Served, any, error) {
		t, err := s.svc.Detokenize(c, in)
		if err != nil {
			return nil, nil, err
		}
		return &t.Served, openai.DetokenizeResponse{Prompt: t.Text}, nil
	})
}

func (s *Server) applyTemplate(ctx *fasthttp.RequestCtx) {
	in, err := openai.DecodeApplyTemplate(ctx.PostBody())
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.answer(ctx, &in.Model, func(c context.Context) (*infer.Served, any, error) {
		p, err := s.svc.ApplyTemplate(c, in)
		if err != nil {
			return nil, nil, err
		}
		return &p.Served, openai.ApplyTemplateResponseOf(p), nil
	})
}

// answer serves a decoded request whose answer is one JSON value: it resolves the
// request's model (in place), runs call with the service's context, and sends the
// rendered result with the headers of how it was served, or the error.
func (s *Server) answer(ctx *fasthttp.RequestCtx, model *string, call func(context.Context) (*infer.Served, any, error)) {
	m, err := s.resolve(ctx, *model)
	if err != nil {
		writeError(ctx, err)
		return
	}
	*model = m
	c, cancel := s.context(ctx)
	defer cancel()
	sv, out, err := call(c)
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.served(ctx, sv, m)
	writeJSON(ctx, fasthttp.StatusOK, out)
}

// Response headers of how a request was served.
const (
	// FallbackHeader names the model that answered when it is a fallback of the one
	// asked for.
	FallbackHeader = "X-Hxp-Fallback"
	// CacheHeader tells whether a cacheable response came from the cache.
	CacheHeader = "X-Hxp-Cache"
)

// served sets the headers of how a request was served: the fallback model, the cache
// result and the caller's rate-limit state; asked is the model requested.
func (s *Server) served(ctx *fasthttp.RequestCtx, sv *infer.Served, asked string) {
	h := &ctx.Response.Header
	if sv.Model != "" && sv.Model != asked {
		h.Set(FallbackHeader, sv.Model)
		if info := infoOf(ctx); info != nil {
			info.Model = sv.Model
		}
	}
	switch sv.Cache {
	case infer.CacheHit:
		h.Set(CacheHeader, "hit")
	case infer.CacheMiss:
		h.Set(CacheHeader, "miss")
	}
	if sv.Quota != nil {
		setQuotaHeaders(h, sv.Quota)
	}
}

func (s *Server) listModels(ctx *fasthttp.RequestCtx) {
	c, cancel := s.context(ctx)
	defer cancel()
	writeJSON(ctx, fasthttp.StatusOK, openai.Cards(s.models(c)))
}

// models lists the served models, sorted by id.
func (s *Server) models(c context.Context) []infer.Model {
	ms := s.svc.Models(c)
	slices.SortFunc(ms, func(a, b infer.Model) int { return strings.Compare(a.ID, b.ID) })
	return ms
}

func (s *Server) getModel(ctx *fasthttp.RequestCtx) {
	id := strings.TrimPrefix(string(ctx.Path()), "/v1/models/")
	c, cancel := s.context(ctx)
	defer cancel()
	for _, m := range s.models(c) {
		if m.ID == id {
			writeJSON(ctx, fasthttp.StatusOK, openai.Card(m))
			return
		}
	}
	writeError(ctx, infer.ModelNotFound(id))
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
// once it is shutting down.
func (s *Server) health(ctx *fasthttp.RequestCtx) {
	resp := HealthResponse{Status: "ok", Models: []ModelHealth{}}
	for _, m := range s.models(context.Background()) {
		resp.Models = append(resp.Models, ModelHealth{ID: m.ID, Status: m.Status})
		switch m.Status {
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
	if s.draining.Load() {
		resp.Status, status = "shutting_down", fasthttp.StatusServiceUnavailable
	}
	writeJSON(ctx, status, resp)
}
