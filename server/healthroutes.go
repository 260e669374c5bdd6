package server

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/health"
	"github.com/hxp-ai/hxp/service"
)

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

// ready answers /health/ready from the cached check results: it never waits on a check.
func (o *observability) ready(ctx *fasthttp.RequestCtx) {
	ok, rep := o.health.Ready()
	resp := ReadyResponse{Status: "ready", Health: rep.Status}
	for _, lvl := range []health.Level{health.Critical, health.High, health.Medium, health.Low} {
		for _, c := range rep.Checks {
			if c.Level == lvl && c.Status != health.StatusPass {
				resp.Failing = append(resp.Failing, FailingCheck{Name: c.Name, Level: c.Level, Status: c.Status, Error: c.LastError})
			}
		}
	}
	status := fasthttp.StatusOK
	if !ok {
		status = fasthttp.StatusServiceUnavailable
		resp.Status = "not_ready"
		switch {
		case o.draining.Load():
			resp.Status = "shutting_down"
		case !o.loadDone.Load():
			resp.Status = "loading"
		}
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(ctx, status, resp)
}

// details answers /health/details (200 whatever the checks say: it is for reading).
func (o *observability) details(ctx *fasthttp.RequestCtx) {
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
	ctx.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(ctx, fasthttp.StatusOK, resp)
}
