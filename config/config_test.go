package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/internal/testenv"
)

// writeGGUF creates a file that passes the GGUF magic check.
func writeGGUF(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("GGUF\x03\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v is not Problems", err)
	}
	return ps
}

func hasProblem(ps Problems, path, substr string) bool {
	for _, p := range ps {
		if p.Path == path && strings.Contains(p.Msg, substr) {
			return true
		}
	}
	return false
}

func TestParseMinimalAppliesDefaults(t *testing.T) {
	dir := t.TempDir()
	m := writeGGUF(t, dir, "m.gguf")
	c, err := Parse([]byte("models:\n  - name: a\n    path: "+m+"\n"), Options{HostCores: 4})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":8000" || c.Log.Level != "info" || c.Server.MaxBodyBytes != DefaultMaxBodyBytes {
		t.Errorf("gateway defaults not applied: %+v", c)
	}
	got := c.Models[0]
	if got.CPUCores != 4 || got.Parallel != DefaultParallel || got.CtxPerSeq != DefaultCtxPerSeq ||
		got.KVType != "f16" || got.Embeddings != "mean" || got.TargetLatency() != 2*time.Second {
		t.Errorf("model defaults not applied: %+v", got)
	}
}

func TestUnsetCoresAreShared(t *testing.T) {
	c := &Config{Models: []Model{{Name: "a", CPUCores: 2}, {Name: "b"}, {Name: "c"}}}
	c.ApplyDefaults(8)
	if c.Models[1].CPUCores != 3 || c.Models[2].CPUCores != 3 {
		t.Errorf("cores = %d, %d; want 3, 3", c.Models[1].CPUCores, c.Models[2].CPUCores)
	}
}

func TestUnknownKeyIsAnError(t *testing.T) {
	_, err := Parse([]byte("models:\n  - name: a\n    pth: x\n"), Options{SkipFiles: true})
	if err == nil || !strings.Contains(err.Error(), "pth") || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("want an error naming the unknown key and line, got %v", err)
	}
}

func TestSecondDocumentIsAnError(t *testing.T) {
	_, err := Parse([]byte("listen: \":1\"\n---\nlisten: \":2\"\n"), Options{SkipFiles: true})
	if err == nil || !strings.Contains(err.Error(), "more than one document") {
		t.Fatalf("got %v", err)
	}
}

func TestValidationCollectsEveryProblem(t *testing.T) {
	y := `
listen: "nope"
log: {level: loud}
models:
  - name: Bad Name
    path: /does/not/exist.gguf
    cpu_cores: 64
    parallel: 1000
    kv_type: q4
    port: 11400
    gather_window: 1s
  - name: ok
    path: /does/not/exist.gguf
    port: 11400
    kv_type: q8_0
    flash_attention: false
    embeddings: sum
    ctx_per_seq: 8
`
	_, err := Parse([]byte(y), Options{HostCores: 2})
	ps := problemsOf(t, err)
	want := []struct{ path, substr string }{
		{"listen", `"nope"`},
		{"log.level", `"loud" is not one of trace`},
		{"models[0].name", `"Bad Name" is not allowed`},
		{"models[0].path", "no such file"},
		{"models[0].cpu_cores", "64 exceeds this host's 2 cores"},
		{"models[0].parallel", "1000 is out of range (1..256)"},
		{"models[0].kv_type", `"q4" is not one of f16, bf16, f32, q8_0, q4_0`},
		{"models[0].gather_window", "1s is out of range (a negative duration for none, 0 for 2ms, or up to 100ms)"},
		{"models[1].port", "11400 is already used by models[0]"},
		{"models[1].kv_type", "q8_0 needs flash_attention"},
		{"models[1].embeddings", `"sum"`},
		{"models[1].ctx_per_seq", "8 is out of range"},
	}
	_, err2 := Parse([]byte("models:\n  - {name: a, path: x, parallel: 8, batch: 4}\n"), Options{SkipFiles: true, HostCores: 2})
	if !hasProblem(problemsOf(t, err2), "models[0].batch", "4 is below parallel=8") {
		t.Errorf("batch < parallel: %v", err2)
	}
	for _, w := range want {
		if !hasProblem(ps, w.path, w.substr) {
			t.Errorf("missing problem %s: ...%s...", w.path, w.substr)
		}
	}
	if t.Failed() {
		t.Logf("got:\n%v", err)
	}
}

