package tenancy

import (
	"context"
	"time"

	"github.com/hxp-ai/hxp/connectors/postgres"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/limits"
)

// Admit returns next behind the tenancy's admission. For a request whose context
// carries a caller (infer.WithCaller) that is not internal, in this order:
//
//   - scope: a model outside the caller's models is infer.ModelNotFound, the same
//     answer as a model nobody serves; Models lists only the allowed models;
//   - budget: a caller over its monthly token budget is QuotaExceeded
//     "insufficient_quota", to retry at the next calendar month (UTC);
//   - limits: the caller's RPM and TPM per model (rateLimiter); a refusal is
//     RateLimited "rate_limit_exceeded" with RetryAfter and the Quota, an admitted
//     result carries the Quota in its Served;
//   - accounting: once the result is complete (a generation at its end), the
//     difference between the admission's token estimate and the real usage is
//     charged to the limiter, the usage is added to the budget, and one ledger record
//     is written: request id (infer.RequestIDFrom), key id, the model that served,
//     tokens, latency and the HTTP-equivalent status (200, or the error kind's), for
//     refused requests too.
//
// Requests without a caller and those of internal callers (node-to-node) pass
// straight through, unlimited and unrecorded; scope applies to any caller that has
// models. A request without a model is for next's only model when it serves exactly
// one (a model's own listener), and left to next otherwise.
//
// Put it outside the response cache (Admit(Cache(router))): hits are then admitted,
// limited and recorded like any request, with the zero usage they report.
func (t *Tenancy) Admit(next infer.Service) infer.Service { return &admission{t: t, next: next} }

type admission struct {
	t    *Tenancy
	next infer.Service
}

var _ infer.Service = (*admission)(nil)

// Models implements infer.Service: only the models the caller may use.
func (a *admission) Models(ctx context.Context) []infer.Model {
	ms := a.next.Models(ctx)
	c := infer.CallerFrom(ctx)
	if c == nil || len(c.Models) == 0 {
		return ms
	}
	kept := make([]infer.Model, 0, len(ms))
	for _, m := range ms {
		if c.AllowsModel(m.ID) {
			kept = append(kept, m)
		}
	}
	return kept
}

// Chat implements infer.Service.
func (a *admission) Chat(ctx context.Context, r *infer.ChatRequest) (*infer.Generation, error) {
	return admit(ctx, a, request{model: r.Model, prompt: chatSize(r), generates: true}, func(ctx context.Context) (*infer.Generation, error) {
		return a.next.Chat(ctx, r)
	})
}

// Complete implements infer.Service.
func (a *admission) Complete(ctx context.Context, r *infer.CompletionRequest) (*infer.Generation, error) {
	return admit(ctx, a, request{model: r.Model, prompt: promptsSize(r.Prompts), generates: true}, func(ctx context.Context) (*infer.Generation, error) {
		return a.next.Complete(ctx, r)
	})
}

// Embed implements infer.Service.
func (a *admission) Embed(ctx context.Context, r *infer.EmbedRequest) (*infer.Embeddings, error) {
	return admit(ctx, a, request{model: r.Model, prompt: promptsSize(r.Inputs), generates: true}, func(ctx context.Context) (*infer.Embeddings, error) {
		return a.next.Embed(ctx, r)
	})
}

// Tokenize implements infer.Service.
func (a *admission) Tokenize(ctx context.Context, r *infer.TokenizeRequest) (*infer.Tokens, error) {
	return admit(ctx, a, request{model: r.Model}, func(ctx context.Context) (*infer.Tokens, error) {
		return a.next.Tokenize(ctx, r)
	})
}

// ApplyTemplate implements infer.Service.
func (a *admission) ApplyTemplate(ctx context.Context, r *infer.ApplyTemplateRequest) (*infer.RenderedPrompt, error) {
	return admit(ctx, a, request{model: r.Model}, func(ctx context.Context) (*infer.RenderedPrompt, error) {
		return a.next.ApplyTemplate(ctx, r)
	})
}

// Detokenize implements infer.Service.
func (a *admission) Detokenize(ctx context.Context, r *infer.DetokenizeRequest) (*infer.Text, error) {
	return admit(ctx, a, request{model: r.Model}, func(ctx context.Context) (*infer.Text, error) {
		return a.next.Detokenize(ctx, r)
	})
}

// request is what admission needs to know of a request.
type request struct {
	model string
	// prompt is the prompt's size in tokens as estimated before tokenizing (see
	// textTokens).
	prompt int64
	// generates is false for the tokenizer's and the template's calls, which are
	// charged one request and no tokens.
	generates bool
}

// estimate is the tokens charged at admission, before the real usage is known: the
// prompt's estimated size, at least 1 and at most the limit (so that an estimate alone
// never makes a request too large), or 0 without a token limit or for a call that
// generates nothing.
// Completion tokens are charged when the request ends.
func (r request) estimate(tpm int64) int64 {
	if tpm <= 0 || !r.generates {
		return 0
	}
	return min(max(r.prompt, 1), tpm)
}

// textTokens estimates the tokens of text before a tokenizer has seen it: a token is
// about four bytes of text.
func textTokens(bytes int) int64 { return int64(bytes / 4) }

// chatSize estimates a conversation's prompt: every text the template will render
// (contents, names, reasoning, tool calls, tool definitions).
func chatSize(r *infer.ChatRequest) int64 {
	n := 0
	for _, m := range r.Messages {
		n += len(m.Content) + len(m.Name) + len(m.Reasoning)
		for _, tc := range m.ToolCalls {
			n += len(tc.Name) + len(tc.Arguments)
		}
	}
	for _, tl := range r.Tools {
		n += len(tl.Name) + len(tl.Description) + len(tl.Parameters)
	}
	return textTokens(n)
}

