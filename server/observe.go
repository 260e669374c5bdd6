package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/gpu"
	"github.com/hxp-ai/hxp/health"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
)

// Observability of an App: one Prometheus registry per process, served at /metrics on
// the gateway and on every model listener, and one health registry behind /health/ready
// and /health/details.
//
// The registry holds the Go runtime and process collectors, the scheduler's metrics
// (sched.Collectors), the GPU collector (gpu.Collector over NVML, or the CPU fallback),
// the health registry's metrics, hxp_model_up and the HTTP metrics of Metrics. Labels
// stay bounded: model names come from the config (anything else is "unknown"), routes
// from the router's fixed paths (anything else is "other"), statuses are HTTP codes.
// API keys, tenants and prompts never become labels.

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
func (m *Metrics) link(g *Gateway) Middleware {
	l := &metricsLink{m: m, g: g, exact: map[string]string{}}
	for _, p := range opPaths {
		l.exact[p] = p
	}
	l.exact["/v1/models"] = "/v1/models"
	l.exact["/health"] = "/health"
	l.prefixes = append(l.prefixes, routePrefix{"/v1/models/", "/v1/models/{id}"})
	for _, rt := range g.opts.Routes {
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
	g        *Gateway
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
		if l.g.single == "" {
			route = l.route(path)
		}
		next(ctx)
		status := ctx.Response.StatusCode()
		// A request refused before routing (auth, limits) has no model yet: read it
		// from the body, so that a model's 401s and 429s count as the model's.
		peeked := ""
		if modelOp && info.Model == "" {
			peeked, _ = peekModel(ctx.PostBody())
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
				l.m.requests.WithLabelValues(l.g.modelLabel(model), sc).Inc()
			}
		})
	}
}

func (l *metricsLink) isModelOp(path string) bool {
	for _, p := range opPaths {
		if p == path {
			return true
		}
	}
	return false
}

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

// modelLabel bounds a request's model for labels: a model this gateway routes, the
// listener's own model when the request named none, or "unknown".
func (g *Gateway) modelLabel(model string) string {
	if model == "" {
		if g.single != "" {
			return g.single
		}
		return unknownModel
	}
	if _, ok := g.routes[model]; ok {
		return model
	}
	return unknownModel
}

// serveUpstream hands the request to up and, on the gateway, times the upstream until
// the response is complete (hxp_gateway_upstream_duration_seconds).
func (g *Gateway) serveUpstream(ctx *fasthttp.RequestCtx, up Upstream, op Op, model string) {
	m := g.opts.Metrics
	info := infoOf(ctx)
	if m == nil || g.single != "" || info == nil {
		up.Serve(ctx, op, model)
		return
	}
	start := time.Now()
	up.Serve(ctx, op, model)
	// A stream finishes after the handler returns; other responses when the chain does.
	info.OnFinish(func(ri *RequestInfo) {
		served := ri.Model // a fallback model when the upstream used one
		if served == "" {
			served = model
		}
		m.upstream.WithLabelValues(g.modelLabel(served)).Observe(time.Since(start).Seconds())
	})
}

// modelUp is the collector of hxp_model_up{model}: 1 when the model is ready and its
// scheduler loop is not stalled (service.Service.Decoding), read at scrape time.
type modelUp struct {
	desc     *prometheus.Desc
	services []*service.Service
}

