package infer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
)

// Kind classifies an error for every front end: each transport maps it to its own
// vocabulary (an HTTP status and OpenAI or Anthropic error type, a gRPC code, a
// GraphQL extensions.code) in exactly one table.
type Kind int

// Error kinds.
const (
	// Internal is a bug or an unexpected failure (500).
	Internal Kind = iota
	// InvalidArgument is a request the server will never accept as sent (400).
	InvalidArgument
	// ContextOverflow is a prompt (plus max_tokens) longer than the context (400).
	ContextOverflow
	// NotFound is an unknown model, or one outside the caller's scope (404).
	NotFound
	// Unauthenticated is a missing, malformed, wrong, revoked or expired key (401).
	Unauthenticated
	// PermissionDenied is a caller that may not do this at all (403).
	PermissionDenied
	// Overloaded is a full queue: retry later or elsewhere (429).
	Overloaded
	// RateLimited is a key over its requests or tokens per minute (429).
	RateLimited
	// QuotaExceeded is a key over its monthly token budget (429).
	QuotaExceeded
	// Unavailable is a model that is loading, draining or shutting down, or a
	// dependency (key store, limiter) that cannot answer now (503).
	Unavailable
	// UpstreamFailed is a remote node that did not answer (502).
	UpstreamFailed
	// DeadlineExceeded is an upstream or deadline that ran out of time (504).
	DeadlineExceeded
	// Cancelled is a request whose client went away (499, never seen by it).
	Cancelled
)

var kindNames = [...]string{"internal", "invalid_argument", "context_overflow", "not_found", "unauthenticated",
	"permission_denied", "overloaded", "rate_limited", "quota_exceeded", "unavailable", "upstream_failed",
	"deadline_exceeded", "cancelled"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Retryable reports whether another upstream may answer what this one refused: the
// router retries these as long as nothing was sent to the client.
func (k Kind) Retryable() bool {
	switch k {
	case Overloaded, Unavailable, UpstreamFailed, DeadlineExceeded:
		return true
	}
	return false
}

// HTTPStatus is the kind's HTTP status: what the REST front end sends and the usage
// ledger records for every front end (its status_code column).
func (k Kind) HTTPStatus() int {
	switch k {
	case InvalidArgument, ContextOverflow:
		return 400
	case Unauthenticated:
		return 401
	case PermissionDenied:
		return 403
	case NotFound:
		return 404
	case Overloaded, RateLimited, QuotaExceeded:
		return 429
	case Cancelled:
		return 499
	case UpstreamFailed:
		return 502
	case Unavailable:
		return 503
	case DeadlineExceeded:
		return 504
	}
	return 500
}

// Error is an error with everything a front end reports about it.
type Error struct {
	Kind Kind
	// Code is a machine-readable code ("model_not_found", "overloaded", ...), or "".
	Code string
	// Param names the request field at fault ("messages[2].role"), or "".
	Param string
	// Message is for the client: it never holds keys or prompt text.
	Message string
	// RetryAfter, when positive, tells the client when to retry.
	RetryAfter time.Duration
	// Quota is the caller's rate-limit state when a limit refused the request.
	Quota *Quota
	// Err is the cause, if any (not shown to clients beyond Message).
	Err error
}

func (e *Error) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("%s (param %s): %s", e.Kind, e.Param, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Message)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an error of kind k naming param.
func Errorf(k Kind, param, format string, args ...any) *Error {
	return &Error{Kind: k, Param: param, Message: fmt.Sprintf(format, args...)}
}

// Invalid is an InvalidArgument error naming the field at fault.
func Invalid(param, format string, args ...any) *Error {
	return Errorf(InvalidArgument, param, format, args...)
}

// ModelNotFound is the answer for a model nobody serves here, and for a model outside
// the caller's scope (the same answer, so a key cannot probe what exists).
func ModelNotFound(model string) *Error {
	return &Error{Kind: NotFound, Param: "model", Code: "model_not_found",
		Message: fmt.Sprintf("The model %q does not exist on this server; GET /v1/models lists the models served.", model)}
}

// Retry-After hints.
const (
	retryOverloaded = time.Second
	retryNotReady   = 5 * time.Second
)

// AsError classifies err: an *Error is returned as is; the engine's, scheduler's and
// service's sentinel errors get their kind; anything else is Internal. param names
// the request field that errors of the request's content (invalid values, context
// overflow) are blamed on.
func AsError(err error, param string) *Error {
	var e *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		if e == nil { // a typed nil in an error: a bug of the caller, never a crash here
			return &Error{Kind: Internal, Message: "internal error: nil error value"}
		}
		return e
	case errors.Is(err, sched.ErrOverloaded):
		return &Error{Kind: Overloaded, Code: "overloaded", Message: err.Error() + "; retry later", RetryAfter: retryOverloaded, Err: err}
	case errors.Is(err, sched.ErrContextOverflow):
		return &Error{Kind: ContextOverflow, Param: param, Code: "context_length_exceeded", Message: err.Error(), Err: err}
	case errors.Is(err, service.ErrEmbeddingsOff):
		return &Error{Kind: InvalidArgument, Param: "model", Code: "embeddings_disabled", Message: err.Error(), Err: err}
	case errors.Is(err, service.ErrNoChatTemplate), errors.Is(err, engine.ErrUnknownTemplate):
		return &Error{Kind: InvalidArgument, Param: "model", Code: "chat_template_unavailable",
			Message: err.Error() + " (use /v1/completions with a raw prompt)", Err: err}
	case errors.Is(err, sched.ErrInvalidRequest), errors.Is(err, engine.ErrInvalidArgument):
		return &Error{Kind: InvalidArgument, Param: param, Message: err.Error(), Err: err}
	case errors.Is(err, service.ErrNotReady):
		return &Error{Kind: Unavailable, Code: "model_not_ready", Message: err.Error(), RetryAfter: retryNotReady, Err: err}
	case errors.Is(err, sched.ErrClosed), errors.Is(err, engine.ErrClosed):
		return &Error{Kind: Unavailable, Code: "shutting_down", Message: "the model is shutting down; retry on another node",
			RetryAfter: retryNotReady, Err: err}
	case errors.Is(err, context.Canceled):
		return ErrClientGone
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Kind: DeadlineExceeded, Code: "deadline_exceeded", Message: "the request's deadline passed", Err: err}
	}
	return &Error{Kind: Internal, Message: "internal error: " + err.Error(), Err: err}
}

// ErrClientGone ends a request whose client left while it was being served.
var ErrClientGone = &Error{Kind: Cancelled, Code: "client_closed_request",
	Message: "the client closed the connection; the generation was cancelled"}

// KindOf is the kind of a non-nil err (Internal for errors AsError does not know).
func KindOf(err error) Kind {
	if e := AsError(err, ""); e != nil {
		return e.Kind
	}
	return Internal
}
