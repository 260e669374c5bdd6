package app

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/gpu"
	"github.com/hxp-ai/hxp/health"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/tenancy"
	"github.com/hxp-ai/hxp/transport/rest"
)

// Observability of an App: one Prometheus registry per process, served at /metrics on
// the gateway and on every model listener, and one health registry behind /health/ready
// and /health/details.
//
// The registry holds the Go runtime and process collectors, the scheduler's metrics
// (sched.Collectors), the GPU collector (gpu.Collector over NVML, or the CPU fallback),
// the health registry's metrics, hxp_model_up, the REST transport's HTTP metrics, the
// router's and the tenancy's. Labels stay bounded: model names come from the config
// (anything else is "unknown"), routes from the router's fixed paths (anything else is
// "other"), statuses are HTTP codes. API keys, tenants and prompts never become labels.

// modelUp is the collector of hxp_model_up{model}: 1 when the model is ready and its
// scheduler loop is not stalled (service.Service.Decoding), read at scrape time.
type modelUp struct {
	desc  *prometheus.Desc
	group *service.Group
}

func newModelUp(group *service.Group) *modelUp {
	return &modelUp{group: group, desc: prometheus.NewDesc("hxp_model_up",
		"1 when the model is loaded and its scheduler is making progress, 0 when it is loading, failed, stopped or stalled.",
		[]string{"model"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *modelUp) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *modelUp) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, s := range c.group.Services() {
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
	metrics *rest.Metrics
	group   *service.Group
	gpu     gpu.Source

	loadDone atomic.Bool // every model's load has finished (or failed)
	draining atomic.Bool // the app is shutting down
}

// newObservability builds the process's registry and the health registry with the
// "gpu" check; the model checks are added once the models have loaded.
func newObservability(group *service.Group, log zerolog.Logger) (*observability, error) {
	o := &observability{log: log, reg: prometheus.NewRegistry(), health: health.NewRegistry(log.With().Str("component", "health").Logger()),
		metrics: rest.NewMetrics(), group: group}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		o.metrics, o.health, newModelUp(group),
	}
	for _, c := range cs {
		if err := o.reg.Register(c); err != nil {
			return nil, fmt.Errorf("app: register metrics: %w", err)
		}
	}
	if err := sched.RegisterMetrics(o.reg); err != nil {
		return nil, fmt.Errorf("app: register scheduler metrics: %w", err)
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
		return nil, fmt.Errorf("app: %w", err)
	}
	return o, nil
}

// addConnectors registers the checks of the tenancy's connectors: PostgreSQL and
// Redis are High, because the gateway keeps serving without them (cached keys, a
// spooled ledger, in-process limits and cache).
func (o *observability) addConnectors(t *tenancy.Tenancy) error {
	if t.DB != nil {
		if err := o.health.Register(ConnectorCheck("postgres", health.High, t.DB)); err != nil {
			return fmt.Errorf("app: %w", err)
		}
	}
	if t.Redis != nil {
		if err := o.health.Register(ConnectorCheck("redis", health.High, t.Redis)); err != nil {
			return fmt.Errorf("app: %w", err)
		}
	}
	return nil
}

// register adds collectors to the process's registry.
func (o *observability) register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := o.reg.Register(c); err != nil {
			return fmt.Errorf("app: register metrics: %w", err)
		}
	}
	return nil
}

// start runs the health checks registered so far in the background.
func (o *observability) start(ctx context.Context) error {
	if err := o.health.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("app: start health checks: %w", err)
	}
	return nil
}

