// Package grpc is the gRPC transport: the hxp.v1.Inference service (see
// proto/hxp/v1/inference.proto) over an infer.Service, with the standard
// grpc.health.v1.Health service and server reflection beside it.
//
// It is a thin front end like transport/rest: requests are mapped to the OpenAI wire
// requests and validated by package openai, the service behind (admission, cache,
// router, model) is called with the caller and request id in the context, events are
// sent as stream messages, and errors map from the core's kind to gRPC codes in one
// table (CodeOf). The key comes from the "authorization: Bearer KEY" metadata, parsed
// as REST parses its header (internal/bearer). A cancelled call or an expired
// deadline closes its generation at once, which frees the slot within one decode
// step.
package grpc

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	gogrpc "google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/transport/grpc/hxpv1"
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
	// Auth, when set, requires a valid key on every Inference call (health and
	// reflection stay public, as REST's /health does).
	Auth Authenticator
	// MaxN is the largest n accepted (default 4), as REST's.
	MaxN int
	// MaxMessageBytes bounds a received and a sent message (default 8 MiB); a larger
	// one fails with RESOURCE_EXHAUSTED.
	MaxMessageBytes int
	// MaxConcurrentStreams bounds the calls in flight on one connection (default 256).
	MaxConcurrentStreams uint32
	// KeepaliveTime is how long a connection may be silent before the server pings
	// it (default 1m); KeepaliveTimeout how long it waits for the answer (default 20s).
	KeepaliveTime, KeepaliveTimeout time.Duration
	// TLS, when set, serves TLS (server.tls).
	TLS *tls.Config
	// Metrics, when set, counts calls (hxp_grpc_requests_total).
	Metrics *Metrics
}

// Defaults of Options.
const (
	DefaultMaxMessageBytes      = 8 << 20
	DefaultMaxConcurrentStreams = 256
	DefaultKeepaliveTime        = time.Minute
	DefaultKeepaliveTimeout     = 20 * time.Second
	// minClientPing is the most frequent client keepalive ping accepted.
	minClientPing = 10 * time.Second
)