func newModelUp(services []*service.Service) *modelUp {
	return &modelUp{services: services, desc: prometheus.NewDesc("hxp_model_up",
		"1 when the model is loaded and its scheduler is making progress, 0 when it is loading, failed, stopped or stalled.",
		[]string{"model"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *modelUp) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *modelUp) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, s := range c.services {
		v := 0.0
		if s.Decoding(now) == nil {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, s.Name())
	}
}

// GPUCheckName is the name of the GPU health check.
const GPUCheckName = "gpu"

// GPUCheck is the health check "gpu": every device that src listed at start-up is still
// listed. Its level is High when src has GPUs (a lost GPU degrades the server; the model
// checks say whether models still decode) and Low for the CPU fallback, where it only
// proves /proc/meminfo is readable. openErr, when src is nil, is why no source exists.
func GPUCheck(src gpu.Source, openErr error) health.Check {
	c := health.Check{Name: GPUCheckName, Level: health.Low}
	if src == nil {
		err := fmt.Errorf("no device source: %w", openErr)
		c.Run = func(context.Context) error { return err }
		return c
	}
	want := 0
	if devs, err := src.Devices(); err == nil {
		want = len(devs)
		for _, d := range devs {
			if d.Kind == gpu.KindGPU {
				c.Level = health.High
			}
		}
	}
	c.Run = func(context.Context) error {
		devs, err := src.Devices()
		if err != nil {
			return fmt.Errorf("list devices: %w", err)
		}
		if len(devs) == 0 || len(devs) < want {
			return fmt.Errorf("%d devices visible, %d at start-up", len(devs), want)
		}
		return nil
	}
	return c
}

// Pinger is a connector with a health probe (postgres.DB, redis.Client).
type Pinger interface {
	Health(ctx context.Context) error
}

// ConnectorCheck is the health check of a configured connector, named after it
// ("postgres", "redis"): reachable within the timeout, with one retry. Register it with
// App.AddHealthCheck. level says what its loss costs: High where HXP keeps serving
// without it (cached keys, spooled ledger, in-process limits), Critical where it cannot.
func ConnectorCheck(name string, level health.Level, p Pinger) health.Check {
	return health.Check{Name: name, Level: level, Timeout: 2 * time.Second, Retries: 1, Interval: 10 * time.Second,
		Run: p.Health}
}

// observability is an App's metrics and health state.
type observability struct {
	log     zerolog.Logger
	reg     *prometheus.Registry
	health  *health.Registry
	metrics *Metrics
	group   *service.Group
	gpu     gpu.Source

	metricsHandler fasthttp.RequestHandler
	loadDone       atomic.Bool // every model's load has finished (or failed)
	draining       atomic.Bool // the app is shutting down
}

// newObservability builds the process's registry and the health registry with the
// "gpu" check; the model checks are added once the models have loaded.
func newObservability(group *service.Group, log zerolog.Logger) (*observability, error) {
	o := &observability{log: log, reg: prometheus.NewRegistry(), health: health.NewRegistry(log.With().Str("component", "health").Logger()),
		metrics: NewMetrics(), group: group}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		o.metrics, o.health, newModelUp(group.Services()),
	}
	for _, c := range cs {
		if err := o.reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}
	if err := sched.RegisterMetrics(o.reg); err != nil {
		return nil, fmt.Errorf("server: register scheduler metrics: %w", err)
	}
	src, err := gpu.Open()
	if err == nil {
		col, cerr := gpu.NewCollector(src)
		if cerr == nil {
			err = o.reg.Register(col)
		} else {
			err = cerr
		}
		if err != nil {
			_ = src.Close()
			src = nil
		}
	}
	if err != nil {
		log.Warn().Err(err).Msg("no GPU or host memory telemetry: hxp_gpu_* metrics are not exported")
	} else if cpu, ok := src.(*gpu.CPUSource); ok && cpu.NVMLError() != nil {
		log.Info().Str("nvml", cpu.NVMLError().Error()).Msg("no NVIDIA GPU visible: exporting host memory as gpu=\"cpu\"")
	}
	o.gpu = src
	if err := o.health.Register(GPUCheck(src, err)); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	o.metricsHandler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(o.reg, promhttp.HandlerOpts{
		ErrorLog: promLogger{log}, ErrorHandling: promhttp.ContinueOnError}))
	return o, nil
}

// options fills what the App's listeners need: the metrics link, the observability
// routes (before the caller's, which may replace them) and the prompt logging flag.
// It also registers the checks of the tenancy's connectors: PostgreSQL and Redis are
// High, because the gateway keeps serving without them (cached keys, a spooled
// ledger, in-process limits and cache).
func (o *observability) options(cfg *config.Config, opts *Options) error {
	opts.Metrics = o.metrics
	opts.Routes = append(o.routes(), opts.Routes...)
	if !opts.LogPrompts {
		opts.LogPrompts = cfg.Log.Prompts
	}
	if t := opts.Tenancy; t != nil {
		if t.DB != nil {
			if err := o.health.Register(ConnectorCheck("postgres", health.High, t.DB)); err != nil {
				return fmt.Errorf("server: %w", err)
			}
		}
		if t.Redis != nil {
			if err := o.health.Register(ConnectorCheck("redis", health.High, t.Redis)); err != nil {
				return fmt.Errorf("server: %w", err)
			}
		}
	}
	return nil
}

// routes are GET /metrics, /health/ready and /health/details.
func (o *observability) routes() []Route {
	return []Route{
		{Method: "GET", Path: "/metrics", Handler: o.metricsHandler},
		{Method: "GET", Path: "/health/ready", Handler: o.ready},
		{Method: "GET", Path: "/health/details", Handler: o.details},
	}
}

// start runs the health checks registered so far in the background.
func (o *observability) start(ctx context.Context) error {
	if err := o.health.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("server: start health checks: %w", err)
	}
	return nil
}

// loaded registers every model's check (they run at once) and declares start-up
// complete: /health/ready turns 200 as soon as every critical check passes.
func (o *observability) loaded() {
	for _, s := range o.group.Services() {
		if err := o.health.Register(s.HealthCheck()); err != nil {
			o.log.Error().Err(err).Str("model", s.Name()).Msg("health check not registered")
		}
	}
	o.loadDone.Store(true)
	o.health.MarkReady()
}

// drain withdraws readiness: the app is shutting down.
func (o *observability) drain() {
	o.draining.Store(true)
	o.health.MarkNotReady()
}

// close ends the checks and releases the device source.
func (o *observability) close() {
	o.health.Stop()
	if o.gpu != nil {
		_ = o.gpu.Close()
	}
}

// promLogger routes promhttp's errors (a collector that failed) to zerolog.
type promLogger struct{ log zerolog.Logger }

func (p promLogger) Println(v ...any) {
	p.log.Warn().Str("component", "metrics").Msg(strings.TrimSpace(fmt.Sprintln(v...)))
}

// Registry is the process's Prometheus registry, served at /metrics on every listener;
// other packages register their collectors with it.
func (a *App) Registry() *prometheus.Registry { return a.obs.reg }

// Health is the app's health registry (/health/ready, /health/details).
func (a *App) Health() *health.Registry { return a.obs.health }

// AddHealthCheck registers a check, before or after Start (see ConnectorCheck).
func (a *App) AddHealthCheck(c health.Check) error {
	if err := a.obs.health.Register(c); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}
