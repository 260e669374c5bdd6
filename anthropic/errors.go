package anthropic

import (
	"net/http"
	"strings"

	"github.com/hxp-ai/hxp/infer"
)

// Anthropic error types (the error object's "type").
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeTimeout        = "timeout_error"
	TypeOverloaded     = "overloaded_error"
	TypeAPI            = "api_error"
)

// StatusOverloaded is Anthropic's status of an overloaded server (not a standard
// HTTP status; its SDKs retry it).
const StatusOverloaded = 529

// errorKind is how one kind is answered.
type errorKind struct {
	typ    string
	status int
}

// errorKinds is the one table from the core's error kinds to Anthropic's error types
// and HTTP statuses.
var errorKinds = map[infer.Kind]errorKind{
	infer.Internal:         {TypeAPI, http.StatusInternalServerError},
	infer.InvalidArgument:  {TypeInvalidRequest, http.StatusBadRequest},
	infer.ContextOverflow:  {TypeInvalidRequest, http.StatusBadRequest},
	infer.NotFound:         {TypeNotFound, http.StatusNotFound},
	infer.Unauthenticated:  {TypeAuthentication, http.StatusUnauthorized},
	infer.PermissionDenied: {TypePermission, http.StatusForbidden},
	infer.Overloaded:       {TypeOverloaded, StatusOverloaded},
	infer.RateLimited:      {TypeRateLimit, http.StatusTooManyRequests},
	infer.QuotaExceeded:    {TypeRateLimit, http.StatusTooManyRequests},
	infer.Unavailable:      {TypeAPI, http.StatusServiceUnavailable},
	infer.UpstreamFailed:   {TypeAPI, http.StatusBadGateway},
	infer.DeadlineExceeded: {TypeTimeout, http.StatusGatewayTimeout},
	infer.Cancelled:        {TypeInvalidRequest, 499},
}

// ErrorBody is Anthropic's error envelope: the body of an error response and the
// data of a stream's error event.
type ErrorBody struct {
	Type  string      `json:"type"`
	Error ErrorObject `json:"error"`
}

// ErrorObject is the error member of the envelope.
type ErrorObject struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// ErrorOf renders err as Anthropic's error envelope with its HTTP status. The field at
// fault, when the core names one, is in the message.
func ErrorOf(err error) (int, ErrorBody) {
	e := infer.AsError(err, "")
	k, ok := errorKinds[e.Kind]
	if !ok {
		k = errorKinds[infer.Internal]
	}
	msg := e.Message
	if e.Param != "" && !strings.Contains(msg, e.Param) {
		msg = e.Param + ": " + msg
	}
	return k.status, ErrorBody{Type: "error", Error: ErrorObject{Type: k.typ, Message: msg}}
}

// ErrorEvent is a stream's error event.
func ErrorEvent(err error) Event {
	_, body := ErrorOf(err)
	return Event{Name: EventError, Data: body}
}
