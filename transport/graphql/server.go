// Package graphql is the GraphQL transport: the schema of schema.graphql (models,
// chat completions, completions, embeddings, and streamed chat completions as a
// subscription) over an infer.Service, served at /graphql on the gateway's address.
//
// Queries and mutations arrive as POST application/json; subscriptions over a
// WebSocket on the same path with the graphql-transport-ws protocol. gqlgen's
// executor (generated into package generated) runs the operations behind this small
// transport of our own on fasthttp and github.com/fasthttp/websocket; gqlgen's own
// transports are written for net/http.
//
// It is a thin front end like transport/rest and transport/grpc: inputs bind to the
// OpenAI wire request types and are validated by package openai, results are
// rendered by package openai, the service behind (admission, cache, router, model) is
// called with the caller and request id in the context, and errors map from the
// core's kind to extensions.code in one table (CodeOf). The key is an
// "Authorization: Bearer KEY" header (POST) or the connection_init payload
// {"authorization": "Bearer KEY"} (WebSocket), parsed as every transport parses it
// (internal/bearer). A subscription that completes or whose socket closes closes its
// generation, which frees the slot within one decode step.
package graphql

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/bearer"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/transport/graphql/generated"
	"github.com/hxp-ai/hxp/transport/rest"
)

// Path is where the GraphQL API is served.
const Path = "/graphql"

// Authenticator checks a presented API key; *tenancy.Tenancy implements it. Its
// errors are infer errors (Unauthenticated, Unavailable); it never logs the key.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (*infer.Caller, error)
}

// Options configure a Server. Zero fields take the defaults.
type Options struct {
	// Log receives errors (panics, failed writes); access logs come from the REST
	// chain the handler is mounted on.
	Log zerolog.Logger
	// Auth, when set, requires a valid key on every operation.
	Auth Authenticator
	// MaxN is the largest n accepted (default 4), as REST's.
	MaxN int
	// MaxDepth bounds how deeply an operation's selections nest (default 10;
	// introspection fields are not counted).
	MaxDepth int
	// MaxComplexity bounds an operation's complexity, one per selected field
	// (default 500).
	MaxComplexity int
	// Introspection answers __schema and __type queries.
	Introspection bool
	// InitTimeout is how long a WebSocket may wait before its connection_init
	// (default 10s).
	InitTimeout time.Duration
	// WriteTimeout bounds each WebSocket write (default 10m, as REST's stream writes).
	WriteTimeout time.Duration
}

// Defaults of Options.
const (
	DefaultMaxDepth      = 10
	DefaultMaxComplexity = 500
	DefaultInitTimeout   = 10 * time.Second
	defaultWriteTimeout  = 10 * time.Minute
)

