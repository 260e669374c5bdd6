package helm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/hxp-ai/hxp/config"
)

const (
	chartDir  = "hxp"
	release   = "hxp"
	namespace = "llm"
)

func TestMain(m *testing.M) {
	// Helm's loader logs each symbolic link it follows (files/ links to deploy/prometheus
	// and deploy/grafana on purpose).
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// scaledObject is the part of KEDA's ScaledObject (keda.sh/v1alpha1) that the chart
// writes, with the field names and types of KEDA's CRD (trigger metadata are strings).
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// newObject returns the Go type an apiVersion/kind decodes into.
func newObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monv1.ServiceMonitor{}, true
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monv1.PrometheusRule{}, true
	case "keda.sh/v1alpha1 ScaledObject":
		return &scaledObject{}, true
	}
	return nil, false
}

// rendered is a rendered chart: its objects by "Kind/name".
type rendered map[string]any

func get[T any](t *testing.T, r rendered, kind, name string) T {
	t.Helper()
	o, ok := r[kind+"/"+name].(T)
	if !ok {
		t.Fatalf("no %s %q among %v", kind, name, r.names())
	}
	return o
}

func all[T any](r rendered) []T {
	var out []T
	for _, n := range r.names() {
		if o, ok := r[n].(T); ok {
			out = append(out, o)
		}
	}
	return out
}

func (r rendered) names() []string { return slices.Sorted(maps.Keys(r)) }

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// values reads a values file of the chart ("" for none) and applies overrides, each
// "a.b.c" path to a value.
func values(t *testing.T, file string, overrides map[string]any) map[string]any {
	t.Helper()
	vals := map[string]any{}
	if file != "" {
		v, err := chartutil.ReadValuesFile(filepath.Join(chartDir, file))
		if err != nil {
			t.Fatal(err)
		}
		vals = v.AsMap()
	}
	for path, v := range overrides {
		m := vals
		keys := strings.Split(path, ".")
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = v
	}
	return vals
}

