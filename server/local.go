package server

import (
	"time"

	"github.com/valyala/fasthttp"
)

// Local is the Upstream of a model served in this process.
type Local struct {
	b            Backend
	lim          limits
	writeTimeout time.Duration
}

// NewLocal returns the upstream of backend b.
func NewLocal(b Backend, opts Options) *Local {
	opts.defaults()
	return &Local{b: b, lim: limits{MaxN: opts.MaxN}, writeTimeout: opts.WriteTimeout}
}

// Models implements Upstream.
func (l *Local) Models() []ModelCard { return []ModelCard{card(l.b)} }

// Serve implements Upstream: it runs the endpoint's handler on the backend.
func (l *Local) Serve(ctx *fasthttp.RequestCtx, op Op, _ string) {
	switch op {
	case OpChat:
		l.chat(ctx)
	case OpCompletions:
		l.completions(ctx)
	case OpEmbeddings:
		l.embeddings(ctx)
	case OpTokenize:
		l.tokenize(ctx)
	case OpDetokenize:
		l.detokenize(ctx)
	default:
		writeError(ctx, badRequest("", "unknown operation"), "")
	}
}

// accept ends a request whose body failed to decode (err) or whose model is not ready,
// writing the error; it reports whether the handler may go on.
func (l *Local) accept(ctx *fasthttp.RequestCtx, err error) bool {
	if err == nil {
		err = l.b.Ready()
	}
	if err != nil {
		writeError(ctx, err, "")
		return false
	}
	return true
}
