package graphql

import (
	"context"
	"encoding/json"
	"mime"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/valyala/fasthttp"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/hxp-ai/hxp/infer"
)

// post serves a query or mutation: POST application/json. The answer is HTTP 200 with
// data and errors, as GraphQL over HTTP has it, except for what fails before
// execution starts: a missing or refused key (401, or the key store's status), a body
// that is not a GraphQL request (400) or not JSON (415).
func (s *Server) post(ctx *fasthttp.RequestCtx) {
	if mt, _, err := mime.ParseMediaType(string(ctx.Request.Header.ContentType())); err != nil || mt != "application/json" {
		writeRefusal(ctx, fasthttp.StatusUnsupportedMediaType, &infer.Error{Kind: infer.InvalidArgument,
			Message: "send GraphQL requests as POST with Content-Type: application/json"})
		return
	}
	caller, err := s.authenticate(authorization(&ctx.Request.Header))
	if err != nil {
		e := infer.AsError(err, "")
		writeRefusal(ctx, e.Kind.HTTPStatus(), e)
		return
	}
	p, err := decodeParams(ctx.PostBody())
	if err != nil {
		writeRefusal(ctx, fasthttp.StatusBadRequest, infer.Invalid("", "%v", err))
		return
	}
	p.ReadTime = graphql.TraceTiming{Start: time.Now(), End: time.Now()}
	c := baseContext(ctx, caller, true)
	c, cancel := context.WithCancel(c)
	defer cancel()
	writeResponse(ctx, fasthttp.StatusOK, s.run(c, p, false))
}

// run executes one operation to its single response. Subscriptions are refused unless
// stream (the WebSocket serves them).
func (s *Server) run(ctx context.Context, p *graphql.RawParams, stream bool) *graphql.Response {
	rc, errs := s.exec.CreateOperationContext(ctx, p)
	if errs != nil {
		return s.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
	}
	if !stream && rc.Operation.Operation == ast.Subscription {
		return s.exec.DispatchError(graphql.WithOperationContext(ctx, rc), gqlerror.List{
			presentError(ctx, infer.Invalid("", "subscriptions are served over WebSocket on %s (protocol graphql-transport-ws)", Path))})
	}
	h, ctx := s.exec.DispatchOperation(ctx, rc)
	return h(ctx)
}

// authorization is a request's Authorization header values.
func authorization(h *fasthttp.RequestHeader) []string {
	all := h.PeekAll(fasthttp.HeaderAuthorization)
	values := make([]string, len(all))
	for i, v := range all {
		values[i] = string(v)
	}
	return values
}

// writeRefusal answers a request refused before execution, under status: a GraphQL
// response with the error alone.
func writeRefusal(ctx *fasthttp.RequestCtx, status int, e *infer.Error) {
	if e.Kind == infer.Unauthenticated {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="hxp"`)
	}
	if e.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	// No data member: the request was not executed.
	b, _ := json.Marshal(struct {
		Errors gqlerror.List `json:"errors"`
	}{gqlerror.List{errorOf(e)}})
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func writeResponse(ctx *fasthttp.RequestCtx, status int, resp *graphql.Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		status = fasthttp.StatusInternalServerError
		b, _ = json.Marshal(&graphql.Response{Errors: gqlerror.List{errorOf(&infer.Error{Kind: infer.Internal,
			Message: "internal error: encode response: " + err.Error()})}})
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}