// render renders the chart as `helm template` would for an install.
func render(ch *chart.Chart, vals map[string]any) (map[string]string, error) {
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true},
		chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, rv)
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// renderObjects renders the chart and strictly decodes every object: unknown or
// misspelt fields, wrong types and duplicate keys fail.
func renderObjects(t *testing.T, vals map[string]any) rendered {
	t.Helper()
	files, err := render(loadChart(t), vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	objs := rendered{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for i, doc := range docSep.Split(files[name], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			js, err := sigsyaml.YAMLToJSONStrict([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d: %v\n%s", name, i, err, doc)
			}
			var meta metav1.TypeMeta
			if err := json.Unmarshal(js, &meta); err != nil {
				t.Fatalf("%s document %d: %v", name, i, err)
			}
			obj, ok := newObject(meta.APIVersion, meta.Kind)
			if !ok {
				t.Fatalf("%s document %d: unexpected %s %s", name, i, meta.APIVersion, meta.Kind)
			}
			strict, err := sigsjson.UnmarshalStrict(js, obj)
			if err != nil || len(strict) > 0 {
				t.Fatalf("%s document %d (%s): %v %v\n%s", name, i, meta.Kind, err, strict, doc)
			}
			objName := reflect.ValueOf(obj).Elem().FieldByName("ObjectMeta").Interface().(metav1.ObjectMeta).Name
			key := meta.Kind + "/" + objName
			if _, dup := objs[key]; dup {
				t.Fatalf("%s rendered twice", key)
			}
			objs[key] = obj
		}
	}
	return objs
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// fakeSecrets is what each Secret-backed variable holds in these tests.
func fakeSecret(key string) string {
	switch {
	case strings.Contains(key, "postgres"):
		return "postgres://hxp:s3cret-" + key + "@db/hxp"
	case strings.Contains(key, "redis"):
		return "redis://:s3cret-" + key + "@cache:6379/0"
	}
	return "s3cret-" + key
}

// podConfig parses a pod's hxp.yaml (from its ConfigMap) with HXP's own config loader,
// in the environment the pod would have, and fails the test if HXP would refuse it.
func podConfig(t *testing.T, r rendered, d *appsv1.Deployment) *config.Config {
	t.Helper()
	spec := d.Spec.Template.Spec
	var cmName string
	for _, v := range spec.Volumes {
		if v.Name == "config" && v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	cm := get[*corev1.ConfigMap](t, r, "ConfigMap", cmName)
	var environ []string
	for _, e := range spec.Containers[0].Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.Value != "" {
			t.Errorf("%s: env %s is not from a Secret", d.Name, e.Name)
			continue
		}
		environ = append(environ, e.Name+"="+fakeSecret(e.ValueFrom.SecretKeyRef.Key))
	}
	c, err := config.Parse([]byte(cm.Data["hxp.yaml"]), config.Options{SkipFiles: true, HostCores: 64, Environ: environ})
	if err != nil {
		t.Fatalf("%s: HXP refuses its config: %v\n%s", d.Name, err, cm.Data["hxp.yaml"])
	}
	return c
}

func deployments(r rendered) []*appsv1.Deployment { return all[*appsv1.Deployment](r) }

// checkPods checks what every HXP pod needs: probes on the health endpoints, a drain
// before SIGTERM, a grace period above HXP's own, the Services' selectors and ports.
func checkPods(t *testing.T, r rendered, drainSeconds int64) {
	t.Helper()
	for _, d := range deployments(r) {
		spec := d.Spec.Template.Spec
		if len(spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", d.Name, len(spec.Containers))
		}
		c := spec.Containers[0]
		probe := func(name string, p *corev1.Probe, path string) {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.StrVal != "http" {
				t.Errorf("%s: %s probe %+v, want GET %s on port http", d.Name, name, p, path)
			}
		}
		probe("startup", c.StartupProbe, "/health/ready")
		probe("readiness", c.ReadinessProbe, "/health/ready")
		probe("liveness", c.LivenessProbe, "/health")
		if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8000 {
			t.Errorf("%s: ports %+v", d.Name, c.Ports)
		}
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil ||
			c.Lifecycle.PreStop.Sleep.Seconds != drainSeconds {
			t.Errorf("%s: preStop %+v, want a %ds sleep", d.Name, c.Lifecycle, drainSeconds)
		}
		cfg := podConfig(t, r, d)
		grace := spec.TerminationGracePeriodSeconds
		need := int64(cfg.Server.ShutdownGrace.D().Seconds()) + drainSeconds
		if grace == nil || *grace <= need {
			t.Errorf("%s: terminationGracePeriodSeconds %d, want above preStop %ds + server.shutdown_grace %s",
				d.Name, ptr.Deref(grace, 0), drainSeconds, cfg.Server.ShutdownGrace.D())
		}
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: container security context %+v", d.Name, sc)
		}
		// Every Deployment has a Service selecting its pods and a PodDisruptionBudget.
		selects := func(sel map[string]string) bool {
			for k, v := range sel {
				if d.Spec.Template.Labels[k] != v {
					return false
				}
			}
			return len(sel) > 0
		}
		var svc *corev1.Service
		for _, s := range all[*corev1.Service](r) {
			if selects(s.Spec.Selector) {
				svc = s
			}
		}
		if svc == nil || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.StrVal != "http" {
			t.Errorf("%s: no Service targets its http port (%+v)", d.Name, svc)
		}
		if !selects(d.Spec.Selector.MatchLabels) {
			t.Errorf("%s: selector %v does not match its pods", d.Name, d.Spec.Selector.MatchLabels)
		}
		pdb := get[*policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", d.Name)
		if !selects(pdb.Spec.Selector.MatchLabels) {
			t.Errorf("%s: PodDisruptionBudget selects %v", d.Name, pdb.Spec.Selector.MatchLabels)
		}
	}
}

// gpus returns the nvidia.com/gpu limit of a Deployment's container (0 when none) and
// fails if it is requested any other way.
func gpus(t *testing.T, d *appsv1.Deployment) int64 {
	t.Helper()
	res := d.Spec.Template.Spec.Containers[0].Resources
	if _, ok := res.Requests["nvidia.com/gpu"]; ok {
		t.Errorf("%s: nvidia.com/gpu belongs in limits (extended resources cannot be overcommitted)", d.Name)
	}
	q, ok := res.Limits["nvidia.com/gpu"]
	if !ok {
		return 0
	}
	return q.Value()
}

// checkGateway checks the gateways' config: one DNS upstream per model of every group,
// naming that group's headless Service.
func checkGateway(t *testing.T, r rendered, groups map[string][]string) {
	t.Helper()
	gw := get[*appsv1.Deployment](t, r, "Deployment", release+"-gateway")
	cfg := podConfig(t, r, gw)
	if len(cfg.Models) != 0 {
		t.Errorf("the gateway serves models itself: %+v", cfg.Models)
	}
	want := 0
	for group, models := range groups {
		svc := get[*corev1.Service](t, r, "Service", release+"-"+group)
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("Service %s is not headless", svc.Name)
		}
		node := podConfig(t, r, get[*appsv1.Deployment](t, r, "Deployment", release+"-"+group))
		var served []string
		for _, m := range node.Models {
			served = append(served, m.Name)
			if !strings.HasPrefix(m.Path, "/models/") {
				t.Errorf("group %s model %s: path %q is not under /models", group, m.Name, m.Path)
			}
		}
		if !slices.Equal(served, models) {
			t.Errorf("group %s serves %v, want %v", group, served, models)
		}
		for _, m := range models {
			want++
			dns := fmt.Sprintf("%s.%s.svc.cluster.local", svc.Name, namespace)
			if !slices.ContainsFunc(cfg.Upstreams, func(u config.Upstream) bool {
				return u.Model == m && u.DNS == dns && u.Port == 8000 && u.URL == ""
			}) {
				t.Errorf("gateway has no upstream for %s at %s: %+v", m, dns, cfg.Upstreams)
			}
		}
	}
	if len(cfg.Upstreams) != want {
		t.Errorf("gateway upstreams %+v, want %d", cfg.Upstreams, want)
	}
}

func TestDefaultValues(t *testing.T) {
	r := renderObjects(t, values(t, "", nil))
	want := []string{"ConfigMap/hxp-demo", "ConfigMap/hxp-gateway", "Deployment/hxp-demo", "Deployment/hxp-gateway",
		"PodDisruptionBudget/hxp-demo", "PodDisruptionBudget/hxp-gateway", "Service/hxp", "Service/hxp-demo"}
	if got := r.names(); !slices.Equal(got, want) {
		t.Fatalf("objects %v, want %v (autoscaling and monitoring are off by default)", got, want)
	}
	checkPods(t, r, 10)
	checkGateway(t, r, map[string][]string{"demo": {"demo"}})
	for _, d := range deployments(r) {
		if n := gpus(t, d); n != 0 {
			t.Errorf("%s requests %d GPUs on the CPU demo", d.Name, n)
		}
		if d.Spec.Replicas == nil {
			t.Errorf("%s: no replicas without an autoscaler", d.Name)
		}
	}
	// Without a Secret the pods get no secret variables and no key file.
	if env := get[*appsv1.Deployment](t, r, "Deployment", "hxp-gateway").Spec.Template.Spec.Containers[0].Env; len(env) != 0 {
		t.Errorf("env without a Secret: %+v", env)
	}
}

func TestEnterpriseValues(t *testing.T) {
	r := renderObjects(t, values(t, "values-enterprise.yaml", nil))
	checkPods(t, r, 10)
	groups := map[string][]string{"mixtral": {"mixtral"}, "chat": {"hermes", "openchat", "phi3"}}
	checkGateway(t, r, groups)

	// Four models on GPU nodes: each group's pods have one GPU, tolerate the GPU taint
	// and land on GPU nodes; the gateways need none.
	for group := range groups {
		d := get[*appsv1.Deployment](t, r, "Deployment", release+"-"+group)
		spec := d.Spec.Template.Spec
		if n := gpus(t, d); n != 1 {
			t.Errorf("%s: %d GPUs, want 1", d.Name, n)
		}
		if spec.NodeSelector["nvidia.com/gpu.present"] != "true" ||
			!slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool { return tl.Key == "nvidia.com/gpu" }) {
			t.Errorf("%s: node selector %v, tolerations %v", d.Name, spec.NodeSelector, spec.Tolerations)
		}
		if d.Spec.Replicas != nil {
			t.Errorf("%s: replicas %d set while KEDA scales it", d.Name, *d.Spec.Replicas)
		}
		// Scaled on its waiting requests by KEDA, from the metrics of its own pods.
		so := get[*scaledObject](t, r, "ScaledObject", d.Name)
		if so.Spec.ScaleTargetRef.Name != d.Name || len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "prometheus" {
			t.Fatalf("%s: ScaledObject %+v", d.Name, so.Spec)
		}
		md := so.Spec.Triggers[0].Metadata
		if q := md["query"]; !strings.Contains(q, "hxp_queue_depth") || !strings.Contains(q, `service="`+d.Name+`"`) ||
			!strings.Contains(q, `namespace="`+namespace+`"`) || md["threshold"] != "16" || md["serverAddress"] == "" {
			t.Errorf("%s: trigger %v", d.Name, md)
		}
	}
	if n := gpus(t, get[*appsv1.Deployment](t, r, "Deployment", "hxp-gateway")); n != 0 {
		t.Errorf("gateway requests %d GPUs", n)
	}
	hpa := get[*autoscalingv2.HorizontalPodAutoscaler](t, r, "HorizontalPodAutoscaler", "hxp-gateway")
	if hpa.Spec.ScaleTargetRef.Name != "hxp-gateway" || hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
		t.Errorf("gateway HPA %+v", hpa.Spec)
	}
	if len(all[*autoscalingv2.HorizontalPodAutoscaler](r)) != 1 {
		t.Errorf("HPAs for model groups beside KEDA's")
	}

	// Secrets only by reference: every variable comes from the Secret, the API keys file
	// is mounted from it, and no ConfigMap holds a URL or a key.
	gw := get[*appsv1.Deployment](t, r, "Deployment", "hxp-gateway")
	cfg := podConfig(t, r, gw)
	if cfg.Postgres.URL != fakeSecret("postgres-url") || cfg.Redis.URL != fakeSecret("redis-url") ||
		cfg.Auth.AdminKey != fakeSecret("admin-key") || cfg.Auth.NodeKey != fakeSecret("node-key") ||
		cfg.Auth.APIKeysFile != "/etc/hxp/secrets/api-keys" || !cfg.Auth.Required {
		t.Errorf("gateway secrets not wired: %+v %+v %+v", cfg.Postgres, cfg.Redis, cfg.Auth)
	}
	if !slices.ContainsFunc(gw.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Secret != nil && v.Secret.SecretName == "hxp" && len(v.Secret.Items) == 1 && v.Secret.Items[0].Key == "api-keys"
	}) {
		t.Errorf("the API keys file is not mounted from the Secret: %+v", gw.Spec.Template.Spec.Volumes)
	}
	for _, cm := range all[*corev1.ConfigMap](r) {
		for k, v := range cm.Data {
			for _, bad := range []string{"s3cret", "postgres://", "redis://", "HXP_AUTH"} {
				if strings.Contains(v, bad) {
					t.Errorf("ConfigMap %s key %s holds %q", cm.Name, k, bad)
				}
			}
		}
	}
	if fb := cfg.Routing.Fallbacks["hermes"]; !slices.Equal(fb, []string{"openchat"}) {
		t.Errorf("gateway fallbacks %v", cfg.Routing.Fallbacks)
	}
	checkMonitoring(t, r)
}

