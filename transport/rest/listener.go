package rest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/infer"
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
	name    string
	srv     *fasthttp.Server
	handler atomic.Pointer[fasthttp.RequestHandler] // what srv serves (SetHandler)
	ln      net.Listener
	log     zerolog.Logger
	done    chan error
}

// NewListener prepares a server for handler h; name labels its logs ("gateway" or a
// model name).
func NewListener(name string, h fasthttp.RequestHandler, c HTTPConfig, log zerolog.Logger) *Listener {
	l := &Listener{name: name, log: log.With().Str("listener", name).Logger(), done: make(chan error, 1)}
	l.handler.Store(&h)
	l.srv = &fasthttp.Server{
		Handler:                       func(ctx *fasthttp.RequestCtx) { (*l.handler.Load())(ctx) },
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
		SecureErrorLogMessage:         true, // a second safeguard: fasthttp's own messages without request contents
		Logger:                        newSafeLogger(l.log, time.Now),
	}
	return l
}

// errorHandler answers requests fasthttp could not read, in OpenAI's error format.
// fasthttp's errors may quote the raw request headers (an Authorization header
// included), so their text never reaches the client or the log.
func errorHandler(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, &statusError{status: fasthttp.StatusRequestEntityTooLarge, err: &infer.Error{Kind: infer.InvalidArgument,
			Code: "body_too_large", Message: "request body is larger than this server accepts (server.max_body_bytes)"}})
	case isTimeout(err):
		writeError(ctx, &statusError{status: fasthttp.StatusRequestTimeout, err: &infer.Error{Kind: infer.InvalidArgument,
			Code: "request_timeout", Message: "the request was not received in time (server.read_timeout)"}})
	default:
		writeError(ctx, infer.Invalid("", "malformed HTTP request (headers or framing could not be parsed)"))
	}
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

// safeLogger routes fasthttp's own messages to zerolog without their arguments:
// fasthttp formats connection errors with the raw request-header buffer, which holds
// the client's Authorization header when the headers were cut off or malformed. Only
// the message's fixed text is logged, and at most logBurst lines per logWindow (a
// flood of broken connections must not flood the log); the next line logged says how
// many were suppressed.
type safeLogger struct {
	log zerolog.Logger
	now func() time.Time

	mu         sync.Mutex
	windowEnds time.Time
	logged     int
	suppressed int
}

const (
	logBurst  = 10
	logWindow = 10 * time.Second
)

func newSafeLogger(log zerolog.Logger, now func() time.Time) *safeLogger {
	return &safeLogger{log: log, now: now}
}

// Printf implements fasthttp.Logger: args are dropped, never formatted.
func (f *safeLogger) Printf(format string, _ ...any) {
	now := f.now()
	f.mu.Lock()
	if now.After(f.windowEnds) {
		f.windowEnds, f.logged = now.Add(logWindow), 0
	}
	if f.logged >= logBurst {
		f.suppressed++
		f.mu.Unlock()
		return
	}
	f.logged++
	suppressed := f.suppressed
	f.suppressed = 0
	f.mu.Unlock()
	ev := f.log.Warn().Str("component", "fasthttp").Str("event", messageOf(format))
	if suppressed > 0 {
		ev = ev.Int("suppressed", suppressed)
	}
	ev.Msg("connection error (details withheld: they may hold request headers)")
}

// messageOf is the fixed text of a format: everything before its first verb.
func messageOf(format string) string {
	if i := strings.IndexByte(format, '%'); i >= 0 {
		format = format[:i]
	}
	return strings.TrimRight(strings.TrimSpace(format), ":")
}

// Name labels the listener ("gateway" or a model name).
func (l *Listener) Name() string { return l.name }

// SetHandler makes the listener serve h from its next request on, keeping its
// address and connections (a model reloaded with a changed entry on the same port);
// requests already running finish with the handler they began with.
func (l *Listener) SetHandler(h fasthttp.RequestHandler) { l.handler.Store(&h) }

// Close releases a bound address that was never served.
func (l *Listener) Close() error {
	if l.ln == nil {
		return nil
	}
	return l.ln.Close()
}
