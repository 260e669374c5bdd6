package grpc

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	gogrpc "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/internal/bearer"
	"github.com/hxp-ai/hxp/openai"
)

// call is the access record of one call, which the access log and the metrics read:
// the model, token counts and timings. Handlers fill it from the service's typed
// results; it never holds prompt text or keys.
type call struct {
	id      string
	method  string
	start   time.Time
	remote  string
	code    codes.Code
	errCode string // the error's reason (REST's error code), when it failed

	mu                                           sync.Mutex
	model                                        string
	streaming                                    bool
	promptTokens, completionTokens, cachedTokens int
	ttft                                         time.Duration
	finish                                       string
}

type callKey struct{}

// callOf returns the call's record; a context outside the interceptors gets a
// throwaway one.
func callOf(ctx context.Context) *call {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		return c
	}
	return &call{}
}

func (c *call) setModel(m string) {
	c.mu.Lock()
	c.model = m
	c.mu.Unlock()
}

// record copies a generation's (or an embedding's) usage and timing.
func (c *call) record(s infer.Summary) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.promptTokens, c.completionTokens, c.cachedTokens = s.Usage.PromptTokens, s.Usage.CompletionTokens, s.Usage.CachedTokens
	c.ttft = s.TTFT
	if s.Err == nil && (s.Usage.CompletionTokens > 0 || s.TTFT > 0) {
		c.finish = s.Finish.String()
	}
}

// public methods need no key: health checks and reflection (like REST's /health).
func public(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") || strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// errMissingKey is the answer to a call without a well-formed bearer token.
var errMissingKey = &infer.Error{Kind: infer.Unauthenticated, Code: "invalid_api_key",
	Message: "missing or malformed API key; send it as metadata \"authorization: Bearer KEY\""}

// begin starts a call: its request id (the client's x-request-id when valid, with a
// random suffix for the ledger, as REST does), its record, and the caller when auth is
// on. The returned context carries all three.
func (s *Server) begin(ctx context.Context, fullMethod string) (context.Context, *call, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c := &call{method: strings.TrimPrefix(fullMethod, "/"), start: time.Now()}
	ledgerID := ""
	if ids := md.Get(RequestIDHeader); len(ids) == 1 && bearer.ValidRequestID(ids[0]) {
		c.id = ids[0]
		ledgerID = c.id + "." + openai.NewID()[:12]
	} else {
		c.id = openai.NewID()
		ledgerID = c.id
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		c.remote = p.Addr.String()
	}
	ctx = context.WithValue(ctx, callKey{}, c)
	ctx = infer.WithRequestID(ctx, ledgerID)
	_ = gogrpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, c.id))
	if s.opts.Auth == nil || public(fullMethod) {
		return ctx, c, nil
	}
	secret, ok := bearer.Token(md.Get("authorization"))
	if !ok {
		return ctx, c, errMissingKey
	}
	caller, err := s.opts.Auth.Authenticate(ctx, secret)
	if err != nil {
		return ctx, c, err
	}
	return infer.WithCaller(ctx, caller), c, nil
}

// finish ends a call: err becomes its status (the one table), and the call is counted
// and logged.
func (s *Server) finish(c *call, err error) error {
	if err != nil {
		st := statusOf(err)
		c.code = st.Code()
		c.errCode = reasonOf(st)
		err = st.Err()
	}
	if s.opts.Metrics != nil {
		s.opts.Metrics.requests.WithLabelValues(c.method, c.code.String()).Inc()
	}
	s.accessLog(c)
	return err
}

// reasonOf is the ErrorInfo reason of a status, or "".
func reasonOf(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(interface{ GetReason() string }); ok {
			return info.GetReason()
		}
	}
	return ""
}

// guard runs fn, turning a panic into INTERNAL (logged with its stack).
func (s *Server) guard(c *call, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Log.Error().Str("request_id", c.id).Str("method", c.method).Str("panic", fmt.Sprint(p)).
				Str("stack", string(debug.Stack())).Msg("panic serving gRPC call")
			err = &infer.Error{Kind: infer.Internal, Message: "internal error"}
		}
	}()
	return fn()
}

// unary is the interceptor of unary calls.
func (s *Server) unary(ctx context.Context, req any, info *gogrpc.UnaryServerInfo, h gogrpc.UnaryHandler) (any, error) {
	ctx, c, err := s.begin(ctx, info.FullMethod)
	var resp any
	if err == nil {
		err = s.guard(c, func() error {
			var herr error
			resp, herr = h(ctx, req)
			return herr
		})
	}
	if err = s.finish(c, err); err != nil {
		return nil, err
	}
	return resp, nil
}

// ctxStream is a server stream with the call's context.
type ctxStream struct {
	gogrpc.ServerStream
	ctx context.Context
}

func (w *ctxStream) Context() context.Context { return w.ctx }

// streaming is the interceptor of streaming calls.
func (s *Server) streaming(srv any, ss gogrpc.ServerStream, info *gogrpc.StreamServerInfo, h gogrpc.StreamHandler) error {
	ctx, c, err := s.begin(ss.Context(), info.FullMethod)
	if err == nil {
		err = s.guard(c, func() error { return h(srv, &ctxStream{ServerStream: ss, ctx: ctx}) })
	}
	return s.finish(c, err)
}

// accessLog writes one line per call when it ends: id, method, gRPC code, peer,
// model, tokens, time to first token and duration. Prompts, outputs and keys are
// never logged.
func (s *Server) accessLog(c *call) {
	var ev *zerolog.Event
	switch c.code {
	case codes.OK:
		ev = s.opts.Log.Info()
		if public("/" + c.method) {
			ev = s.opts.Log.Debug() // probes every few seconds
		}
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		ev = s.opts.Log.Error()
	default:
		ev = s.opts.Log.Warn()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ev = ev.Str("request_id", c.id).Str("transport", "grpc").Str("method", c.method).Str("code", c.code.String()).Str("remote", c.remote)
	if c.model != "" {
		ev = ev.Str("model", c.model)
	}
	if c.promptTokens > 0 || c.completionTokens > 0 {
		ev = ev.Int("prompt_tokens", c.promptTokens).Int("completion_tokens", c.completionTokens).Int("cached_tokens", c.cachedTokens)
	}
	if c.ttft > 0 {
		ev = ev.Float64("ttft_ms", float64(c.ttft.Microseconds())/1000)
	}
	if c.streaming {
		ev = ev.Bool("stream", true)
	}
	if c.finish != "" {
		ev = ev.Str("finish", c.finish)
	}
	if c.errCode != "" {
		ev = ev.Str("error_code", c.errCode)
	}
	ev.Float64("duration_ms", float64(time.Since(c.start).Microseconds())/1000).Msg("grpc request")
}
