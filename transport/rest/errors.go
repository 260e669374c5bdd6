package rest

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
)

// statusError is an error of the HTTP transport itself, whose status is not its
// kind's: 405 (with Allow), 408 and 413.
type statusError struct {
	err    *infer.Error
	status int
	allow  string
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// writeError sends err as an OpenAI error response: the status and body from the one
// table in package openai, Retry-After, the rate-limit headers of a refusal, and a
// Bearer challenge with 401.
func writeError(ctx *fasthttp.RequestCtx, err error) {
	e := infer.AsError(err, "")
	status, body := openai.ErrorOf(e)
	if se, ok := err.(*statusError); ok {
		status = se.status
		if se.allow != "" {
			ctx.Response.Header.Set("Allow", se.allow)
		}
	}
	if e.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	if e.Quota != nil {
		setQuotaHeaders(&ctx.Response.Header, e.Quota)
	}
	if e.Kind == infer.Unauthenticated {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="hxp"`)
	}
	if info := infoOf(ctx); info != nil {
		info.ErrType, info.ErrCode = body.Error.Type, e.Code
	}
	writeJSON(ctx, status, body)
}

// writeJSON sends v as a JSON response with the given status.
func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = fasthttp.StatusInternalServerError
		_, eb := openai.ErrorOf(&infer.Error{Kind: infer.Internal, Message: "internal error: encode response: " + err.Error()})
		b, _ = json.Marshal(eb)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// setQuotaHeaders adds OpenAI's rate-limit headers for the limited dimensions.
func setQuotaHeaders(h *fasthttp.ResponseHeader, q *infer.Quota) {
	for _, b := range []struct {
		name string
		b    infer.Bucket
	}{{"requests", q.Requests}, {"tokens", q.Tokens}} {
		if b.b.Limit == 0 {
			continue
		}
		h.Set("X-Ratelimit-Limit-"+b.name, strconv.FormatInt(b.b.Limit, 10))
		h.Set("X-Ratelimit-Remaining-"+b.name, strconv.FormatInt(b.b.Remaining, 10))
		h.Set("X-Ratelimit-Reset-"+b.name, resetString(b.b.Reset))
	}
}

// resetString formats a reset time as OpenAI does ("1s", "6m0s", "20ms").
func resetString(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10) + "ms"
	}
	return d.Round(time.Millisecond).String()
}