func TestCoresSumOverHost(t *testing.T) {
	dir := t.TempDir()
	m := writeGGUF(t, dir, "m.gguf")
	y := "models:\n  - {name: a, path: " + m + ", cpu_cores: 2}\n  - {name: b, path: " + m + ", cpu_cores: 2}\n"
	_, err := Parse([]byte(y), Options{HostCores: 2})
	if !hasProblem(problemsOf(t, err), "models", "add up to 4 but this host has 2") {
		t.Fatalf("got %v", err)
	}
	if _, err := Parse([]byte(y), Options{HostCores: 4}); err != nil {
		t.Fatalf("4 cores should fit: %v", err)
	}
}

func TestGatewayPortClashesWithModelPort(t *testing.T) {
	y := "listen: \":9000\"\nmodels:\n  - {name: a, path: x, port: 9000}\n"
	_, err := Parse([]byte(y), Options{SkipFiles: true, HostCores: 2})
	if !hasProblem(problemsOf(t, err), "models[0].port", "already used by listen") {
		t.Fatalf("got %v", err)
	}
}

func TestNotGGUF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.gguf")
	os.WriteFile(p, []byte("hello"), 0o644)
	_, err := Parse([]byte("models:\n  - {name: a, path: "+p+"}\n"), Options{HostCores: 2})
	if !hasProblem(problemsOf(t, err), "models[0].path", "not a GGUF file") {
		t.Fatalf("got %v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	y := "models:\n  - {name: hermes-2, path: a}\n  - {name: phi3, path: b}\n"
	env := []string{
		"HXP_LISTEN=127.0.0.1:9001",
		"HXP_LOG_LEVEL=debug",
		"HXP_SERVER_MAX_BODY_BYTES=2048",
		"HXP_SERVER_SHUTDOWN_GRACE=5s",
		"HXP_MODELS_HERMES_2_CPU_CORES=1",
		"HXP_MODELS_HERMES_2_FLASH_ATTENTION=true",
		"HXP_MODELS_HERMES_2_STRICT_ITL=true",
		"HXP_MODELS_HERMES_2_GATHER_WINDOW=-1ms",
		"HXP_MODELS_PHI3_PATH=/x/phi.gguf",
		"HXP_MODELS_PHI3_MEMORY_LIMIT_GB=2.5",
		"HXP_AUTH_API_KEYS=key-aaaaaaaa, key-bbbbbbbb",
		"HXP_TEST_SKIP_SERVICES=1", // not ours: ignored
		"PATH=/bin",
	}
	c, err := Parse([]byte(y), Options{SkipFiles: true, HostCores: 2, Environ: env})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9001" || c.Log.Level != "debug" || c.Server.MaxBodyBytes != 2048 ||
		c.Server.ShutdownGrace.D() != 5*time.Second {
		t.Errorf("gateway overrides not applied: %+v", c)
	}
	if c.Models[0].CPUCores != 1 || !c.Models[0].FlashAttentionOn() || !c.Models[0].StrictITL || c.Models[1].StrictITL ||
		c.Models[0].GatherWindow.D() != -time.Millisecond || c.Models[1].GatherWindow.D() != 0 {
		t.Errorf("hermes-2 overrides not applied: %+v", c.Models[0])
	}
	if c.Models[1].Path != "/x/phi.gguf" || c.Models[1].MemoryLimitGB != 2.5 {
		t.Errorf("phi3 overrides not applied: %+v", c.Models[1])
	}
	if len(c.Auth.APIKeys) != 2 || c.Auth.APIKeys[1] != "key-bbbbbbbb" {
		t.Errorf("keys = %q", c.Auth.APIKeys)
	}
}

func TestEnvErrorsNameTheVariable(t *testing.T) {
	y := "models:\n  - {name: a, path: x}\n"
	env := []string{"HXP_MODELS_B_PATH=x", "HXP_MODELS_A_PORTT=1", "HXP_MODELS_A_PORT=abc", "HXP_SERVER_IDLE_TIMEOUT=10", "HXP_MODELS_A_NAME=z"}
	_, err := Parse([]byte(y), Options{SkipFiles: true, HostCores: 2, Environ: env})
	ps := problemsOf(t, err)
	for _, w := range []struct{ path, substr string }{
		{"HXP_MODELS_B_PATH", "no configured model matches"},
		{"HXP_MODELS_A_PORTT", `unknown model field "PORTT"`},
		{"HXP_MODELS_A_PORT", `"abc" is not an integer`},
		{"HXP_SERVER_IDLE_TIMEOUT", "not a duration"},
		{"HXP_MODELS_A_NAME", "unknown model field"},
	} {
		if !hasProblem(ps, w.path, w.substr) {
			t.Errorf("missing %s: %s in\n%v", w.path, w.substr, err)
		}
	}
}

func TestAPIKeysFile(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	os.WriteFile(keys, []byte("# comment\nsecret-key-1\n\n  secret-key-2  \n"), 0o600)
	y := "auth: {api_keys_file: " + keys + "}\nmodels:\n  - {name: a, path: " + writeGGUF(t, dir, "m.gguf") + "}\n"
	c, err := Parse([]byte(y), Options{HostCores: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Auth.APIKeys) != 2 || c.Auth.APIKeys[1] != "secret-key-2" {
		t.Errorf("keys = %q", c.Auth.APIKeys)
	}
	// Invalid keys are named by position only: neither the key nor any echo of it (a prefix,
	// quoted, URL-escaped, base64, hex) appears in the error.
	for _, bad := range []string{"Zk8#q", "hxp-Kq3vX9zLp7 Wm2RyT"} {
		os.WriteFile(keys, []byte("good-key-0001\n"+bad+"\n"), 0o600)
		_, err = Parse([]byte(y), Options{HostCores: 2})
		if !hasProblem(problemsOf(t, err), "auth.api_keys", "key 2 is shorter than 8 characters or contains whitespace") {
			t.Fatalf("key %q: got %v", bad, err)
		}
		for _, secret := range []string{bad, "good-key-0001"} {
			if leaks := testenv.SecretLeaks(err.Error(), secret); leaks != nil {
				t.Errorf("the error for an invalid key echoes a key: %v\n%v", leaks, err)
			}
		}
	}
}

func TestEnvNamesCoverModelFields(t *testing.T) {
	names := strings.Join(EnvNames(), " ")
	for _, want := range []string{"HXP_LISTEN", "HXP_LOG_LEVEL", "HXP_SERVER_SHUTDOWN_GRACE",
		"HXP_MODELS_<NAME>_PATH", "HXP_MODELS_<NAME>_CPU_CORES", "HXP_AUTH_API_KEYS"} {
		if !strings.Contains(names, want) {
			t.Errorf("EnvNames lacks %s", want)
		}
	}
}

// The shipped configs parse; the enterprise one is valid for a host with enough cores
// and fails here only on what this host lacks.
func TestShippedConfigs(t *testing.T) {
	if _, err := Load("../configs/dev.yaml", Options{SkipFiles: true, HostCores: 2}); err != nil {
		t.Errorf("dev.yaml: %v", err)
	}
	c, err := Load("../configs/hxp-enterprise.yaml", Options{SkipFiles: true, HostCores: 32})
	if err != nil {
		t.Fatalf("hxp-enterprise.yaml: %v", err)
	}
	want := []struct {
		name            string
		port, cores, ms int
		gb              float64
	}{{"mixtral", 11400, 8, 2000, 90}, {"hermes", 11401, 4, 1500, 15}, {"openchat", 11402, 4, 1000, 8}, {"phi3", 11403, 2, 500, 4}}
	for i, w := range want {
		m := c.Models[i]
		if m.Name != w.name || m.Port != w.port || m.CPUCores != w.cores || m.TargetLatencyMS != w.ms || m.MemoryLimitGB != w.gb {
			t.Errorf("models[%d] = %+v, want %+v", i, m, w)
		}
	}
	_, err = Load("../configs/hxp-enterprise.yaml", Options{SkipFiles: true, HostCores: 2})
	if !hasProblem(problemsOf(t, err), "models[0].cpu_cores", "8 exceeds this host's 2 cores") {
		t.Errorf("got %v", err)
	}
}

func TestREADMEDocumentsEnv(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range EnvNames() {
		if !strings.Contains(string(readme), n) {
			t.Errorf("README.md does not document %s", n)
		}
	}
}