// promptsSize estimates raw prompts: text by its bytes, token ids one each.
func promptsSize(ps []infer.Prompt) int64 {
	n, toks := 0, 0
	for _, p := range ps {
		n += len(p.Text)
		toks += len(p.Tokens)
	}
	return textTokens(n) + int64(toks)
}

// result is what the Service's methods return.
type result interface {
	*infer.Generation | *infer.Embeddings | *infer.Tokens | *infer.Text | *infer.RenderedPrompt
}

// admit runs one request through scope, budget and limits, calls call when it is
// admitted, and accounts for it when it is complete.
func admit[R result](ctx context.Context, a *admission, req request, call func(context.Context) (R, error)) (R, error) {
	c := infer.CallerFrom(ctx)
	if c == nil {
		return call(ctx)
	}
	var none R
	model := resolveModel(ctx, a.next, req.model)
	tk := &ticket{t: a.t, caller: c, model: model, requestID: infer.RequestIDFrom(ctx), start: a.t.now()}
	if model != "" && !c.AllowsModel(model) {
		err := infer.ModelNotFound(model)
		if !c.Internal {
			tk.end("", infer.Usage{}, err)
		}
		return none, err
	}
	if c.Internal {
		return call(ctx)
	}
	if err := a.t.decide(ctx, tk, req); err != nil {
		tk.end("", infer.Usage{}, err)
		return none, err
	}
	v, err := call(ctx)
	if err != nil {
		tk.end("", infer.Usage{}, err)
		return v, err
	}
	tk.settle(v)
	return v, nil
}

// resolveModel is the model a request is for: its own, or next's only model.
func resolveModel(ctx context.Context, next infer.Service, model string) string {
	if model != "" {
		return model
	}
	if ms := next.Models(ctx); len(ms) == 1 {
		return ms[0].ID
	}
	return ""
}

// ticket is one admitted (or refused) request of a caller, until it is accounted for.
type ticket struct {
	t         *Tenancy
	caller    *infer.Caller
	model     string
	requestID string
	start     time.Time

	// The limiter's decision, when the caller's limits apply.
	limiter limits.Limiter // the limiter that admitted it; nil when unlimited
	key     string
	limits  limits.Limits
	est     int64
	quota   *infer.Quota
}

// decide checks the caller's budget and limits. A nil error admits the request.
func (t *Tenancy) decide(ctx context.Context, tk *ticket, req request) error {
	c := tk.caller
	if b := t.Budgets; b != nil && c.Budget > 0 {
		if used, _ := b.Used(c.ID); used >= c.Budget {
			t.counters.limit(limitBudget)
			return overBudget(c, used, t.now())
		}
	}
	lim := limits.PerMinute(c.RPM, c.TPM)
	if lim.Unlimited() {
		return nil
	}
	key, est := limits.Key(c.ID, tk.model), req.estimate(c.TPM)
	d, decider, err := t.limiter.allow(ctx, key, lim, limits.Cost{Requests: 1, Tokens: est})
	if err != nil {
		t.counters.limit(limitUnavailable)
		return limiterDown(err)
	}
	if !d.Allowed {
		t.counters.limit(limitRefused)
		return refusal(c, tk.model, d, est)
	}
	t.counters.limit(limitAllowed)
	tk.limiter, tk.key, tk.limits, tk.est, tk.quota = decider, key, lim, est, quotaOf(d)
	return nil
}

// settle sets the result's quota and accounts for it once it is complete.
func (tk *ticket) settle(v any) {
	var served *infer.Served
	var usage infer.Usage
	switch v := v.(type) {
	case *infer.Generation:
		v.Quota = tk.quota
		v.OnEnd(func(s infer.Summary) { tk.end(v.Model, computed(v.Served, s.Usage), s.Err) })
		return
	case *infer.Embeddings:
		served, usage = &v.Served, computed(v.Served, v.Usage)
	case *infer.Tokens:
		served = &v.Served
	case *infer.Text:
		served = &v.Served
	case *infer.RenderedPrompt:
		served = &v.Served
	}
	served.Quota = tk.quota
	tk.end(served.Model, usage, nil)
}

// computed is the usage a request is charged: zero for a cache hit, which no model
// computed (its result still reports the first answer's usage).
func computed(sv infer.Served, u infer.Usage) infer.Usage {
	if sv.Cache == infer.CacheHit {
		return infer.Usage{}
	}
	return u
}

// end accounts for a complete request: served is the model that answered ("" when
// none did), err why it failed.
func (tk *ticket) end(served string, u infer.Usage, err error) {
	t, total := tk.t, int64(u.Total())
	if tk.limiter != nil && tk.limits.Tokens > 0 {
		if delta := total - tk.est; delta != 0 {
			go t.limiter.charge(tk.limiter, tk.key, tk.limits, delta)
		}
	}
	if t.Budgets != nil {
		t.Budgets.Add(tk.caller.ID, total)
	}
	if t.Ledger == nil {
		return
	}
	status := 200
	if err != nil {
		status = infer.KindOf(err).HTTPStatus()
	}
	model := served
	if model == "" {
		model = tk.model
	}
	t.Ledger.Record(postgres.UsageRecord{
		RequestID: tk.requestID, KeyID: tk.caller.ID, Model: model,
		PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens,
		LatencyMS: int(t.now().Sub(tk.start).Milliseconds()), StatusCode: status, CreatedAt: tk.start,
	})
}