// checkMonitoring checks the ServiceMonitor, the PrometheusRule (the same rules as
// deploy/prometheus/alerts.yml) and the dashboard ConfigMap.
func checkMonitoring(t *testing.T, r rendered) {
	t.Helper()
	sm := get[*monv1.ServiceMonitor](t, r, "ServiceMonitor", release)
	if sm.Spec.JobLabel != "hxp.ai/job" || len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" ||
		sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor %+v", sm.Spec)
	}
	// The alert rules match jobs named hxp-...: every Service's job label must.
	for _, svc := range all[*corev1.Service](r) {
		if job := svc.Labels["hxp.ai/job"]; !strings.HasPrefix(job, "hxp-") {
			t.Errorf("Service %s: job label %q does not match the alerts' hxp-.*", svc.Name, job)
		}
		for k, v := range sm.Spec.Selector.MatchLabels {
			if svc.Labels[k] != v {
				t.Errorf("ServiceMonitor does not select Service %s", svc.Name)
			}
		}
	}

	var want monv1.PrometheusRuleSpec
	b, err := os.ReadFile("../prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := sigsyaml.YAMLToJSONStrict(b)
	if err != nil {
		t.Fatal(err)
	}
	if strict, err := sigsjson.UnmarshalStrict(js, &want); err != nil || len(strict) > 0 {
		t.Fatalf("alerts.yml is not a PrometheusRule spec: %v %v", err, strict)
	}
	rule := get[*monv1.PrometheusRule](t, r, "PrometheusRule", release)
	if len(want.Groups) == 0 || !reflect.DeepEqual(rule.Spec, want) {
		t.Errorf("PrometheusRule differs from deploy/prometheus/alerts.yml")
	}
	if rule.Labels["release"] != "prometheus" {
		t.Errorf("PrometheusRule labels %v", rule.Labels)
	}

	dash := get[*corev1.ConfigMap](t, r, "ConfigMap", release+"-dashboard")
	if dash.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap lacks the sidecar label: %v", dash.Labels)
	}
	file, err := os.ReadFile("../grafana/hxp-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := dash.Data["hxp-dashboard.json"]; strings.TrimSpace(got) != strings.TrimSpace(string(file)) || !json.Valid([]byte(got)) {
		t.Errorf("dashboard ConfigMap differs from deploy/grafana/hxp-dashboard.json")
	}
}

