package rest

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Health is the readiness and detail reports of a process (app's observability
// implements it); the REST transport serves them as JSON.
type Health interface {
	// Ready reports whether the process should receive traffic, and why.
	Ready() (ok bool, report any)
	// Details is every check's latest result and each model's state.
	Details() any
}

// ObservabilityRoutes are GET /metrics (the registry in Prometheus' text format),
// /health/ready (200 or 503) and /health/details.
func ObservabilityRoutes(reg prometheus.Gatherer, h Health, log zerolog.Logger) []Route {
	metrics := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: promLogger{log}, ErrorHandling: promhttp.ContinueOnError}))
	return []Route{
		{Method: "GET", Path: "/metrics", Handler: metrics},
		{Method: "GET", Path: "/health/ready", Handler: func(ctx *fasthttp.RequestCtx) {
			ok, rep := h.Ready()
			status := fasthttp.StatusOK
			if !ok {
				status = fasthttp.StatusServiceUnavailable
			}
			ctx.Response.Header.Set("Cache-Control", "no-store")
			writeJSON(ctx, status, rep)
		}},
		{Method: "GET", Path: "/health/details", Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.Set("Cache-Control", "no-store")
			writeJSON(ctx, fasthttp.StatusOK, h.Details())
		}},
	}
}

// promLogger routes promhttp's errors (a collector that failed) to zerolog.
type promLogger struct{ log zerolog.Logger }

func (p promLogger) Println(v ...any) {
	p.log.Warn().Str("component", "metrics").Msg(strings.TrimSpace(fmt.Sprintln(v...)))
}
