package rest

import (
	"fmt"
	"runtime/debug"
	"time"

	bearerauth "github.com/hxp-ai/hxp/internal/bearer"
	"github.com/hxp-ai/hxp/openai"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// Middleware is one link of a handler chain: it wraps the rest of the chain.
type Middleware interface {
	// Name identifies the link in logs and tests.
	Name() string
	// Wrap returns a handler that does the link's work around next.
	Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler
}

// Chain is an ordered list of links; the first one sees a request first.
type Chain []Middleware

// Then returns h wrapped by every link of the chain.
func (c Chain) Then(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	for i := len(c) - 1; i >= 0; i-- {
		h = c[i].Wrap(h)
	}
	return h
}

// Names lists the links in order.
func (c Chain) Names() []string {
	out := make([]string, len(c))
	for i, m := range c {
		out[i] = m.Name()
	}
	return out
}

// RequestID gives every request an id, returned as the x-request-id header, and the
// RequestInfo later links fill in. A client's own x-request-id (up to 64 characters
// of [A-Za-z0-9._-]) is kept so that it can correlate logs.
type RequestID struct{}

// Name implements Middleware.
func (RequestID) Name() string { return "request-id" }

// Wrap implements Middleware.
func (RequestID) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		id := string(ctx.Request.Header.Peek("X-Request-Id"))
		generated := !bearerauth.ValidRequestID(id)
		if generated {
			id = openai.NewID()
		}
		info := &RequestInfo{ID: id, ledgerID: id, Start: time.Now()}
		if !generated {
			info.ledgerID = id + "." + openai.NewID()[:12]
		}
		ctx.SetUserValue(infoKey, info)
		ctx.Response.Header.Set("X-Request-Id", id)
		next(ctx)
		if !info.Streaming {
			info.FinishRequest()
		}
	}
}

// AccessLog writes one structured log line per request when its response is complete
// (for a stream: after its last chunk): id, method, path, status, model, tokens in
// and out, time to first token and duration. Outputs and keys are never logged;
// prompts only when Prompts is set (config log.prompts), see promptOf.
type AccessLog struct {
	Log     zerolog.Logger
	Prompts bool
}

// Name implements Middleware.
func (AccessLog) Name() string { return "access-log" }

// Wrap implements Middleware.
func (a AccessLog) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		info := infoOf(ctx)
		if info == nil { // no RequestID link before this one
			next(ctx)
			return
		}
		method, path := string(ctx.Method()), string(ctx.Path())
		remote := ctx.RemoteIP().String()
		prompt := ""
		if a.Prompts && ctx.IsPost() {
			prompt = promptOf(ctx.PostBody())
		}
		next(ctx)
		status := ctx.Response.StatusCode()
		info.OnFinish(func(ri *RequestInfo) {
			var ev *zerolog.Event
			switch {
			case status >= 500:
				ev = a.Log.Error()
			case status >= 400:
				ev = a.Log.Warn()
			case probePaths[path]:
				ev = a.Log.Debug() // scrapes and probes every few seconds
			default:
				ev = a.Log.Info()
			}
			ev = ev.Str("request_id", ri.ID).Str("method", method).Str("path", path).Int("status", status).Str("remote", remote)
			if ri.Model != "" {
				ev = ev.Str("model", ri.Model)
			}
			if ri.PromptTokens > 0 || ri.CompletionTokens > 0 {
				ev = ev.Int("prompt_tokens", ri.PromptTokens).Int("completion_tokens", ri.CompletionTokens).Int("cached_tokens", ri.CachedTokens)
			}
			if ri.TTFT > 0 {
				ev = ev.Float64("ttft_ms", float64(ri.TTFT.Microseconds())/1000)
			}
			if ri.Streaming {
				ev = ev.Bool("stream", true)
			}
			if ri.Finish != "" {
				ev = ev.Str("finish", ri.Finish)
			}
			if ri.ErrType != "" {
				ev = ev.Str("error_type", ri.ErrType).Str("error_code", ri.ErrCode)
				if ri.Streaming && ri.ErrStatus != 0 { // the stream's 200 was already sent
					ev = ev.Int("error_status", ri.ErrStatus)
				}
			}
			if prompt != "" {
				ev = ev.Str("prompt", prompt)
			}
			ev.Float64("duration_ms", float64(time.Since(ri.Start).Microseconds())/1000).Msg("request")
		})
	}
}

// probePaths are polled by Prometheus and orchestrators; AccessLog logs their
// successful requests at debug level only.
var probePaths = map[string]bool{"/metrics": true, "/health": true, "/health/ready": true}

// Recover turns a panic in the rest of the chain into a 500 OpenAI error and logs it
// with its stack, so one bad request cannot take the server down.
type Recover struct{ Log zerolog.Logger }

// Name implements Middleware.
func (Recover) Name() string { return "recover" }

// Wrap implements Middleware.
func (r Recover) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		defer func() {
			if p := recover(); p != nil {
				r.Log.Error().Str("panic", fmt.Sprint(p)).Str("stack", string(debug.Stack())).Str("path", string(ctx.Path())).Msg("handler panic")
				ctx.Response.Reset()
				if info := infoOf(ctx); info != nil {
					ctx.Response.Header.Set("X-Request-Id", info.ID)
				}
				writeError(ctx, fmt.Errorf("handler panic: %v", p))
			}
		}()
		next(ctx)
	}
}