// TestMonitoringFilesAreLinks keeps one source of truth: the chart's files/ are symbolic
// links to deploy/prometheus and deploy/grafana, and Helm's loader reads through them.
func TestMonitoringFilesAreLinks(t *testing.T) {
	ch := loadChart(t)
	for name, target := range map[string]string{
		"files/alerts.yml":         "../prometheus/alerts.yml",
		"files/hxp-dashboard.json": "../grafana/hxp-dashboard.json",
	} {
		path := filepath.Join(chartDir, name)
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is not a symbolic link (%v): keep one copy, in %s", path, err, target)
			continue
		}
		resolved, err := filepath.EvalSymlinks(path)
		if err != nil || resolved != filepath.Clean(target) {
			t.Errorf("%s resolves to %s (%v), want %s", path, resolved, err, target)
		}
		want, err := os.ReadFile(target)
		if err != nil {
			t.Fatal(err)
		}
		idx := slices.IndexFunc(ch.Files, func(f *chart.File) bool { return f.Name == name })
		if idx < 0 || !bytes.Equal(ch.Files[idx].Data, want) {
			t.Errorf("the loaded chart's %s differs from %s", name, target)
		}
	}
}

func TestVariants(t *testing.T) {
	group := func(source map[string]any) []any {
		return []any{map[string]any{"name": "g", "source": source,
			"models": []any{map[string]any{"name": "m", "file": "m.gguf", "gpu_layers": 10}}}}
	}
	t.Run("CPU HPA instead of KEDA", func(t *testing.T) {
		r := renderObjects(t, values(t, "values-enterprise.yaml", map[string]any{
			"autoscaling.keda.enabled": false, "autoscaling.hpa.enabled": true}))
		if len(all[*scaledObject](r)) != 0 {
			t.Error("ScaledObjects with KEDA off")
		}
		for _, g := range []string{"mixtral", "chat"} {
			hpa := get[*autoscalingv2.HorizontalPodAutoscaler](t, r, "HorizontalPodAutoscaler", release+"-"+g)
			if hpa.Spec.ScaleTargetRef.Name != release+"-"+g || hpa.Spec.MaxReplicas < 2 {
				t.Errorf("HPA %s: %+v", g, hpa.Spec)
			}
		}
	})
	t.Run("models from an image", func(t *testing.T) {
		r := renderObjects(t, values(t, "", map[string]any{"modelGroups": group(map[string]any{
			"image": map[string]any{"repository": "registry.example/models", "tag": "v1", "path": "/gguf"}})}))
		d := get[*appsv1.Deployment](t, r, "Deployment", "hxp-g")
		init := d.Spec.Template.Spec.InitContainers
		if len(init) != 1 || init[0].Image != "registry.example/models:v1" || !strings.Contains(strings.Join(init[0].Command, " "), "/gguf/*") {
			t.Errorf("init containers %+v", init)
		}
		if n := gpus(t, d); n != 1 {
			t.Errorf("gpu_layers set: %d GPUs, want 1 by default", n)
		}
	})
	t.Run("models from a host path", func(t *testing.T) {
		r := renderObjects(t, values(t, "", map[string]any{"modelGroups": group(map[string]any{
			"hostPath": map[string]any{"path": "/opt/models"}})}))
		d := get[*appsv1.Deployment](t, r, "Deployment", "hxp-g")
		if !slices.ContainsFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
			return v.Name == "models" && v.HostPath != nil && v.HostPath.Path == "/opt/models"
		}) {
			t.Errorf("volumes %+v", d.Spec.Template.Spec.Volumes)
		}
	})
}

