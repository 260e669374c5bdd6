package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
)

// OpenAI error types (the "type" field of an error object).
const (
	typeInvalidRequest = "invalid_request_error"
	typeAuthentication = "authentication_error"
	typeNotFound       = "not_found_error"
	typeRateLimit      = "rate_limit_error"
	typeUnavailable    = "service_unavailable_error"
	typeServer         = "server_error"
)

// APIError is an error with everything the API reports about it: the HTTP status and
// the fields of the OpenAI error object. Handlers return it for problems they find
// themselves; every other error becomes one in toAPIError.
type APIError struct {
	Status  int
	Type    string
	Message string
	Param   string // the request field at fault, "" for none
	Code    string // machine-readable code, "" for none
	// RetryAfter, when positive, is sent as the Retry-After header (429, 503).
	RetryAfter time.Duration
	// Allow lists the methods of a 405.
	Allow string
}

func (e *APIError) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("%d %s (param %s): %s", e.Status, e.Type, e.Param, e.Message)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message)
}

// badRequest is a 400 naming the field at fault.
func badRequest(param, format string, args ...any) *APIError {
	return &APIError{Status: fasthttp.StatusBadRequest, Type: typeInvalidRequest, Param: param, Message: fmt.Sprintf(format, args...)}
}

// modelNotFound is the 404 for a model nobody serves here.
func modelNotFound(model string) *APIError {
	return &APIError{Status: fasthttp.StatusNotFound, Type: typeInvalidRequest, Param: "model", Code: "model_not_found",
		Message: fmt.Sprintf("The model %q does not exist on this server; GET /v1/models lists the models served.", model)}
}

// statusClientClosed is the status logged and counted for a request whose client
// closed the connection before the response (nginx's 499); the client never sees it.
const statusClientClosed = 499

// errClientGone ends a request whose client left while it was being generated.
var errClientGone = &APIError{Status: statusClientClosed, Type: typeInvalidRequest, Code: "client_closed_request",
	Message: "the client closed the connection; the generation was cancelled"}

// Retry-After hints.
const (
	retryOverloaded = time.Second
	retryNotReady   = 5 * time.Second
)

// toAPIError maps any error to its HTTP status and OpenAI error object. It is the one
// place where error kinds meet statuses. param names the request field that errors of
// the request's content (invalid values, context overflow) are blamed on.
func toAPIError(err error, param string) *APIError {
	var ae *APIError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &se):
		return badRequest("", "request body is not valid JSON: %v (at byte %d)", se, se.Offset)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = param
		}
		return badRequest(field, "%s: expected %s, got a JSON %s", orBody(field), te.Type.String(), te.Value)
	case errors.Is(err, sched.ErrOverloaded):
		return &APIError{Status: fasthttp.StatusTooManyRequests, Type: typeRateLimit, Code: "overloaded",
			Message: err.Error() + "; retry later", RetryAfter: retryOverloaded}
	case errors.Is(err, sched.ErrContextOverflow):
		return &APIError{Status: fasthttp.StatusBadRequest, Type: typeInvalidRequest, Param: param,
			Code: "context_length_exceeded", Message: err.Error()}
	case errors.Is(err, service.ErrEmbeddingsOff):
		return &APIError{Status: fasthttp.StatusBadRequest, Type: typeInvalidRequest, Param: "model",
			Code: "embeddings_disabled", Message: err.Error()}
	case errors.Is(err, service.ErrNoChatTemplate), errors.Is(err, engine.ErrUnknownTemplate):
		return &APIError{Status: fasthttp.StatusBadRequest, Type: typeInvalidRequest, Param: "model",
			Code: "chat_template_unavailable", Message: err.Error() + " (use /v1/completions with a raw prompt)"}
	case errors.Is(err, sched.ErrInvalidRequest), errors.Is(err, engine.ErrInvalidArgument):
		return &APIError{Status: fasthttp.StatusBadRequest, Type: typeInvalidRequest, Param: param, Message: err.Error()}
	case errors.Is(err, service.ErrNotReady):
		return &APIError{Status: fasthttp.StatusServiceUnavailable, Type: typeUnavailable, Code: "model_not_ready",
			Message: err.Error(), RetryAfter: retryNotReady}
	case errors.Is(err, sched.ErrClosed), errors.Is(err, engine.ErrClosed):
		return &APIError{Status: fasthttp.StatusServiceUnavailable, Type: typeUnavailable, Code: "shutting_down",
			Message: "the model is shutting down; retry on another node", RetryAfter: retryNotReady}
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return &APIError{Status: fasthttp.StatusRequestEntityTooLarge, Type: typeInvalidRequest, Code: "body_too_large",
			Message: "request body is larger than this server accepts (server.max_body_bytes)"}
	default:
		return &APIError{Status: fasthttp.StatusInternalServerError, Type: typeServer, Message: "internal error: " + err.Error()}
	}
}

func orBody(field string) string {
	if field == "" {
		return "request body"
	}
	return field
}

// errorBody is the OpenAI error envelope.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *APIError) body() errorBody {
	o := errorObject{Message: e.Message, Type: e.Type}
	if e.Param != "" {
		o.Param = &e.Param
	}
	if e.Code != "" {
		o.Code = &e.Code
	}
	return errorBody{Error: o}
}

// writeError sends err as an OpenAI error response.
func writeError(ctx *fasthttp.RequestCtx, err error, param string) {
	ae := toAPIError(err, param)
	if ae.RetryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(int((ae.RetryAfter+time.Second-1)/time.Second)))
	}
	if ae.Allow != "" {
		ctx.Response.Header.Set("Allow", ae.Allow)
	}
	if info := infoOf(ctx); info != nil {
		info.ErrType = ae.Type
		info.ErrCode = ae.Code
	}
	writeJSON(ctx, ae.Status, ae.body())
}

// writeJSON sends v as a JSON response with the given status.
func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = fasthttp.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: errorObject{Message: "internal error: encode response: " + err.Error(), Type: typeServer}})
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}
