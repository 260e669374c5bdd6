package rest

import (
	"bufio"
	"context"
	"fmt"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
)

// respond answers a generation: one JSON response, or Server-Sent Events when the
// client asked for a stream. cancel ends the service's context; asked is the model
// the request named.
func (s *Server) respond(ctx *fasthttp.RequestCtx, g *infer.Generation, cancel context.CancelFunc, asked string,
	st *openai.Stream, stream, includeUsage bool) {
	s.served(ctx, &g.Served, asked)
	info := infoOf(ctx)
	if !stream {
		defer cancel()
		var left atomic.Bool
		stop := watchPeer(ctx.Conn(), peerCheckEvery, func() { left.Store(true); g.Close() })
		res, err := g.Collect()
		stop()
		sum := g.Summary()
		info.record(sum)
		switch {
		case left.Load():
			writeError(ctx, infer.ErrClientGone)
		case err != nil:
			writeError(ctx, err)
		default:
			writeJSON(ctx, fasthttp.StatusOK, st.Response(res))
		}
		return
	}

	startSSE(ctx, info)
	conn := ctx.Conn()
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		// A client that leaves before the first token (queued, or while its prompt is
		// evaluated) is noticed here; later, a failed write notices it too.
		defer watchPeer(conn, peerCheckEvery, g.Close)()
		sse := &sseWriter{w: w, conn: conn, timeout: s.opts.WriteTimeout}
		defer func() {
			if p := recover(); p != nil {
				_, body := openai.ErrorOf(fmt.Errorf("stream panic: %v", p))
				_ = sse.event(body)
			}
			g.Close() // the client may be gone: stop generating
			cancel()
			if info != nil {
				info.record(g.Summary())
				info.FinishRequest()
			}
		}()
		for _, c := range st.Start(g.Choices) {
			if sse.event(c) != nil {
				return
			}
		}
		for ev := range g.Events() {
			if ev.Done && ev.Err != nil {
				e := infer.AsError(ev.Err, "")
				if e.Kind == infer.Cancelled { // we cancelled: the client left
					return
				}
				status, body := openai.ErrorOf(e)
				if info != nil {
					info.ErrType, info.ErrCode, info.ErrStatus = body.Error.Type, e.Code, status
				}
				_ = sse.event(body)
				_ = sse.done()
				return
			}
			if c := st.Delta(&ev); c != nil && sse.event(c) != nil {
				return
			}
			if ev.Done && sse.event(st.Finish(&ev)) != nil {
				return
			}
		}
		if includeUsage {
			if sse.event(st.UsageChunk(g.Summary().Usage)) != nil {
				return
			}
		}
		_ = sse.done()
	})
}

// record copies a finished generation's usage and timing into the access record.
func (ri *RequestInfo) record(s infer.Summary) {
	if ri == nil {
		return
	}
	ri.PromptTokens, ri.CompletionTokens, ri.CachedTokens = s.Usage.PromptTokens, s.Usage.CompletionTokens, s.Usage.CachedTokens
	ri.TTFT = s.TTFT
	if s.Err == nil {
		ri.Finish = s.Finish.String()
	}
}
