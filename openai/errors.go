package openai

import (
	"github.com/hxp-ai/hxp/infer"
)

// OpenAI error types (the "type" field of an error object).
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeQuota          = "insufficient_quota"
	TypeUnavailable    = "service_unavailable_error"
	TypeServer         = "server_error"
)

// errorTypes is the one table from the core's error kinds to OpenAI's error types; the
// HTTP status is the kind's (infer.Kind.HTTPStatus).
var errorTypes = map[infer.Kind]string{
	infer.Internal:         TypeServer,
	infer.InvalidArgument:  TypeInvalidRequest,
	infer.ContextOverflow:  TypeInvalidRequest,
	infer.NotFound:         TypeInvalidRequest, // OpenAI's unknown model and URL are invalid_request_error
	infer.Unauthenticated:  TypeAuthentication,
	infer.PermissionDenied: TypeInvalidRequest,
	infer.Overloaded:       TypeRateLimit,
	infer.RateLimited:      TypeRateLimit,
	infer.QuotaExceeded:    TypeQuota,
	infer.Unavailable:      TypeUnavailable,
	infer.UpstreamFailed:   TypeUnavailable,
	infer.DeadlineExceeded: TypeUnavailable,
	infer.Cancelled:        TypeInvalidRequest,
}

// ErrorBody is the OpenAI error envelope.
type ErrorBody struct {
	Error ErrorObject `json:"error"`
}

// ErrorObject is the error member of the envelope.
type ErrorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// ErrorOf renders err as OpenAI's error envelope with its HTTP status.
func ErrorOf(err error) (int, ErrorBody) {
	e := infer.AsError(err, "")
	o := ErrorObject{Message: e.Message, Type: errorTypes[e.Kind]}
	if o.Type == "" {
		o.Type = TypeServer
	}
	if e.Param != "" {
		o.Param = &e.Param
	}
	if e.Code != "" {
		o.Code = &e.Code
	}
	return e.Kind.HTTPStatus(), ErrorBody{Error: o}
}

// KindOf is the core's kind of an OpenAI error answered with status (the reverse of
// the table, for errors relayed from other nodes).
func KindOf(status int, typ string) infer.Kind {
	switch status {
	case 400:
		return infer.InvalidArgument
	case 401:
		return infer.Unauthenticated
	case 403:
		return infer.PermissionDenied
	case 404:
		return infer.NotFound
	case 429:
		switch typ {
		case TypeQuota:
			return infer.QuotaExceeded
		case TypeRateLimit:
			// overloaded and rate_limit_exceeded share the type: the code tells them apart
			return infer.Overloaded
		}
		return infer.RateLimited
	case 499:
		return infer.Cancelled
	case 502:
		return infer.UpstreamFailed
	case 503:
		return infer.Unavailable
	case 504:
		return infer.DeadlineExceeded
	}
	if status >= 500 {
		return infer.Internal
	}
	return infer.InvalidArgument
}

// ErrorFrom converts an error envelope answered with status back into the core's
// error (context_length_exceeded and rate_limit_exceeded keep their kinds).
func ErrorFrom(status int, b ErrorBody) *infer.Error {
	e := &infer.Error{Kind: KindOf(status, b.Error.Type), Message: b.Error.Message}
	if b.Error.Param != nil {
		e.Param = *b.Error.Param
	}
	if b.Error.Code != nil {
		e.Code = *b.Error.Code
	}
	switch e.Code {
	case "context_length_exceeded":
		e.Kind = infer.ContextOverflow
	case "rate_limit_exceeded":
		e.Kind = infer.RateLimited
	}
	return e
}