// loaded registers the check of every model loaded at start-up (they run at once;
// models added later register theirs when ready) and declares start-up complete:
// /health/ready turns 200 as soon as every critical check passes.
func (o *observability) loaded(services []*service.Service) {
	for _, s := range services {
		if o.group.Get(s.Name()) != s {
			continue // removed while loading
		}
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

// ReadyResponse is the body of GET /health/ready: 200 when the server should receive
// traffic, 503 otherwise.
type ReadyResponse struct {
	// Status is "ready", "loading" (models still loading), "not_ready" (a critical check
	// is failing) or "shutting_down".
	Status string `json:"status"`
	// Health is the aggregate of every check: healthy, degraded or unhealthy.
	Health health.Health `json:"health"`
	// Failing lists the checks that are not passing, critical ones first.
	Failing []FailingCheck `json:"failing,omitempty"`
}

// FailingCheck is a check that is not passing, in ReadyResponse.
type FailingCheck struct {
	Name   string        `json:"name"`
	Level  health.Level  `json:"level"`
	Status health.Status `json:"status"`
	Error  string        `json:"error,omitempty"`
}

// DetailsResponse is the body of GET /health/details: every check's latest result,
// the aggregate, and each model's state.
type DetailsResponse struct {
	health.Report
	// Live repeats the liveness answer (start time, uptime).
	Live health.Liveness `json:"liveness"`
	// Models describes each configured model service.
	Models []ModelDetail `json:"models"`
}

// ModelDetail is one model's state in /health/details.
type ModelDetail struct {
	ID string `json:"id"`
	// State is new, loading, ready, failed, draining or closed.
	State string `json:"state"`
	// LoadProgress is 0..1 while loading, 1 once loaded.
	LoadProgress float64 `json:"load_progress"`
	// Error is the load error of a failed model, or why a ready one is not decoding.
	Error string `json:"error,omitempty"`
	// InFlight, Running and Queued count the model's requests; KVCacheUsage is the share
	// of KV cells in use.
	InFlight     int     `json:"in_flight"`
	Running      int     `json:"running"`
	Queued       int     `json:"queued"`
	KVCacheUsage float64 `json:"kv_cache_usage"`
	// LastProgress is when the scheduler last completed a step or idled; StallAfter is
	// how long it may go without progress while busy.
	LastProgress time.Time `json:"last_progress,omitzero"`
	StallAfterS  float64   `json:"stall_after_seconds"`
}

// Ready implements rest.Health from the cached check results: it never waits on a
// check.
func (o *observability) Ready() (bool, any) {
	ok, rep := o.health.Ready()
	resp := ReadyResponse{Status: "ready", Health: rep.Status}
	for _, lvl := range []health.Level{health.Critical, health.High, health.Medium, health.Low} {
		for _, c := range rep.Checks {
			if c.Level == lvl && c.Status != health.StatusPass {
				resp.Failing = append(resp.Failing, FailingCheck{Name: c.Name, Level: c.Level, Status: c.Status, Error: c.LastError})
			}
		}
	}
	if !ok {
		resp.Status = "not_ready"
		switch {
		case o.draining.Load():
			resp.Status = "shutting_down"
		case !o.loadDone.Load():
			resp.Status = "loading"
		}
	}
	return ok, resp
}

// Details implements rest.Health.
func (o *observability) Details() any {
	resp := DetailsResponse{Report: o.health.Report(), Live: o.health.Liveness(), Models: []ModelDetail{}}
	now := time.Now()
	for _, s := range o.group.Services() {
		d := ModelDetail{ID: s.Name(), State: s.State().String(), LoadProgress: s.Progress(), StallAfterS: s.StallThreshold().Seconds()}
		switch st := s.State(); {
		case st == service.StateFailed:
			if err := s.Err(); err != nil {
				d.Error = err.Error()
			}
		case st == service.StateReady:
			if err := s.Decoding(now); err != nil {
				d.Error = err.Error()
			}
		}
		if sc := s.Scheduler(); sc != nil {
			st := sc.Stats()
			d.InFlight, d.Running, d.Queued = st.InFlight, st.Running, st.Queued
			if st.KVCapacity > 0 {
				d.KVCacheUsage = float64(st.KVUsed) / float64(st.KVCapacity)
			}
			d.LastProgress = sc.LastProgress()
		}
		resp.Models = append(resp.Models, d)
	}
	return resp
}

// Registry is the process's Prometheus registry, served at /metrics on every listener;
// other packages register their collectors with it.
func (a *App) Registry() *prometheus.Registry { return a.obs.reg }

// Health is the app's health registry (/health/ready, /health/details).
func (a *App) Health() *health.Registry { return a.obs.health }

// AddHealthCheck registers a check, before or after Start (see ConnectorCheck).
func (a *App) AddHealthCheck(c health.Check) error {
	if err := a.obs.health.Register(c); err != nil {
		return fmt.Errorf("app: %w", err)
	}
	return nil
}
