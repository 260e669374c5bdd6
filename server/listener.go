package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// HTTPConfig holds the limits of one fasthttp listener.
type HTTPConfig struct {
	ReadTimeout  time.Duration // reading one request
	WriteTimeout time.Duration // writing a response (each chunk of a stream)
	IdleTimeout  time.Duration // keep-alive connections
	MaxBodyBytes int           // larger bodies get 413
}

// Listener is one fasthttp server on one address.
type Listener struct {
	name string
	srv  *fasthttp.Server
	ln   net.Listener
	log  zerolog.Logger
	done chan error
}

// NewListener prepares a server for handler h; name labels its logs ("gateway" or a
// model name).
func NewListener(name string, h fasthttp.RequestHandler, c HTTPConfig, log zerolog.Logger) *Listener {
	l := &Listener{name: name, log: log.With().Str("listener", name).Logger(), done: make(chan error, 1)}
	l.srv = &fasthttp.Server{
		Handler:                       h,
		Name:                          "hxp",
		ReadTimeout:                   c.ReadTimeout,
		WriteTimeout:                  c.WriteTimeout,
		IdleTimeout:                   c.IdleTimeout,
		MaxRequestBodySize:            c.MaxBodyBytes,
		CloseOnShutdown:               true,
		DisablePreParseMultipartForm:  true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: false,
		ErrorHandler:                  errorHandler,
		Logger:                        fasthttpLogger{l.log},
	}
	return l
}

// errorHandler answers requests fasthttp could not read, in OpenAI's error format.
func errorHandler(ctx *fasthttp.RequestCtx, err error) {
	var ae *APIError
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		ae = toAPIError(err, "")
	case isTimeout(err):
		ae = &APIError{Status: fasthttp.StatusRequestTimeout, Type: typeInvalidRequest, Code: "request_timeout",
			Message: "the request was not received in time (server.read_timeout)"}
	default:
		ae = badRequest("", "malformed HTTP request: %v", err)
	}
	writeError(ctx, ae, "")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Listen binds addr ("host:port"; port 0 picks a free port).
func (l *Listener) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s (%s): %w", addr, l.name, err)
	}
	l.ln = ln
	return nil
}

// Addr is the bound address (after Listen or Serve).
func (l *Listener) Addr() net.Addr {
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// Serve serves on ln (or the address bound by Listen when ln is nil) in the
// background. Wait returns its result.
func (l *Listener) Serve(ln net.Listener) {
	if ln != nil {
		l.ln = ln
	}
	l.log.Info().Str("addr", l.ln.Addr().String()).Msg("listening")
	go func() { l.done <- l.srv.Serve(l.ln) }()
}

// Wait returns when the server stops serving (after Shutdown, or on an error).
func (l *Listener) Wait() error { return <-l.done }

// Shutdown stops accepting connections, closes idle ones, and waits until the
// responses in flight (streams included) are complete or ctx ends.
func (l *Listener) Shutdown(ctx context.Context) error {
	err := l.srv.ShutdownWithContext(ctx)
	if err != nil {
		return fmt.Errorf("shutdown %s: %w", l.name, err)
	}
	return nil
}

// fasthttpLogger routes fasthttp's own messages to zerolog.
type fasthttpLogger struct{ log zerolog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.log.Warn().Str("component", "fasthttp").Msg(fmt.Sprintf(format, args...))
}