func (o *Options) defaults() {
	if o.MaxN == 0 {
		o.MaxN = 4
	}
	if o.MaxDepth == 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.MaxComplexity == 0 {
		o.MaxComplexity = DefaultMaxComplexity
	}
	if o.InitTimeout == 0 {
		o.InitTimeout = DefaultInitTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
}

// Server is the GraphQL transport over one infer.Service.
type Server struct {
	svc  infer.Service
	opts Options
	exec *executor.Executor
}

// New returns the GraphQL server over svc.
func New(svc infer.Service, opts Options) *Server {
	opts.defaults()
	s := &Server{svc: svc, opts: opts}
	r := &resolver{svc: svc, lim: openai.Limits{MaxN: opts.MaxN}}
	s.exec = executor.New(generated.NewExecutableSchema(generated.Config{Resolvers: r}))
	if opts.Introspection {
		s.exec.Use(extension.Introspection{})
	}
	s.exec.Use(depthLimit(opts.MaxDepth))
	s.exec.Use(extension.FixedComplexityLimit(opts.MaxComplexity))
	s.exec.SetErrorPresenter(presentError)
	s.exec.SetRecoverFunc(func(ctx context.Context, p any) error {
		s.opts.Log.Error().Str("request_id", infer.RequestIDFrom(ctx)).Str("panic", fmt.Sprint(p)).Msg("panic serving a GraphQL operation")
		return &infer.Error{Kind: infer.Internal, Message: "internal error"}
	})
	return s
}

// Routes are the REST routes that mount the API on a rest.Server (rest.Options.Routes):
// POST for queries and mutations, GET for the WebSocket. The REST chain's key check
// must leave Path to this server (rest.Options.PublicPaths), which checks keys itself
// so that a WebSocket can present its key in connection_init.
func (s *Server) Routes() []rest.Route {
	return []rest.Route{{Method: fasthttp.MethodPost, Path: Path, Handler: s.post},
		{Method: fasthttp.MethodGet, Path: Path, Handler: s.upgrade}}
}

// params is the body of a GraphQL request (POST body, WebSocket subscribe payload).
type params struct {
	Query         string         `json:"query"`
	OperationName string         `json:"operationName"`
	Variables     map[string]any `json:"variables"`
	Extensions    map[string]any `json:"extensions"`
}

// decodeParams reads a request's JSON, numbers kept as written (json.Number).
func decodeParams(b []byte) (*graphql.RawParams, error) {
	var p params
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("the body is not a GraphQL request ({\"query\": ..., \"variables\": {...}}): %w", err)
	}
	if p.Query == "" {
		return nil, fmt.Errorf("query is required")
	}
	return &graphql.RawParams{Query: p.Query, OperationName: p.OperationName, Variables: p.Variables, Extensions: p.Extensions}, nil
}

// errMissingKey is the answer to a request without a well-formed bearer token.
var errMissingKey = &infer.Error{Kind: infer.Unauthenticated, Code: "invalid_api_key",
	Message: "missing or malformed API key; send it as \"Authorization: Bearer KEY\" (WebSocket: connection_init payload {\"authorization\": \"Bearer KEY\"})"}

// authenticate checks the Authorization values presented (none when auth is off).
func (s *Server) authenticate(values []string) (*infer.Caller, error) {
	if s.opts.Auth == nil {
		return nil, nil
	}
	secret, ok := bearer.Token(values)
	if !ok {
		return nil, errMissingKey
	}
	return s.opts.Auth.Authenticate(context.Background(), secret)
}

// baseContext is an operation's context: its caller, request id (the REST chain's,
// with a random suffix for the ledger when the client chose it, as REST does) and,
// when record is set, the chain's access record.
func baseContext(ctx *fasthttp.RequestCtx, caller *infer.Caller, record bool) context.Context {
	c := context.Background()
	id := openai.NewID()
	info := rest.InfoOf(ctx)
	if info != nil {
		id = info.ID
		if string(ctx.Request.Header.Peek("X-Request-Id")) == id {
			id += "." + openai.NewID()[:12]
		}
		if record {
			c = context.WithValue(c, infoKey{}, info)
		}
	}
	c = infer.WithRequestID(c, id)
	if caller != nil {
		c = infer.WithCaller(c, caller)
	}
	return graphql.StartOperationTrace(c)
}

type infoKey struct{}

// recordModel and recordUsage fill the REST chain's access record (the access log's
// model and token counts) of the operation's request.
func recordModel(ctx context.Context, model string) {
	if info, ok := ctx.Value(infoKey{}).(*rest.RequestInfo); ok {
		info.Model = model
	}
}

func recordUsage(ctx context.Context, s infer.Summary) {
	if info, ok := ctx.Value(infoKey{}).(*rest.RequestInfo); ok {
		info.PromptTokens, info.CompletionTokens, info.CachedTokens = s.Usage.PromptTokens, s.Usage.CompletionTokens, s.Usage.CachedTokens
		info.TTFT = s.TTFT
		if s.Err == nil {
			info.Finish = s.Finish.String()
		}
	}
}