func (o *Options) defaults() {
	if o.MaxN == 0 {
		o.MaxN = 4
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if o.KeepaliveTime == 0 {
		o.KeepaliveTime = DefaultKeepaliveTime
	}
	if o.KeepaliveTimeout == 0 {
		o.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
}

// Server is the gRPC transport over one infer.Service.
type Server struct {
	hxpv1.UnimplementedInferenceServer
	svc    infer.Service
	opts   Options
	lim    openai.Limits
	health *healthServer
	srv    *gogrpc.Server
}

// New returns the gRPC server over svc, with Inference, Health and reflection
// registered.
func New(svc infer.Service, opts Options) *Server {
	opts.defaults()
	s := &Server{svc: svc, opts: opts, lim: openai.Limits{MaxN: opts.MaxN}, health: newHealthServer(svc)}
	so := []gogrpc.ServerOption{
		gogrpc.MaxRecvMsgSize(opts.MaxMessageBytes),
		gogrpc.MaxSendMsgSize(opts.MaxMessageBytes),
		gogrpc.MaxConcurrentStreams(opts.MaxConcurrentStreams),
		gogrpc.KeepaliveParams(keepalive.ServerParameters{Time: opts.KeepaliveTime, Timeout: opts.KeepaliveTimeout}),
		gogrpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: minClientPing, PermitWithoutStream: true}),
		gogrpc.ChainUnaryInterceptor(s.unary),
		gogrpc.ChainStreamInterceptor(s.streaming),
	}
	if opts.TLS != nil {
		so = append(so, gogrpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	s.srv = gogrpc.NewServer(so...)
	hxpv1.RegisterInferenceServer(s.srv, s)
	grpc_health_v1.RegisterHealthServer(s.srv, s.health)
	reflection.Register(s.srv)
	return s
}

// Serve accepts connections on ln until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(ln)
	if errors.Is(err, gogrpc.ErrServerStopped) {
		return nil
	}
	return err
}

// SetDraining makes Health report NOT_SERVING for the process (shutting down).
func (s *Server) SetDraining() { s.health.setDraining() }

// Shutdown stops accepting calls and waits for those in flight (streams included)
// until ctx ends; then it cancels what still runs. It reports ctx's error when calls
// had to be cancelled.
func (s *Server) Shutdown(ctx context.Context) error {
	s.SetDraining()
	done := make(chan struct{})
	go func() {
		s.srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.srv.Stop() // cancels every call's context: their generations close
		<-done
		return ctx.Err()
	}
}

// requireModel refuses a request without a model: the gRPC API is the gateway's,
// where every request names its model.
func requireModel(ctx context.Context, model string) error {
	if model == "" {
		return infer.Invalid("model", "model is required; ListModels lists the models served")
	}
	callOf(ctx).setModel(model)
	return nil
}

// ListModels implements hxpv1.InferenceServer.
func (s *Server) ListModels(ctx context.Context, _ *hxpv1.ListModelsRequest) (*hxpv1.ListModelsResponse, error) {
	ms := s.svc.Models(ctx)
	slices.SortFunc(ms, func(a, b infer.Model) int { return strings.Compare(a.ID, b.ID) })
	out := &hxpv1.ListModelsResponse{Models: make([]*hxpv1.Model, len(ms))}
	for i, m := range ms {
		out.Models[i] = modelOf(m)
	}
	return out, nil
}

// Chat implements hxpv1.InferenceServer.
func (s *Server) Chat(ctx context.Context, r *hxpv1.ChatRequest) (*hxpv1.GenerateResponse, error) {
	g, err := s.startChat(ctx, r, false)
	if err != nil {
		return nil, err
	}
	return s.collect(ctx, g, r.GetModel())
}

// ChatStream implements hxpv1.InferenceServer.
func (s *Server) ChatStream(r *hxpv1.ChatRequest, st gogrpc.ServerStreamingServer[hxpv1.GenerateChunk]) error {
	g, err := s.startChat(st.Context(), r, true)
	if err != nil {
		return err
	}
	return s.stream(st, g, r.GetModel())
}

func (s *Server) startChat(ctx context.Context, r *hxpv1.ChatRequest, stream bool) (*infer.Generation, error) {
	in, err := chatRequest(r, stream, s.lim)
	if err == nil {
		err = requireModel(ctx, in.Model)
	}
	if err != nil {
		return nil, err
	}
	return s.svc.Chat(ctx, in)
}

// Complete implements hxpv1.InferenceServer.
func (s *Server) Complete(ctx context.Context, r *hxpv1.CompleteRequest) (*hxpv1.GenerateResponse, error) {
	g, err := s.startComplete(ctx, r, false)
	if err != nil {
		return nil, err
	}
	return s.collect(ctx, g, r.GetModel())
}

// CompleteStream implements hxpv1.InferenceServer.
func (s *Server) CompleteStream(r *hxpv1.CompleteRequest, st gogrpc.ServerStreamingServer[hxpv1.GenerateChunk]) error {
	g, err := s.startComplete(st.Context(), r, true)
	if err != nil {
		return err
	}
	return s.stream(st, g, r.GetModel())
}

func (s *Server) startComplete(ctx context.Context, r *hxpv1.CompleteRequest, stream bool) (*infer.Generation, error) {
	in, err := completeRequest(r, stream, s.lim)
	if err == nil {
		err = requireModel(ctx, in.Model)
	}
	if err != nil {
		return nil, err
	}
	return s.svc.Complete(ctx, in)
}

// Embed implements hxpv1.InferenceServer.
func (s *Server) Embed(ctx context.Context, r *hxpv1.EmbedRequest) (*hxpv1.EmbedResponse, error) {
	in, err := embedRequest(r)
	if err == nil {
		err = requireModel(ctx, in.Model)
	}
	if err != nil {
		return nil, err
	}
	e, err := s.svc.Embed(ctx, in)
	if err != nil {
		return nil, err
	}
	served(ctx, &e.Served, in.Model)
	callOf(ctx).record(infer.Summary{Usage: e.Usage})
	return embeddingsOf(e), nil
}

// Tokenize implements hxpv1.InferenceServer.
func (s *Server) Tokenize(ctx context.Context, r *hxpv1.TokenizeRequest) (*hxpv1.TokenizeResponse, error) {
	in, err := tokenizeRequest(r)
	if err == nil {
		err = requireModel(ctx, in.Model)
	}
	if err != nil {
		return nil, err
	}
	t, err := s.svc.Tokenize(ctx, in)
	if err != nil {
		return nil, err
	}
	served(ctx, &t.Served, in.Model)
	out := &hxpv1.TokenizeResponse{Tokens: make([]int32, len(t.Tokens)), Count: int32(len(t.Tokens)), MaxModelLen: int32(t.MaxModelLen)}
	for i, tok := range t.Tokens {
		out.Tokens[i] = int32(tok)
	}
	return out, nil
}

// Detokenize implements hxpv1.InferenceServer.
func (s *Server) Detokenize(ctx context.Context, r *hxpv1.DetokenizeRequest) (*hxpv1.DetokenizeResponse, error) {
	in, err := detokenizeRequest(r)
	if err == nil {
		err = requireModel(ctx, in.Model)
	}
	if err != nil {
		return nil, err
	}
	t, err := s.svc.Detokenize(ctx, in)
	if err != nil {
		return nil, err
	}
	served(ctx, &t.Served, in.Model)
	return &hxpv1.DetokenizeResponse{Text: t.Text}, nil
}

// ApplyTemplate implements hxpv1.InferenceServer.
func (s *Server) ApplyTemplate(ctx context.Context, r *hxpv1.ApplyTemplateRequest) (*hxpv1.ApplyTemplateResponse, error) {
	in, err := applyTemplateRequest(r)
	if err == nil {
		err = requireModel(ctx, in.Model)
	}
	if err != nil {
		return nil, err
	}
	p, err := s.svc.ApplyTemplate(ctx, in)
	if err != nil {
		return nil, err
	}
	served(ctx, &p.Served, in.Model)
	return &hxpv1.ApplyTemplateResponse{Prompt: p.Prompt}, nil
}

// collect answers a unary generation. The call's end (cancel, deadline) closes the
// generation at once.
func (s *Server) collect(ctx context.Context, g *infer.Generation, asked string) (*hxpv1.GenerateResponse, error) {
	stop := context.AfterFunc(ctx, g.Close)
	res, err := g.Collect()
	stop()
	callOf(ctx).record(g.Summary())
	if cerr := ctxStatus(ctx); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	served(ctx, &g.Served, asked)
	return responseOf(callOf(ctx).id, res), nil
}

// stream sends a generation's events: each choice's deltas, its finish, then the
// usage. A client that cancels, or whose deadline passes, closes the generation at
// once; a failed choice ends the call with its error's status.
func (s *Server) stream(st gogrpc.ServerStreamingServer[hxpv1.GenerateChunk], g *infer.Generation, asked string) error {
	ctx := st.Context()
	info := callOf(ctx)
	info.streaming = true
	defer g.Close()
	stop := context.AfterFunc(ctx, g.Close)
	defer stop()
	served(ctx, &g.Served, asked)
	id, model := info.id, g.Model
	for ev := range g.Events() {
		if ev.Done && ev.Err != nil {
			info.record(g.Summary())
			if cerr := ctxStatus(ctx); cerr != nil {
				return cerr
			}
			return ev.Err
		}
		if c := deltaOf(&ev); c != nil {
			c.Id, c.Model = id, model
			if err := st.Send(c); err != nil {
				return err
			}
		}
		if ev.Done {
			if err := st.Send(&hxpv1.GenerateChunk{Id: id, Model: model, Index: int32(ev.Choice), FinishReason: finishOf(ev.Finish)}); err != nil {
				return err
			}
		}
	}
	sum := g.Summary()
	info.record(sum)
	if cerr := ctxStatus(ctx); cerr != nil {
		return cerr
	}
	if sum.Err != nil {
		return sum.Err
	}
	return st.Send(&hxpv1.GenerateChunk{Id: id, Model: model, Usage: usageOf(sum.Usage)})
}
