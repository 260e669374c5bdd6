package rest

import (
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// RequestInfo is the access record of one request, which the access log and the HTTP
// metrics read: the model, token counts, timings and error. The handlers fill it from
// the service's typed results; it never holds prompt text and nothing reads it back
// to decide anything.
//
// A streamed response outlives its handler: the handler marks the info Streaming and
// the stream calls Finish when it ends, which runs the callbacks registered with
// OnFinish (the access log). For other responses the middleware finishes it.
type RequestInfo struct {
	ID string
	// ledgerID is the id under which the usage ledger records the request: ID, with a
	// random suffix when the client chose ID (and may reuse it).
	ledgerID         string
	Model            string
	Streaming        bool
	PromptTokens     int
	CompletionTokens int
	CachedTokens     int
	TTFT             time.Duration
	Finish           string // finish reason of the first choice
	ErrType, ErrCode string // set when the response is an error
	// ErrStatus is the HTTP status of an error that ended a stream after its 200
	// header (metrics count the request with it); 0 otherwise.
	ErrStatus int
	Start     time.Time
	// serviceStart is when the request was handed to the service (zero when it was
	// refused before).
	serviceStart time.Time

	mu       sync.Mutex
	onFinish []func(*RequestInfo)
	done     bool
}

const infoKey = "hxp.info"

// infoOf returns the request's info, or nil outside the middleware chain.
func infoOf(ctx *fasthttp.RequestCtx) *RequestInfo {
	if v, ok := ctx.UserValue(infoKey).(*RequestInfo); ok {
		return v
	}
	return nil
}

// InfoOf returns the RequestInfo of a request handled by a chain with the RequestID
// link (nil otherwise); middleware of other packages (limits, metrics) reads it.
func InfoOf(ctx *fasthttp.RequestCtx) *RequestInfo { return infoOf(ctx) }

// OnFinish registers fn to run once the response is complete (after the last byte of
// a stream). Callbacks run in registration order.
//
// A request that has already finished (a stream that ended before its handler's
// caller registered fn) runs fn at once: the access log line is never lost.
func (ri *RequestInfo) OnFinish(fn func(*RequestInfo)) {
	ri.mu.Lock()
	if ri.done {
		ri.mu.Unlock()
		fn(ri)
		return
	}
	ri.onFinish = append(ri.onFinish, fn)
	ri.mu.Unlock()
}

// FinishRequest runs the OnFinish callbacks; only the first call has an effect.
func (ri *RequestInfo) FinishRequest() {
	ri.mu.Lock()
	if ri.done {
		ri.mu.Unlock()
		return
	}
	ri.done = true
	fns := ri.onFinish
	ri.mu.Unlock()
	for _, fn := range fns {
		fn(ri)
	}
}
