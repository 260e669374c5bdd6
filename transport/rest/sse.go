package rest

import (
	"bufio"
	"encoding/json"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// sseWriter writes Server-Sent Events in OpenAI's framing: "data: {json}\n\n" per
// event, flushed at once, and "data: [DONE]\n\n" at the end. Every write renews the
// connection's write deadline, so a stream may last as long as its client reads.
// A write error means the client is gone.
type sseWriter struct {
	w       *bufio.Writer
	conn    net.Conn // nil in tests
	timeout time.Duration
}

// startSSE sets a 200 event-stream response's headers (no caching, no proxy
// buffering) and marks the request as streaming, so that its access log line is
// written when the stream ends.
func startSSE(ctx *fasthttp.RequestCtx, info *RequestInfo) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/event-stream; charset=utf-8")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	if info != nil {
		info.Streaming = true
	}
}

// event sends v as one data event.
func (s *sseWriter) event(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.data(b)
}

// done sends the terminating [DONE] event.
func (s *sseWriter) done() error { return s.data([]byte("[DONE]")) }

func (s *sseWriter) data(b []byte) error {
	if s.conn != nil && s.timeout > 0 {
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.timeout))
	}
	s.w.WriteString("data: ")
	s.w.Write(b)
	s.w.WriteString("\n\n")
	return s.w.Flush()
}
