package server

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/connectors/postgres"
)

// UsageRecorder takes one usage record per request without blocking;
// *postgres.Ledger implements it (batched COPY, spooled to a file while the
// database is down).
type UsageRecorder interface {
	Record(rec postgres.UsageRecord)
}

// UsageLog writes one ledger record per model request of a tenant once its response
// is complete (after the last chunk of a stream): key id, model, prompt and
// completion tokens, latency, status and request id. Refused requests (429, 404) are
// recorded too; requests without a tenant and node-to-node requests are not. It also
// feeds the tenant's tokens to the budgets.
type UsageLog struct {
	// Ledger receives the records; nil records nothing (budgets still count).
	Ledger UsageRecorder
	// Budgets, when set, counts the tokens of each finished request.
	Budgets *Budgets
	// DefaultModel is the model of requests without one (a model's own listener).
	DefaultModel string
}

// Name implements Middleware.
func (UsageLog) Name() string { return "usage-log" }

// Wrap implements Middleware.
func (u UsageLog) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		t, m, info := TenantOf(ctx), metaOf(ctx), infoOf(ctx)
		if t == nil || t.Internal || m == nil || info == nil {
			next(ctx)
			return
		}
		id := info.ID
		if string(ctx.Request.Header.Peek("X-Request-Id")) == id {
			// The client chose this id and may reuse it; the ledger keeps one record per
			// id, so a chosen id gets a suffix that makes the record its own.
			id += "." + newID()[:12]
		}
		next(ctx)
		status := ctx.Response.StatusCode()
		info.OnFinish(func(ri *RequestInfo) {
			model := ri.Model
			if model == "" {
				model = m.model
			}
			if model == "" {
				model = u.DefaultModel
			}
			if u.Budgets != nil {
				u.Budgets.Add(t.ID, int64(ri.PromptTokens+ri.CompletionTokens))
			}
			if u.Ledger == nil {
				return
			}
			u.Ledger.Record(postgres.UsageRecord{
				RequestID: id, KeyID: t.ID, Model: model,
				PromptTokens: ri.PromptTokens, CompletionTokens: ri.CompletionTokens,
				LatencyMS: int(time.Since(ri.Start).Milliseconds()), StatusCode: status, CreatedAt: ri.Start,
			})
		})
	}
}
