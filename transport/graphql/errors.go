package graphql

import (
	"context"
	"errors"
	"math"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/hxp-ai/hxp/infer"
)

// kindCodes is the one table from the core's error kinds to GraphQL
// extensions.code values (Apollo's names where one exists).
var kindCodes = map[infer.Kind]string{
	infer.Internal:         "INTERNAL_SERVER_ERROR",
	infer.InvalidArgument:  "BAD_USER_INPUT",
	infer.ContextOverflow:  "CONTEXT_LENGTH_EXCEEDED",
	infer.NotFound:         "NOT_FOUND",
	infer.Unauthenticated:  "UNAUTHENTICATED",
	infer.PermissionDenied: "FORBIDDEN",
	infer.Overloaded:       "OVERLOADED",
	infer.RateLimited:      "RATE_LIMITED",
	infer.QuotaExceeded:    "QUOTA_EXCEEDED",
	infer.Unavailable:      "UNAVAILABLE",
	infer.UpstreamFailed:   "UPSTREAM_FAILED",
	infer.DeadlineExceeded: "DEADLINE_EXCEEDED",
	infer.Cancelled:        "CANCELLED",
}

// CodeOf is the extensions.code of an error kind (INTERNAL_SERVER_ERROR for kinds not
// in the table).
func CodeOf(k infer.Kind) string {
	if c, ok := kindCodes[k]; ok {
		return c
	}
	return kindCodes[infer.Internal]
}

// errorOf renders a core error: the message (it never holds keys or prompts) and
// extensions code (CodeOf), reason (REST's error code, when there is one), param (the
// request field at fault, in the REST spelling) and retryAfter (whole seconds, when
// the client should retry later).
func errorOf(e *infer.Error) *gqlerror.Error {
	ext := map[string]any{"code": CodeOf(e.Kind)}
	if e.Code != "" {
		ext["reason"] = e.Code
	}
	if e.Param != "" {
		ext["param"] = e.Param
	}
	if e.RetryAfter > 0 {
		ext["retryAfter"] = int(math.Ceil(e.RetryAfter.Seconds()))
	}
	return &gqlerror.Error{Message: e.Message, Extensions: ext}
}

// presentError is the executor's error presenter: the core's errors are rendered by
// errorOf at their path; errors of the GraphQL layer itself (parsing, validation,
// limits, input coercion) keep gqlgen's rendering, with code BAD_USER_INPUT when
// gqlgen gave none; anything else is classified by the core (infer.AsError).
func presentError(ctx context.Context, err error) *gqlerror.Error {
	var ie *infer.Error
	var ge *gqlerror.Error
	isCore, isGQL := errors.As(err, &ie), errors.As(err, &ge)
	if !isCore && isGQL {
		out := graphql.DefaultErrorPresenter(ctx, err)
		if out.Extensions == nil {
			out.Extensions = map[string]any{}
		}
		if _, ok := out.Extensions["code"]; !ok {
			out.Extensions["code"] = CodeOf(infer.InvalidArgument)
		}
		return out
	}
	out := errorOf(infer.AsError(err, ""))
	out.Path = graphql.GetPath(ctx)
	if isGQL && len(ge.Path) > 0 {
		out.Path, out.Locations = ge.Path, ge.Locations
	}
	return out
}
