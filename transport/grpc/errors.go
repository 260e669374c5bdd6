package grpc

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hxp-ai/hxp/infer"
)

// kindCodes is the one table from the core's error kinds to gRPC status codes.
var kindCodes = map[infer.Kind]codes.Code{
	infer.Internal:         codes.Internal,
	infer.InvalidArgument:  codes.InvalidArgument,
	infer.ContextOverflow:  codes.InvalidArgument,
	infer.NotFound:         codes.NotFound,
	infer.Unauthenticated:  codes.Unauthenticated,
	infer.PermissionDenied: codes.PermissionDenied,
	infer.Overloaded:       codes.ResourceExhausted,
	infer.RateLimited:      codes.ResourceExhausted,
	infer.QuotaExceeded:    codes.ResourceExhausted,
	infer.Unavailable:      codes.Unavailable,
	infer.UpstreamFailed:   codes.Unavailable,
	infer.DeadlineExceeded: codes.DeadlineExceeded,
	infer.Cancelled:        codes.Canceled,
}

// CodeOf is the gRPC code of an error kind (Internal for kinds not in the table).
func CodeOf(k infer.Kind) codes.Code {
	if c, ok := kindCodes[k]; ok {
		return c
	}
	return codes.Internal
}

// ErrorDomain is google.rpc.ErrorInfo's domain in every error of this API.
const ErrorDomain = "hxp.ai"

// defaultRetry is the RetryInfo delay of a ResourceExhausted error whose cause gave
// none.
const defaultRetry = time.Second

// statusOf is err as a gRPC status: the code from the table, the core's message (it
// never holds keys or prompts), google.rpc.ErrorInfo (reason: the REST error code or
// the kind; metadata param: the field at fault) and, when the client should retry
// later, google.rpc.RetryInfo (always for ResourceExhausted).
func statusOf(err error) *status.Status {
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return st // a status already (from gRPC itself)
	}
	e := infer.AsError(err, "")
	code := CodeOf(e.Kind)
	st := status.New(code, e.Message)
	reason := e.Code
	if reason == "" {
		reason = e.Kind.String()
	}
	info := &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}
	if e.Param != "" {
		info.Metadata = map[string]string{"param": e.Param}
	}
	details := []protoadapt.MessageV1{info}
	retry := e.RetryAfter
	if retry <= 0 && code == codes.ResourceExhausted {
		retry = defaultRetry
	}
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	if withDetails, derr := st.WithDetails(details...); derr == nil {
		return withDetails
	}
	return st
}

// ctxStatus is the status of a call whose context ended (the client cancelled, or its
// deadline passed), or nil while it runs.
func ctxStatus(ctx context.Context) error {
	err := ctx.Err()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed; the generation was cancelled")
	}
	return status.Error(codes.Canceled, "the call was cancelled; the generation was cancelled")
}
