package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/gpu"
	"github.com/hxp-ai/hxp/health"
	"github.com/hxp-ai/hxp/internal/testenv"
	"github.com/hxp-ai/hxp/service"
	"github.com/hxp-ai/hxp/transport/rest"
)

// streamChat posts a streamed chat request and reads it to the end.
func streamChat(t *testing.T, url string, body map[string]any, hdr ...string) {
	t.Helper()
	r := post(t, url+"/v1/chat/completions", body, hdr...)
	if r.status != 200 {
		t.Fatalf("stream: %d %s", r.status, r.body)
	}
	if _, finish, _ := chatStream(t, r.body); finish == "" {
		t.Fatalf("stream did not finish: %s", r.body)
	}
}

// A real Prometheus scrapes a running App: the series operators rely on exist, carry
// only bounded labels, and count exactly the requests sent.
func TestPrometheusScrapesApp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus; skipped with -short")
	}
	const model, key = "observed", "sk-observe-secret"
	srv := start(t, setup{models: []string{model}, edit: func(c *config.Config) { c.Auth.APIKeys = []string{key} }})
	gw, own := srv.gw, srv.own
	target := strings.TrimPrefix(gw, "http://")
	prom := testenv.StartPrometheus(t, []string{target}, 500*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if err := prom.WaitForScrape(ctx, target); err != nil {
		t.Fatalf("%v\nprometheus log:\n%s", err, prom.LogTail())
	}
	// value returns the query's single sample, or NaN when it has none.
	value := func(q string) float64 {
		t.Helper()
		s, err := prom.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		switch len(s) {
		case 0:
			return math.NaN()
		case 1:
			return s[0].Value
		}
		t.Fatalf("query %s: %d samples, want 1: %+v", q, len(s), s)
		return 0
	}
	okReqs := fmt.Sprintf(`hxp_requests_total{model=%q,status="200"}`, model)
	if v := value(okReqs); !math.IsNaN(v) {
		t.Fatalf("%s = %v before any request", okReqs, v)
	}
	if v := value(fmt.Sprintf(`hxp_model_up{model=%q}`, model)); v != 1 {
		t.Fatalf("hxp_model_up = %v before any request", v)
	}

	auth := []string{"Authorization", "Bearer " + key}
	const maxTokens = 6
	for i := 0; i < 2; i++ {
		if r := post(t, gw+"/v1/chat/completions", chatBody(model, maxTokens, nil), auth...); r.status != 200 {
			t.Fatalf("chat: %d %s", r.status, r.body)
		}
	}
	streamChat(t, gw, chatBody(model, maxTokens, map[string]any{"stream": true}), auth...)
	// The model's own listener: no model in the body, same registry.
	if r := post(t, own+"/v1/completions", map[string]any{"prompt": "Once upon a time", "max_tokens": maxTokens}, auth...); r.status != 200 {
		t.Fatalf("completion on the model listener: %d %s", r.status, r.body)
	}
	if r := post(t, gw+"/v1/chat/completions", chatBody("no-such-model", 4, nil), auth...); r.status != 404 {
		t.Fatalf("unknown model: %d", r.status)
	}
	if r := post(t, gw+"/v1/chat/completions", chatBody(model, 4, nil)); r.status != 401 {
		t.Fatalf("request without a key: %d", r.status)
	}

	// Counters are exact once a scrape has seen every request: the refusals are counted
	// after their answers are sent, so a scrape can see the 200s without them.
	for q, want := range map[string]float64{
		okReqs: 4,
		`hxp_requests_total{model="unknown",status="404"}`:              1,
		fmt.Sprintf(`hxp_requests_total{model=%q,status="401"}`, model): 1,
	} {
		waitFor(t, "Prometheus to see "+q, func() bool { return value(q) == want })
	}
	for q, want := range map[string]float64{
		okReqs: 4,
		`hxp_requests_total{model="unknown",status="404"}`:                               1,
		fmt.Sprintf(`hxp_requests_total{model=%q,status="401"}`, model):                  1,
		`hxp_gateway_requests_total{route="/v1/chat/completions",status="200"}`:          3,
		`hxp_gateway_requests_total{route="/v1/chat/completions",status="404"}`:          1,
		`hxp_gateway_requests_total{route="/v1/chat/completions",status="401"}`:          1,
		fmt.Sprintf(`hxp_gateway_upstream_duration_seconds_count{model=%q}`, model):      3,
		fmt.Sprintf(`hxp_time_to_first_token_seconds_count{model=%q}`, model):            4,
		fmt.Sprintf(`hxp_request_duration_seconds_count{model=%q}`, model):               4,
		fmt.Sprintf(`hxp_generations_total{model=%q,finish="length"}`, model):            4,
		fmt.Sprintf(`hxp_generated_tokens_total{model=%q}`, model):                       4 * maxTokens,
		fmt.Sprintf(`hxp_model_up{model=%q}`, model):                                     1,
		fmt.Sprintf(`hxp_queue_depth{model=%q}`, model):                                  0,
		fmt.Sprintf(`hxp_running_sequences{model=%q}`, model):                            0,
		fmt.Sprintf(`hxp_slots{model=%q}`, model):                                        4,
		fmt.Sprintf(`hxp_model_target_latency_seconds{model=%q}`, model):                 1,
		fmt.Sprintf(`hxp_health_check_status{check="model:%s",level="critical"}`, model): 1,
	} {
		if got := value(q); got != want {
			t.Errorf("%s = %v, want %v", q, got, want)
		}
	}
	for q, check := range map[string]func(float64) bool{
		// All requests are done: running requests hold no cells, idle slots keep prefixes.
		fmt.Sprintf(`hxp_kv_cache_usage_ratio{model=%q}`, model):                  func(v float64) bool { return v == 0 },
		fmt.Sprintf(`hxp_kv_cache_cached_ratio{model=%q}`, model):                 func(v float64) bool { return v > 0 && v <= 1 },
		fmt.Sprintf(`hxp_time_to_first_token_seconds_sum{model=%q}`, model):       func(v float64) bool { return v > 0 },
		fmt.Sprintf(`hxp_inter_token_latency_seconds_count{model=%q}`, model):     func(v float64) bool { return v >= 4*(maxTokens-1) },
		fmt.Sprintf(`hxp_gateway_upstream_duration_seconds_sum{model=%q}`, model): func(v float64) bool { return v > 0 },
		`hxp_gpu_memory_total_bytes`:                                              func(v float64) bool { return v > 0 },
		`hxp_gpu_memory_used_bytes`:                                               func(v float64) bool { return v > 0 },
		`hxp_health_check_status{check="gpu"}`:                                    func(v float64) bool { return v == 1 },
		`go_goroutines`:                                                           func(v float64) bool { return v > 0 },
		`process_resident_memory_bytes`:                                           func(v float64) bool { return v > 0 },
	} {
		if v := value(q); !check(v) {
			t.Errorf("%s = %v: not a sane value", q, v)
		}
	}

	// Labels stay bounded: no key, no prompt, no unconfigured model name.
	all, err := prom.Query(ctx, `{__name__=~"hxp_.+"}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		for k, v := range s.Labels {
			if strings.Contains(v, "sk-") || strings.Contains(v, "story") || strings.Contains(v, "Once upon") || v == "no-such-model" {
				t.Errorf("series %v: label %s=%q carries request data", s.Labels, k, v)
			}
		}
	}

	// Every metric the alert rules and the dashboard use is exported, except those that
	// appear only on events this run does not have or only on GPU hosts.
	exported := map[string]bool{}
	for _, s := range all {
		exported[s.Labels["__name__"]] = true
	}
	onlyOn := map[string]string{
		"hxp_rejections_total":        "a refused request",
		"hxp_gpu_temperature_celsius": "an NVIDIA GPU",
		"hxp_gpu_power_watts":         "an NVIDIA GPU",
	}
	for _, f := range []string{"../deploy/prometheus/alerts.yml", "../deploy/grafana/hxp-dashboard.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range regexp.MustCompile(`\bhxp_[a-z0-9_]+`).FindAllString(string(b), -1) {
			if exported[name] || onlyOn[name] != "" {
				continue
			}
			if strings.HasSuffix(name, "_bucket") && exported[strings.TrimSuffix(name, "_bucket")+"_count"] {
				continue
			}
			t.Errorf("%s uses %s, which a running hxp does not export", f, name)
		}
	}

	// Every model listener serves the process's registry too, without a key.
	r := do(t, "GET", own+"/metrics", nil)
	if r.status != 200 || !strings.Contains(string(r.body), fmt.Sprintf(`hxp_model_up{model=%q} 1`, model)) {
		t.Errorf("model listener /metrics: %d\n%.500s", r.status, r.body)
	}
}

// A model loop held in its step hook turns /health/ready to 503 (and hxp_model_up to
// 0) within seconds, while /health stays 200; releasing it makes the server ready again.
func TestStalledModelTurnsNotReady(t *testing.T) {
	const model = "stalled"
	var (
		mu   sync.Mutex
		gate chan struct{}
	)
	hook := func() {
		mu.Lock()
		g := gate
		mu.Unlock()
		if g != nil {
			<-g
		}
	}
	srv := start(t, setup{models: []string{model}, service: service.Options{StepHook: hook, StallAfter: 300 * time.Millisecond}})
	gw, own := srv.gw, srv.own
	ready := func() (int, ReadyResponse) {
		r := do(t, "GET", gw+"/health/ready", nil)
		var rr ReadyResponse
		r.json(t, &rr)
		return r.status, rr
	}
	waitFor(t, "the loaded server to be ready", func() bool { s, _ := ready(); return s == 200 })
	if _, rr := ready(); rr.Status != "ready" || rr.Health != "healthy" || len(rr.Failing) != 0 {
		t.Fatalf("ready body: %+v", rr)
	}

	g := make(chan struct{})
	mu.Lock()
	gate = g
	mu.Unlock()
	done := make(chan response, 1)
	go func() {
		b, _ := json.Marshal(chatBody(model, 4, nil))
		resp, err := http.Post(gw+"/v1/chat/completions", "application/json", bytes.NewReader(b))
		if err != nil {
			done <- response{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		done <- response{status: resp.StatusCode, body: buf.Bytes()}
	}()

	waitFor(t, "/health/ready to turn 503", func() bool { s, _ := ready(); return s == 503 })
	_, rr := ready()
	if rr.Status != "not_ready" || rr.Health != "unhealthy" || len(rr.Failing) == 0 {
		t.Fatalf("not-ready body: %+v", rr)
	}
	if f := rr.Failing[0]; f.Name != "model:"+model || f.Level.String() != "critical" || f.Status != "fail" || !strings.Contains(f.Error, "stalled") {
		t.Errorf("failing check: %+v", f)
	}
	if r := do(t, "GET", gw+"/health", nil); r.status != 200 {
		t.Errorf("liveness during the stall: %d", r.status)
	}
	if r := do(t, "GET", own+"/metrics", nil); !strings.Contains(string(r.body), fmt.Sprintf(`hxp_model_up{model=%q} 0`, model)) {
		t.Errorf("hxp_model_up during the stall is not 0")
	}
	var det DetailsResponse
	do(t, "GET", own+"/health/details", nil).json(t, &det)
	if len(det.Models) != 1 || det.Models[0].InFlight != 1 || !strings.Contains(det.Models[0].Error, "stalled") || det.Ready {
		t.Errorf("details during the stall: %+v", det)
	}

	mu.Lock()
	gate = nil
	mu.Unlock()
	close(g)
	if r := <-done; r.status != 200 {
		t.Fatalf("held request after release: %d %s", r.status, r.body)
	}
	waitFor(t, "/health/ready to recover", func() bool { s, _ := ready(); return s == 200 })
}

// /health/details has the documented shape.
func TestHealthDetailsShape(t *testing.T) {
	const model = "detailed"
	gw := start(t, setup{models: []string{model}}).gw
	waitFor(t, "ready", func() bool { return do(t, "GET", gw+"/health/ready", nil).status == 200 })
	// Readiness waits for the critical checks only; the low-level ones (gpu) run on
	// their own schedule and may not have run yet.
	waitFor(t, "every check to have run", func() bool {
		return !strings.Contains(string(do(t, "GET", gw+"/health/details", nil).body), `"status":"unknown"`)
	})
	r := do(t, "GET", gw+"/health/details", nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("details: %d %s", r.status, r.header.Get("Content-Type"))
	}
	var d map[string]any
	r.json(t, &d)
	want := map[string]string{"status": "string", "ready": "bool", "time": "string", "checks": "array", "liveness": "object", "models": "array"}
	for k, typ := range want {
		if got := jsonType(d[k]); got != typ {
			t.Errorf("%s: %s, want %s in %s", k, got, typ, r.body)
		}
	}
	if d["status"] != "healthy" || d["ready"] != true {
		t.Errorf("status %v ready %v", d["status"], d["ready"])
	}
	checks := map[string]map[string]any{}
	for _, c := range d["checks"].([]any) {
		c := c.(map[string]any)
		for _, k := range []string{"name", "level", "status", "latency_ms", "attempts", "consecutive_failures", "last_checked"} {
			if _, ok := c[k]; !ok {
				t.Errorf("check %v has no %s", c["name"], k)
			}
		}
		checks[c["name"].(string)] = c
	}
	if c := checks["model:"+model]; c == nil || c["level"] != "critical" || c["status"] != "pass" {
		t.Errorf("model check: %v", c)
	}
	if c := checks["gpu"]; c == nil || c["status"] != "pass" || (c["level"] != "low" && c["level"] != "high") {
		t.Errorf("gpu check: %v", c)
	}
	models := d["models"].([]any)
	if len(models) != 1 {
		t.Fatalf("models: %v", models)
	}
	m := models[0].(map[string]any)
	if m["id"] != model || m["state"] != "ready" || m["load_progress"] != 1.0 || jsonType(m["stall_after_seconds"]) != "number" {
		t.Errorf("model detail: %v", m)
	}
	if l := d["liveness"].(map[string]any); l["status"] != "alive" || jsonType(l["uptime_seconds"]) != "number" {
		t.Errorf("liveness: %v", l)
	}
	// The health endpoints answer on model listeners too, and /health keeps its shape.
	var h rest.HealthResponse
	do(t, "GET", gw+"/health", nil).json(t, &h)
	if h.Status != "ok" || len(h.Models) != 1 || h.Models[0].ID != model || h.Models[0].Status != "ready" {
		t.Errorf("/health: %+v", h)
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "bool"
	case float64:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// Readiness follows the app's life: loading before the loads end, not ready while a
// critical check fails, shutting down once draining.
func TestReadinessStates(t *testing.T) {
	group := service.NewGroup([]config.Model{modelConfig(t, "lazy")}, testLog(), service.Options{})
	o, err := newObservability(group, testLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer o.close()
	ready := func() (bool, ReadyResponse) {
		ok, rep := o.Ready()
		return ok, rep.(ReadyResponse)
	}
	if ok, rr := ready(); ok || rr.Status != "loading" {
		t.Fatalf("before the load: ready %v %+v", ok, rr)
	}
	o.loaded(group.Services()) // the model never loaded: its critical check fails
	waitFor(t, "the model check to fail", func() bool {
		_, rr := ready()
		return len(rr.Failing) > 0 && rr.Failing[0].Name == "model:lazy" && rr.Failing[0].Status == "fail"
	})
	if ok, rr := ready(); ok || rr.Status != "not_ready" || !strings.Contains(rr.Failing[0].Error, "loading") {
		t.Fatalf("model not loaded: ready %v %+v", ok, rr)
	}
	o.drain()
	if ok, rr := ready(); ok || rr.Status != "shutting_down" {
		t.Fatalf("draining: ready %v %+v", ok, rr)
	}
}

// The HTTP metrics bound their labels: unknown models and malformed requests count as
// "unknown", unknown paths as "other", model ids in paths as a pattern.
func TestMetricsLabelsBounded(t *testing.T) {
	srv := start(t, setup{})
	url, reg := srv.gw, srv.Registry()
	post(t, url+"/v1/completions", map[string]any{"model": "tiny", "prompt": "hi", "max_tokens": 2})
	post(t, url+"/v1/completions", map[string]any{"model": "secret-model-name", "prompt": "hi"})
	post(t, url+"/v1/completions", "{not json")
	do(t, "GET", url+"/v1/models/whatever-id", nil)
	do(t, "GET", url+"/some/unknown/path", nil)
	do(t, "GET", url+"/v1/models", nil)

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hxp_requests_total", map[string]string{"model": "tiny", "status": "200"}, 1},
		{"hxp_requests_total", map[string]string{"model": "unknown", "status": "404"}, 1},
		{"hxp_requests_total", map[string]string{"model": "unknown", "status": "400"}, 1},
		{"hxp_gateway_requests_total", map[string]string{"route": "/v1/completions", "status": "200"}, 1},
		{"hxp_gateway_requests_total", map[string]string{"route": "/v1/completions", "status": "404"}, 1},
		{"hxp_gateway_requests_total", map[string]string{"route": "/v1/completions", "status": "400"}, 1},
		{"hxp_gateway_requests_total", map[string]string{"route": "/v1/models/{id}", "status": "404"}, 1},
		{"hxp_gateway_requests_total", map[string]string{"route": "other", "status": "404"}, 1},
		{"hxp_gateway_requests_total", map[string]string{"route": "/v1/models", "status": "200"}, 1},
	} {
		// The counters are incremented after the answer is sent.
		waitFor(t, fmt.Sprintf("%s%v", c.name, c.labels), func() bool { return counter(t, reg, c.name, c.labels) >= c.want })
		if got := counter(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if ls := seriesLabels(t, reg, "hxp_requests_total"); len(ls) != 3 {
		t.Errorf("hxp_requests_total has %d series, want 3: %v", len(ls), ls)
	}
	if ls := seriesLabels(t, reg, "hxp_gateway_upstream_duration_seconds"); len(ls) != 1 {
		t.Errorf("upstream histogram has %d series, want 1 (model tiny): %v", len(ls), ls)
	}
}

// seriesLabels are the labels of each series of the metric name in g.
func seriesLabels(t testing.TB, g prometheus.Gatherer, name string) []map[string]string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out = append(out, labels)
		}
	}
	return out
}

// A configured connector gets a health check of level high: when it goes down the
// server reports degraded but stays ready (keys are cached, limits fall back).
func TestConnectorCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis; skipped with -short")
	}
	rd := testenv.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := start(t, setup{models: []string{"connected"}, edit: func(c *config.Config) {
		c.Redis = config.Redis{URL: rd.URL(), FailMode: "open", Timeout: config.Duration(200 * time.Millisecond)}
	}})
	app, gw, ten := srv.App, srv.gw, srv.ten
	waitFor(t, "ready", func() bool { return do(t, "GET", gw+"/health/ready", nil).status == 200 })
	rep := app.Health().RunOnce(ctx)
	c, ok := rep.Check("redis")
	if !ok || c.Level != health.High || c.Status != health.StatusPass {
		t.Fatalf("redis check: %+v (registered %v)", c, ok)
	}

	rd.Stop()
	rep = app.Health().RunOnce(ctx)
	if c, _ := rep.Check("redis"); c.Status != health.StatusFail || c.LastError == "" {
		t.Fatalf("redis check with Redis stopped: %+v", c)
	}
	r := do(t, "GET", gw+"/health/ready", nil)
	var rr ReadyResponse
	r.json(t, &rr)
	if r.status != 200 || rr.Health != health.Degraded || len(rr.Failing) != 1 || rr.Failing[0].Name != "redis" {
		t.Errorf("ready with Redis down: %d %+v", r.status, rr)
	}
	if err := app.AddHealthCheck(ConnectorCheck("redis", health.High, ten.Redis)); err == nil {
		t.Error("a second redis check was accepted")
	}
}

// fakeDevices is a gpu.Source whose device list a test changes.
type fakeDevices struct {
	mu   sync.Mutex
	devs []gpu.Device
	err  error
}

func (f *fakeDevices) Devices() ([]gpu.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gpu.Device(nil), f.devs...), f.err
}
func (f *fakeDevices) Telemetry(int) (gpu.Telemetry, error) { return gpu.Telemetry{}, nil }
func (f *fakeDevices) Close() error                         { return nil }

func TestGPUCheck(t *testing.T) {
	ctx := context.Background()
	two := []gpu.Device{{Index: 0, Kind: gpu.KindGPU}, {Index: 1, Kind: gpu.KindGPU}}
	src := &fakeDevices{devs: two}
	c := GPUCheck(src, nil)
	if c.Name != "gpu" || c.Level != health.High {
		t.Fatalf("check on a GPU host: %q %s", c.Name, c.Level)
	}
	if err := c.Run(ctx); err != nil {
		t.Fatalf("all GPUs visible: %v", err)
	}
	src.mu.Lock()
	src.devs = two[:1] // a GPU fell off the bus
	src.mu.Unlock()
	if err := c.Run(ctx); err == nil || !strings.Contains(err.Error(), "1 devices visible, 2 at start-up") {
		t.Fatalf("lost GPU: %v", err)
	}
	src.mu.Lock()
	src.err = fmt.Errorf("nvml: GPU is lost")
	src.mu.Unlock()
	if err := c.Run(ctx); err == nil || !strings.Contains(err.Error(), "GPU is lost") {
		t.Fatalf("NVML error: %v", err)
	}

	cpu := GPUCheck(&fakeDevices{devs: []gpu.Device{{Kind: gpu.KindCPU}}}, nil)
	if cpu.Level != health.Low || cpu.Run(ctx) != nil {
		t.Errorf("CPU fallback check: level %s", cpu.Level)
	}
	none := GPUCheck(nil, fmt.Errorf("no meminfo"))
	if err := none.Run(ctx); err == nil || !strings.Contains(err.Error(), "no meminfo") {
		t.Errorf("check without a source: %v", err)
	}
}
