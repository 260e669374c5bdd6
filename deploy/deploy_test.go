package deploy

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// knownMetrics lists every metric HXP exports, with its type. The dashboard and the alert
// rules may reference only these (plus Prometheus's own `up`). Keep it in step with the
// packages that declare them: sched, server (gateway and model listeners), gpu, health.
var knownMetrics = map[string]string{
	// Model services and the scheduler.
	"hxp_requests_total":               "counter",
	"hxp_queue_depth":                  "gauge",
	"hxp_queue_capacity":               "gauge",
	"hxp_running_sequences":            "gauge",
	"hxp_slots":                        "gauge",
	"hxp_prompt_tokens_total":          "counter",
	"hxp_generated_tokens_total":       "counter",
	"hxp_prompt_tokens_reused_total":   "counter",
	"hxp_time_to_first_token_seconds":  "histogram",
	"hxp_inter_token_latency_seconds":  "histogram",
	"hxp_request_duration_seconds":     "histogram",
	"hxp_queue_time_seconds":           "histogram",
	"hxp_step_batch_tokens":            "histogram",
	"hxp_step_duration_seconds":        "histogram",
	"hxp_kv_cache_usage_ratio":         "gauge",
	"hxp_kv_cache_cached_ratio":        "gauge",
	"hxp_rejections_total":             "counter",
	"hxp_generations_total":            "counter",
	"hxp_slot_moves_total":             "counter",
	"hxp_tenants_backlogged":           "gauge",
	"hxp_tenant_service_spread":        "gauge",
	"hxp_preemptions_total":            "counter",
	"hxp_model_up":                     "gauge",
	"hxp_model_target_latency_seconds": "gauge",
	"hxp_model_target_itl_seconds":     "gauge",
	// Gateway.
	"hxp_gateway_requests_total":            "counter",
	"hxp_gateway_upstream_duration_seconds": "histogram",
	// gpu.Collector.
	"hxp_gpu_memory_used_bytes":   "gauge",
	"hxp_gpu_memory_total_bytes":  "gauge",
	"hxp_gpu_utilization_ratio":   "gauge",
	"hxp_gpu_temperature_celsius": "gauge",
	"hxp_gpu_power_watts":         "gauge",
	// health.Registry.
	"hxp_health_check_status":           "gauge",
	"hxp_health_check_duration_seconds": "histogram",
	"hxp_health_transitions_total":      "counter",
}

var metricRef = regexp.MustCompile(`\bhxp_[a-z0-9_]+`)

// unknownMetrics returns the hxp_ names in text that are not exported metrics. Histogram
// series (_bucket, _sum, _count) count as their histogram.
func unknownMetrics(text string) []string {
	var bad []string
	for _, name := range metricRef.FindAllString(text, -1) {
		if _, ok := knownMetrics[name]; ok {
			continue
		}
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suf)
		}
		if knownMetrics[base] == "histogram" {
			continue
		}
		if !slices.Contains(bad, name) {
			bad = append(bad, name)
		}
	}
	return bad
}

func TestUnknownMetricsDetects(t *testing.T) {
	got := unknownMetrics(`rate(hxp_time_to_first_token_seconds_bucket[5m]) + hxp_queue_depth + hxp_queue_depth_bucket + hxp_typo_total`)
	if !slices.Equal(got, []string{"hxp_queue_depth_bucket", "hxp_typo_total"}) {
		t.Fatalf("unknownMetrics = %v", got)
	}
}

// promtool finds promtool (see ciTool).
func promtool(t *testing.T) string {
	t.Helper()
	return ciTool(t, "promtool", "prometheus")
}