// TestRefusedValues checks that values the chart cannot deploy safely fail to render with
// a message naming the value.
func TestRefusedValues(t *testing.T) {
	ch := loadChart(t)
	for _, c := range []struct {
		overrides map[string]any
		want      string
	}{
		{map[string]any{"config.postgres.url": "postgres://hxp:pw@db/hxp"}, "config.postgres.url: connection URLs are secrets"},
		{map[string]any{"gateway.config.redis.url": "redis://:pw@cache:6379"}, "config.redis.url: connection URLs are secrets"},
		{map[string]any{"config.auth.admin_key_file": "/x"}, "config.auth.admin_key_file"},
		{map[string]any{"config.models": []any{}}, "config.models: the chart writes"},
		{map[string]any{"config.server.shutdown_grace": "1m30s"}, "config.server.shutdown_grace"},
		{map[string]any{"autoscaling.keda.enabled": true, "autoscaling.hpa.enabled": true}, "enable keda or hpa, not both"},
		{map[string]any{"modelGroups": []any{map[string]any{"name": "Bad_Name", "source": map[string]any{"pvc": map[string]any{"claimName": "x"}},
			"models": []any{map[string]any{"name": "m", "file": "m.gguf"}}}}}, `modelGroups[0].name: "Bad_Name"`},
		{map[string]any{"modelGroups": []any{map[string]any{"name": "g", "source": map[string]any{},
			"models": []any{map[string]any{"name": "m", "file": "m.gguf"}}}}}, "modelGroups[0].source: set exactly one"},
		{map[string]any{"modelGroups": []any{map[string]any{"name": "g", "source": map[string]any{"pvc": map[string]any{"claimName": "x"}},
			"models": []any{map[string]any{"name": "m", "path": "/x.gguf", "file": "x.gguf"}}}}}, "modelGroups[0].models[0].path"},
		{map[string]any{"modelGroups": []any{map[string]any{"name": "g", "source": map[string]any{"pvc": map[string]any{"claimName": "x"}},
			"models": []any{map[string]any{"name": "m"}}}}}, "modelGroups[0].models[0].file: missing"},
	} {
		_, err := render(ch, values(t, "", c.overrides))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("values %v: error %v, want %q", c.overrides, err, c.want)
		}
	}
}

// TestLint runs `helm lint`'s checks for both values files: any warning or error fails.
func TestLint(t *testing.T) {
	for _, file := range []string{"", "values-enterprise.yaml"} {
		res := lint.All(chartDir, values(t, file, nil), namespace, false)
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint (values %q): %s", file, m)
			}
		}
	}
}
