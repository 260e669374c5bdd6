package rest

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/openai"
)

// unknownModel labels requests for a model that no upstream serves.
const unknownModel = "unknown"

// otherRoute labels requests for paths the router does not know.
const otherRoute = "other"

// upstreamBuckets span a short embeddings call to a long stream (seconds).
var upstreamBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300}

// Metrics are the HTTP layer's Prometheus metrics:
//
//   - hxp_requests_total{model,status}: model requests (chat, completions, embeddings,
//     tokenize, detokenize) on the gateway and on model listeners, by the model they
//     were routed to (or named, when refused before routing) and the HTTP status. A
//     stream that fails after its 200 header counts with the status of its error.
//   - hxp_gateway_requests_total{route,status}: every request to the gateway.
//   - hxp_gateway_upstream_duration_seconds{model}: from handing a request to its
//     upstream until the response is complete (the last byte of a stream).
//
// A Metrics is a prometheus.Collector; register it once.
type Metrics struct {
	requests   *prometheus.CounterVec
	gwRequests *prometheus.CounterVec
	upstream   *prometheus.HistogramVec
}

// NewMetrics returns unregistered HTTP metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hxp_requests_total",
			Help: "Model requests by model and HTTP status (gateway and model listeners)."}, []string{"model", "status"}),
		gwRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hxp_gateway_requests_total",
			Help: "Requests to the gateway by route and HTTP status."}, []string{"route", "status"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hxp_gateway_upstream_duration_seconds",
			Help:    "Time from handing a request to its model's upstream until the response is complete.",
			Buckets: upstreamBuckets}, []string{"model"}),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.gwRequests.Describe(ch)
	m.upstream.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.gwRequests.Collect(ch)
	m.upstream.Collect(ch)
}

// link returns the chain link that counts g's requests. It sits right after the access
// log, so it sees every request, those refused by auth and those that panicked.
func (m *Metrics) link(s *Server) Middleware {
	l := &metricsLink{m: m, s: s, exact: map[string]string{}}
	for _, p := range modelPaths {
		l.exact[p] = p
	}
	l.exact["/v1/models"] = "/v1/models"
	l.exact["/health"] = "/health"
	l.prefixes = append(l.prefixes, routePrefix{"/v1/models/", "/v1/models/{id}"})
	for _, rt := range s.opts.Routes {
		if strings.HasSuffix(rt.Path, "/") && rt.Path != "/" {
			l.prefixes = append(l.prefixes, routePrefix{rt.Path, rt.Path + "*"})
		} else {
			l.exact[rt.Path] = rt.Path
		}
	}
	return l
}

type routePrefix struct{ prefix, label string }

// metricsLink is the Middleware of Metrics for one gateway or model listener.
type metricsLink struct {
	m        *Metrics
	s        *Server
	exact    map[string]string
	prefixes []routePrefix
}

// Name implements Middleware.
func (*metricsLink) Name() string { return "metrics" }

// Wrap implements Middleware.
func (l *metricsLink) Wrap(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		info := infoOf(ctx)
		if info == nil { // no RequestID link before this one
			next(ctx)
			return
		}
		path := string(ctx.Path())
		modelOp := ctx.IsPost() && l.isModelOp(path)
		route := ""
		if l.s.opts.DefaultModel == "" {
			route = l.route(path)
		}
		next(ctx)
		status := ctx.Response.StatusCode()
		// A request refused before routing (auth, limits) has no model yet: read it
		// from the body, so that a model's 401s and 429s count as the model's.
		peeked := ""
		if modelOp && info.Model == "" {
			peeked = openai.PeekModel(ctx.PostBody())
		}
		info.OnFinish(func(ri *RequestInfo) {
			model := ri.Model
			if model == "" {
				model = peeked
			}
			code := status
			if ri.Streaming && ri.ErrStatus != 0 {
				code = ri.ErrStatus
			}
			sc := strconv.Itoa(code)
			if route != "" {
				l.m.gwRequests.WithLabelValues(route, sc).Inc()
			}
			if modelOp {
				l.m.requests.WithLabelValues(l.s.modelLabel(model), sc).Inc()
			}
			if modelOp && route != "" && !ri.serviceStart.IsZero() && l.s.known[model] { // routed to an upstream
				l.m.upstream.WithLabelValues(l.s.modelLabel(model)).Observe(time.Since(ri.serviceStart).Seconds())
			}
		})
	}
}

func (l *metricsLink) isModelOp(path string) bool { return slices.Contains(modelPaths, path) }

// route is the bounded label of a path: a registered path, a prefix route, or "other".
func (l *metricsLink) route(path string) string {
	if r, ok := l.exact[path]; ok {
		return r
	}
	for _, p := range l.prefixes {
		if strings.HasPrefix(path, p.prefix) && len(path) > len(p.prefix) {
			return p.label
		}
	}
	return otherRoute
}
