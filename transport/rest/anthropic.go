package rest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/anthropic"
	"github.com/hxp-ai/hxp/infer"
)

// The Anthropic Messages API over the same core as the OpenAI endpoints: the body is
// decoded once by package anthropic into the core's chat or tokenize request, the
// service answers it, and package anthropic renders the message, the stream's events
// and the errors. The anthropic-version header is accepted and not checked.

// Anthropic endpoints, routed by the request's "model".
const (
	pathMessages    = "/v1/messages"
	pathCountTokens = "/v1/messages/count_tokens"
)

// isAnthropicPath reports whether errors on path are answered in Anthropic's format.
func isAnthropicPath(path string) bool {
	return path == pathMessages || strings.HasPrefix(path, pathMessages+"/")
}

// writeAnthropicError sends err as an Anthropic error response: the status and body
// from the one table in package anthropic, with the headers writeError sets
// (Retry-After, rate limits, the 401 challenge) and its access record.
func writeAnthropicError(ctx *fasthttp.RequestCtx, err error) {
	writeError(ctx, err)
	status, body := anthropic.ErrorOf(err)
	if se, ok := err.(*statusError); ok {
		status = se.status
	}
	if info := infoOf(ctx); info != nil {
		info.ErrType = body.Error.Type
	}
	writeJSON(ctx, status, body)
}

// messages serves POST /v1/messages.
func (s *Server) messages(ctx *fasthttp.RequestCtx) {
	in, err := anthropic.DecodeMessages(ctx.PostBody())
	if err == nil {
		in.Model, err = s.resolve(ctx, in.Model)
	}
	if err != nil {
		writeAnthropicError(ctx, err)
		return
	}
	c, cancel := s.context(ctx)
	g, err := s.svc.Chat(c, in)
	if err != nil {
		cancel()
		writeAnthropicError(ctx, err)
		return
	}
	s.respondMessage(ctx, g, cancel, in.Model, anthropic.NewStream(g.Model), in.Stream)
}

// respondMessage answers a generation as one message, or as Anthropic's event
// stream when the client asked for one.
func (s *Server) respondMessage(ctx *fasthttp.RequestCtx, g *infer.Generation, cancel context.CancelFunc, asked string,
	st *anthropic.Stream, stream bool) {
	s.served(ctx, &g.Served, asked)
	info := infoOf(ctx)
	if !stream {
		defer cancel()
		var left atomic.Bool
		stop := watchPeer(ctx.Conn(), peerCheckEvery, func() { left.Store(true); g.Close() })
		res, err := g.Collect()
		stop()
		info.record(g.Summary())
		var msg *anthropic.Message
		if err == nil {
			msg, err = st.Response(res)
		}
		switch {
		case left.Load():
			writeAnthropicError(ctx, infer.ErrClientGone)
		case err != nil:
			writeAnthropicError(ctx, err)
		default:
			writeJSON(ctx, fasthttp.StatusOK, msg)
		}
		return
	}

	startSSE(ctx, info)
	conn := ctx.Conn()
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer watchPeer(conn, peerCheckEvery, g.Close)()
		sse := &sseWriter{w: w, conn: conn, timeout: s.opts.WriteTimeout}
		defer func() {
			if p := recover(); p != nil {
				_ = sse.named(anthropic.ErrorEvent(fmt.Errorf("stream panic: %v", p)))
			}
			g.Close() // the client may be gone: stop generating
			cancel()
			if info != nil {
				info.record(g.Summary())
				info.FinishRequest()
			}
		}()
		send := func(evs []anthropic.Event) bool {
			for _, e := range evs {
				if sse.named(e) != nil {
					return false
				}
			}
			return true
		}
		if !send(st.Start()) {
			return
		}
		for ev := range g.Events() {
			if ev.Done && ev.Err != nil {
				e := infer.AsError(ev.Err, "")
				if e.Kind == infer.Cancelled { // we cancelled: the client left
					return
				}
				status, body := anthropic.ErrorOf(e)
				if info != nil {
					info.ErrType, info.ErrCode, info.ErrStatus = body.Error.Type, e.Code, status
				}
				_ = sse.named(anthropic.Event{Name: anthropic.EventError, Data: body})
				return
			}
			if !send(st.Next(&ev)) {
				return
			}
		}
		send(st.End(g.Summary().Usage))
	})
}

// named sends one event of Anthropic's framing: "event: NAME" and its data.
func (s *sseWriter) named(e anthropic.Event) error {
	b, err := json.Marshal(e.Data)
	if err != nil {
		return err
	}
	s.w.WriteString("event: " + e.Name + "\n")
	return s.data(b)
}

// countTokens serves POST /v1/messages/count_tokens: the conversation rendered with
// the model's chat template and tokenized as Messages does.
func (s *Server) countTokens(ctx *fasthttp.RequestCtx) {
	in, err := anthropic.DecodeCountTokens(ctx.PostBody())
	if err == nil {
		in.Model, err = s.resolve(ctx, in.Model)
	}
	if err != nil {
		writeAnthropicError(ctx, err)
		return
	}
	c, cancel := s.context(ctx)
	defer cancel()
	t, err := s.svc.Tokenize(c, in)
	if err != nil {
		writeAnthropicError(ctx, err)
		return
	}
	s.served(ctx, &t.Served, in.Model)
	writeJSON(ctx, fasthttp.StatusOK, anthropic.CountOf(t))
}