func TestPromtool(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			cmd := exec.Command(bin, args...)
			cmd.Dir = "prometheus"
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string            `yaml:"alert"`
			Expr   string            `yaml:"expr"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type ruleTestFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			AlertName string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestAlertRules checks, without promtool, that the required alerts exist, name only known
// metrics, carry a severity, and are each tested both firing and not firing.
func TestAlertRules(t *testing.T) {
	var rules ruleFile
	readYAML(t, filepath.Join("prometheus", "alerts.yml"), &rules)
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			if bad := unknownMetrics(r.Expr); len(bad) > 0 {
				t.Errorf("alert %s references unknown metrics %v", r.Alert, bad)
			}
			if r.Labels["severity"] == "" {
				t.Errorf("alert %s has no severity label", r.Alert)
			}
		}
	}
	for _, want := range []string{"HXPModelDown", "HXPTTFTHigh", "HXPQueueSaturated", "HXPKVCacheHigh",
		"HXPGPUMemoryHigh", "HXPErrorRate", "HXPHealthCheckFailing"} {
		if !alerts[want] {
			t.Errorf("alerts.yml lacks %s", want)
		}
	}

	var tests ruleTestFile
	readYAML(t, filepath.Join("prometheus", "alerts_test.yml"), &tests)
	if !slices.Contains(tests.RuleFiles, "alerts.yml") {
		t.Errorf("alerts_test.yml does not load alerts.yml: %v", tests.RuleFiles)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if !alerts[a.AlertName] {
				t.Errorf("test %q checks unknown alert %s", tc.Name, a.AlertName)
			}
			if len(a.ExpAlerts) > 0 {
				fires[a.AlertName] = true
			} else {
				quiet[a.AlertName] = true
			}
		}
	}
	for a := range alerts {
		if !fires[a] || !quiet[a] {
			t.Errorf("alert %s: tested firing=%v, not firing=%v; want both", a, fires[a], quiet[a])
		}
	}
}

// collectStrings returns every string value in a decoded JSON document.
func collectStrings(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case []any:
		for _, e := range x {
			collectStrings(e, out)
		}
	case map[string]any:
		for _, e := range x {
			collectStrings(e, out)
		}
	}
}

type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		ID         int             `json:"id"`
		Type       string          `json:"type"`
		Title      string          `json:"title"`
		Datasource json.RawMessage `json:"datasource"`
		GridPos    struct {
			H, W, X, Y int
		} `json:"gridPos"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	} `json:"panels"`
}

func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("grafana", "hxp-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var strs []string
	collectStrings(raw, &strs)
	all := strings.Join(strs, "\n")
	if bad := unknownMetrics(all); len(bad) > 0 {
		t.Errorf("dashboard references unknown metrics %v", bad)
	}
	// What on-call needs to see must be on the dashboard.
	for _, m := range []string{"hxp_requests_total", "hxp_time_to_first_token_seconds_bucket", "hxp_model_target_latency_seconds",
		"hxp_inter_token_latency_seconds_bucket", "hxp_queue_depth", "hxp_running_sequences", "hxp_kv_cache_usage_ratio",
		"hxp_generated_tokens_total", "hxp_gpu_memory_used_bytes", "hxp_gpu_utilization_ratio", "hxp_gpu_temperature_celsius",
		"hxp_gpu_power_watts", "hxp_health_check_status", "hxp_model_up"} {
		if !strings.Contains(all, m) {
			t.Errorf("dashboard does not show %s", m)
		}
	}

	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard title %q uid %q, %d panels", d.Title, d.UID, len(d.Panels))
	}
	ids := map[int]bool{}
	type rect struct{ x0, y0, x1, y1 int }
	var placed []rect
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("duplicate panel id %d", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: grid position %+v outside the 24-column grid", p.Title, g)
		}
		r := rect{g.X, g.Y, g.X + g.W, g.Y + g.H}
		for _, o := range placed {
			if r.x0 < o.x1 && o.x0 < r.x1 && r.y0 < o.y1 && o.y0 < r.y1 {
				t.Errorf("panel %q overlaps another panel", p.Title)
			}
		}
		placed = append(placed, r)
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 || len(p.Datasource) == 0 {
			t.Errorf("panel %q has no query or no datasource", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
		}
	}
}

// TestSystemdUnit verifies the unit with systemd-analyze, against a copy whose ExecStart
// points at an existing binary (hxp itself is not installed here).
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("systemd", "hxp.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n", "User=hxp",
		"SystemCallFilter=@system-service", "ExecStart=/usr/local/bin/hxp serve"} {
		if !strings.Contains(unit, want) {
			t.Errorf("hxp.service lacks %q", want)
		}
	}
	analyze := ciTool(t, "systemd-analyze", "systemd")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "hxp.service")
	copyUnit := strings.Replace(unit, "ExecStart=/usr/local/bin/hxp", "ExecStart="+self, 1)
	if err := os.WriteFile(path, []byte(copyUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("systemd-analyze: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// Complaints about this host (no systemd as PID 1, missing users) are not about the unit.
		if line == "" || strings.Contains(line, "Failed to connect to bus") || strings.Contains(line, "not booted with systemd") {
			continue
		}
		if strings.Contains(line, path) || strings.Contains(line, "hxp.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}
