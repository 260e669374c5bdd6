package deploy

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/hxp-ai/hxp/config"
)

// loadCompose parses deploy/compose/compose.yaml with the Compose specification's own
// loader: schema validation (unknown keys fail), interpolation and consistency checks.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	dir, err := filepath.Abs("compose")
	if err != nil {
		t.Fatal(err)
	}
	details := types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yaml")}},
		Environment: types.Mapping{},
	}
	p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("hxp", true)
	})
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return p
}

func TestComposeStack(t *testing.T) {
	p := loadCompose(t)
	want := []string{"alertmanager", "grafana", "hxp", "postgres", "prometheus", "qdrant", "redis"}
	if got := slices.Sorted(func(yield func(string) bool) {
		for n := range p.Services {
			if !yield(n) {
				return
			}
		}
	}); !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}

	// State in named volumes: every stateful service keeps its data across re-creation.
	for svc, path := range map[string]string{"hxp": "/var/lib/hxp", "postgres": "/var/lib/postgresql/data", "redis": "/data",
		"qdrant": "/qdrant/storage", "prometheus": "/prometheus", "alertmanager": "/alertmanager", "grafana": "/var/lib/grafana"} {
		if !slices.ContainsFunc(p.Services[svc].Volumes, func(v types.ServiceVolumeConfig) bool {
			return v.Type == types.VolumeTypeVolume && v.Target == path && p.Volumes[v.Source].Name != ""
		}) {
			t.Errorf("service %s keeps no named volume at %s", svc, path)
		}
	}

	// Secrets come from files under secrets/ only, never from the environment or the file.
	for name, s := range p.Secrets {
		if s.File == "" || filepath.Base(filepath.Dir(s.File)) != "secrets" || s.Environment != "" {
			t.Errorf("secret %s is not a file under secrets/: %+v", name, s)
		}
	}
	for _, svc := range p.Services {
		for k, v := range svc.Environment {
			if v != nil && (strings.Contains(k, "PASSWORD") && !strings.HasSuffix(k, "_FILE") || strings.Contains(*v, "://") && strings.Contains(*v, "@")) {
				t.Errorf("service %s: %s holds a secret in the environment", svc.Name, k)
			}
		}
	}

	// Every shared file the stack mounts exists: the rules and dashboard of deploy/.
	for name, c := range p.Configs {
		if _, err := os.Stat(c.File); err != nil {
			t.Errorf("config %s: %v", name, err)
		}
	}
	if f := p.Configs["alerts"].File; f != mustAbs(t, "prometheus/alerts.yml") {
		t.Errorf("Prometheus loads %s, not deploy/prometheus/alerts.yml", f)
	}
	if f := p.Configs["dashboard"].File; f != mustAbs(t, "grafana/hxp-dashboard.json") {
		t.Errorf("Grafana loads %s, not deploy/grafana/hxp-dashboard.json", f)
	}

	// hxp starts after its stores are healthy, is checked on readiness, and is given more
	// time to stop than its own shutdown grace.
	hxp := p.Services["hxp"]
	for _, dep := range []string{"postgres", "redis"} {
		if hxp.DependsOn[dep].Condition != types.ServiceConditionHealthy {
			t.Errorf("hxp does not wait for %s to be healthy", dep)
		}
	}
	if hc := hxp.HealthCheck; hc == nil || !slices.Contains(hc.Test, "http://127.0.0.1:8000/health/ready") {
		t.Errorf("hxp health check %+v", hc)
	}
	b, err := os.ReadFile(p.Configs["hxp"].File)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b, config.Options{SkipFiles: true, HostCores: 64})
	if err != nil {
		t.Fatalf("compose/hxp.yaml: %v", err)
	}
	if hxp.StopGracePeriod == nil || time.Duration(*hxp.StopGracePeriod) <= cfg.Server.ShutdownGrace.D() {
		t.Errorf("stop_grace_period %v is not above server.shutdown_grace %s", hxp.StopGracePeriod, cfg.Server.ShutdownGrace.D())
	}
	if u, err := url.Parse(cfg.Postgres.URL); err != nil || u.Host == "" || u.User == nil || func() bool { _, set := u.User.Password(); return set }() {
		t.Errorf("postgres.url %q: want a URL without a password (PGPASSFILE holds it)", cfg.Postgres.URL)
	}
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestComposePrometheus checks the stack's Prometheus config with promtool, with the
// shared rule file beside it as the stack mounts it.
func TestComposePrometheus(t *testing.T) {
	bin := promtool(t)
	dir := t.TempDir()
	for src, dst := range map[string]string{"compose/prometheus.yml": "prometheus.yml", "prometheus/alerts.yml": "alerts.yml"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "check", "config", "prometheus.yml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// ciTool finds a command-line tool that the Debian package pkg provides, skipping when it
// is absent unless CI is set (scripts/test-deps.sh installs it there, so a missing tool in
// CI is a failure).
func ciTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found in CI: %v (scripts/test-deps.sh installs the Debian package %s)", name, err, pkg)
		}
		t.Skipf("%s not installed (apt-get install %s, or scripts/test-deps.sh): %v", name, pkg, err)
	}
	return p
}

// TestAlertmanagerRouting checks the routing example with amtool and that each severity
// the alert rules use reaches the intended receivers.
func TestAlertmanagerRouting(t *testing.T) {
	bin := ciTool(t, "amtool", "prometheus-alertmanager")
	file := filepath.Join("alertmanager", "alertmanager.yml")
	if out, err := exec.Command(bin, "check-config", file).CombinedOutput(); err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
	var rules ruleFile
	readYAML(t, filepath.Join("prometheus", "alerts.yml"), &rules)
	severities := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if s := r.Labels["severity"]; strings.Contains(s, "{{") {
				severities["critical"], severities["warning"] = true, true // templated: both
			} else if s != "" {
				severities[s] = true
			}
		}
	}
	want := map[string]string{"critical": "pager,chat", "warning": "chat"}
	for sev := range severities {
		if _, ok := want[sev]; !ok {
			t.Errorf("alerts.yml uses severity %q, which the routing example does not cover", sev)
		}
	}
	for sev, receivers := range want {
		out, err := exec.Command(bin, "config", "routes", "test", "--config.file="+file, "alertname=HXPModelDown", "severity="+sev).Output()
		if err != nil {
			t.Fatalf("amtool config routes test: %v", err)
		}
		if got := strings.TrimSpace(string(out)); got != receivers {
			t.Errorf("severity %s goes to %q, want %q", sev, got, receivers)
		}
	}
}
