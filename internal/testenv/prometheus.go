package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Prometheus is a Prometheus server started for tests. It scrapes the given targets under the
// job name "hxp" and answers PromQL through its HTTP API.
type Prometheus struct {
	srv    *server
	bin    string
	client *http.Client
}

// PrometheusJob is the job label of the targets passed to StartPrometheus.
const PrometheusJob = "hxp"

// StartPrometheus starts a Prometheus server owned by the test that scrapes each target
// ("host:port", path /metrics) every interval. It is stopped when the test ends.
func StartPrometheus(t testing.TB, scrapeTargets []string, interval time.Duration) *Prometheus {
	t.Helper()
	bin := requireBinary(t, "prometheus", "/usr/bin/prometheus")
	if interval <= 0 {
		interval = time.Second
	}
	dir, err := newServerDir("prometheus")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p := &Prometheus{bin: bin, client: &http.Client{Timeout: 10 * time.Second}}
	p.srv = &server{
		name:    "prometheus",
		dir:     dir,
		stopSig: syscall.SIGTERM,
		launch:  p.launch,
		ready:   p.ready,
	}
	t.Cleanup(p.srv.destroy)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), prometheusConfig(scrapeTargets, interval), 0o644); err != nil {
		t.Fatalf("testenv: write prometheus config: %v", err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// prometheusConfig renders the scrape configuration. The YAML is written by hand (it is
// small) so that the harness needs no YAML library.
func prometheusConfig(targets []string, interval time.Duration) []byte {
	timeout := interval
	if timeout > 10*time.Second {
		timeout = 10 * time.Second
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", promDuration(interval), promDuration(interval))
	fmt.Fprintf(&b, "scrape_configs:\n  - job_name: %s\n    scrape_interval: %s\n    scrape_timeout: %s\n    static_configs:\n      - targets: [",
		PrometheusJob, promDuration(interval), promDuration(timeout))
	for i, target := range targets {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(target))
	}
	b.WriteString("]\n")
	return []byte(b.String())
}

// promDuration formats d in Prometheus' duration syntax (whole milliseconds).
func promDuration(d time.Duration) string {
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return strconv.FormatInt(ms, 10) + "ms"
}

// launch starts prometheus on port.
func (p *Prometheus) launch(port int, logPath string) (*process, error) {
	return startProcess("prometheus", logPath, nil, p.bin,
		"--config.file="+filepath.Join(p.srv.dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(p.srv.dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		"--log.level=warn",
	)
}

// ready waits for /-/ready, which answers 200 once the TSDB is open.
func (p *Prometheus) ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+"/-/ready", nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: /-/ready answered %s", errNotReady, resp.Status)
	}
	return nil
}

// URL returns the base URL of the server's HTTP API, e.g. http://127.0.0.1:41234.
func (p *Prometheus) URL() string { return "http://127.0.0.1:" + strconv.Itoa(p.srv.port) }

// Start starts the server again after Stop or Kill, on the same port and data directory.
func (p *Prometheus) Start() error {
	if err := p.srv.start(); err != nil {
		return fmt.Errorf("start prometheus: %w", err)
	}
	return nil
}

// Stop shuts the server down cleanly.
func (p *Prometheus) Stop() { p.srv.stop() }

// Kill sends SIGKILL to the server and waits until it is gone.
func (p *Prometheus) Kill() { p.srv.kill() }

// LogTail returns the last lines of the server's log, for failure messages.
func (p *Prometheus) LogTail() string { return p.srv.logTail() }

// Sample is one element of a PromQL instant query's result.
type Sample struct {
	// Labels are the series' labels, including __name__ when the query keeps it.
	Labels map[string]string
	// Value is the sample's value.
	Value float64
	// Time is the evaluation time.
	Time time.Time
}

// Query evaluates an instant PromQL query now through /api/v1/query. Vector results give one
// Sample per series; a scalar result gives a single Sample without labels.
func (p *Prometheus) Query(ctx context.Context, promql string) ([]Sample, error) {
	u := p.URL() + "/api/v1/query?" + url.Values{"query": {promql}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", promql, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", promql, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %q: decode response (%s): %w", promql, resp.Status, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s: %s", promql, body.ErrorType, body.Error)
	}
	switch body.Data.ResultType {
	case "vector":
		var series []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(body.Data.Result, &series); err != nil {
			return nil, fmt.Errorf("query %q: decode vector: %w", promql, err)
		}
		out := make([]Sample, 0, len(series))
		for _, s := range series {
			sample, err := parsePromValue(s.Value)
			if err != nil {
				return nil, fmt.Errorf("query %q: %w", promql, err)
			}
			sample.Labels = s.Metric
			out = append(out, sample)
		}
		return out, nil
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(body.Data.Result, &v); err != nil {
			return nil, fmt.Errorf("query %q: decode scalar: %w", promql, err)
		}
		sample, err := parsePromValue(v)
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", promql, err)
		}
		return []Sample{sample}, nil
	default:
		return nil, fmt.Errorf("query %q: unsupported result type %q", promql, body.Data.ResultType)
	}
}

// parsePromValue decodes the API's [unix seconds, "value"] pair.
func parsePromValue(v [2]any) (Sample, error) {
	ts, ok := v[0].(float64)
	if !ok {
		return Sample{}, fmt.Errorf("bad sample time %v", v[0])
	}
	s, ok := v[1].(string)
	if !ok {
		return Sample{}, fmt.Errorf("bad sample value %v", v[1])
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return Sample{}, fmt.Errorf("bad sample value %q: %w", s, err)
	}
	sec := int64(ts)
	return Sample{Value: f, Time: time.Unix(sec, int64((ts-float64(sec))*1e9))}, nil
}

// QueryValue evaluates a query that must return exactly one sample and returns its value.
func (p *Prometheus) QueryValue(ctx context.Context, promql string) (float64, error) {
	samples, err := p.Query(ctx, promql)
	if err != nil {
		return 0, err
	}
	if len(samples) != 1 {
		return 0, fmt.Errorf("query %q: got %d samples, want 1", promql, len(samples))
	}
	return samples[0].Value, nil
}

// WaitForScrape waits until Prometheus has scraped target ("host:port") successfully, that
// is until up{instance=target} is 1, or ctx ends. The error carries the target's last scrape
// error as Prometheus reports it. Prometheus applies newly discovered targets every 5 seconds,
// so the first scrape comes about 5 seconds after the start whatever the interval.
func (p *Prometheus) WaitForScrape(ctx context.Context, target string) error {
	q := fmt.Sprintf("up{job=%q,instance=%q}", PrometheusJob, target)
	for {
		v, err := p.QueryValue(ctx, q)
		if err == nil && v == 1 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("target %s not scraped: %w (last query: %v, target state: %s)", target, ctx.Err(), err, p.targetState(target))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// targetState describes the target's health and last error from /api/v1/targets.
func (p *Prometheus) targetState(target string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+"/api/v1/targets", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return err.Error()
	}
	for _, tg := range body.Data.ActiveTargets {
		if tg.Labels["instance"] == target {
			return fmt.Sprintf("health=%s lastError=%q", tg.Health, tg.LastError)
		}
	}
	return "not among the active targets"
}

// CheckRules runs `promtool check rules` on Prometheus rule files (alerting and recording
// rules) and fails the test with promtool's output when they are invalid.
func CheckRules(t testing.TB, files ...string) {
	t.Helper()
	bin := requireBinary(t, "promtool", "/usr/bin/promtool")
	out, err := exec.Command(bin, append([]string{"check", "rules"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", strings.Join(files, " "), err, out)
	}
}
