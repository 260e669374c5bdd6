package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/app"
	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/gpu"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/kvtype"
)

// planConfigFile writes a one-model config for the tiny test model with the given
// memory limit.
func planConfigFile(t *testing.T, limitGB string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hxp.yaml")
	yaml := "listen: 127.0.0.1:0\nmodels:\n  - name: tiny\n    path: " + testmodel.Path(t, "tiny") +
		"\n    memory_limit_gb: " + limitGB + "\n    cpu_cores: 1\n    parallel: 2\n    ctx_per_seq: 512\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPlanCommand(t *testing.T) {
	fits := planConfigFile(t, "1")
	var out bytes.Buffer
	if err := runPlan([]string{"--config", fits}, &out); err != nil {
		t.Fatalf("plan of a fitting config: %v\n%s", err, &out)
	}
	for _, want := range []string{"MODEL", "tiny", "2 x 512", "1.0 GiB", "cpu cores: 1 requested", "plan: fits"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan table lacks %q:\n%s", want, &out)
		}
	}
	out.Reset()
	if err := runPlan([]string{"--config", fits, "--json"}, &out); err != nil {
		t.Fatal(err)
	}
	var p struct {
		Fits   bool `json:"fits"`
		Models []struct {
			Name        string `json:"name"`
			NGPULayers  int    `json:"n_gpu_layers"`
			Parallel    int    `json:"parallel"`
			DeviceBytes uint64 `json:"device_bytes"`
		} `json:"models"`
	}
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatalf("--json: %v\n%s", err, &out)
	}
	if !p.Fits || len(p.Models) != 1 || p.Models[0].Name != "tiny" || p.Models[0].Parallel != 2 || p.Models[0].DeviceBytes == 0 {
		t.Errorf("--json plan: %+v", p)
	}

	tooSmall := planConfigFile(t, "0.001")
	out.Reset()
	if err := runPlan([]string{"--config", tooSmall}, &out); !errors.Is(err, errDoesNotFit) {
		t.Fatalf("plan of a config over its memory limit: %v", err)
	}
	for _, want := range []string{"DOES NOT FIT", "memory_limit_gb must be >= 1", "plan: DOES NOT FIT"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan table lacks %q:\n%s", want, &out)
		}
	}
	if code := runMain([]string{"plan", "--config", tooSmall}); code != 1 {
		t.Errorf("hxp plan exit code %d, want 1", code)
	}
}

// hxp serve refuses a config that does not fit before loading anything, with the plan
// table in its error, and exits 1.
func TestServeRefusesConfigThatDoesNotFit(t *testing.T) {
	tooSmall := planConfigFile(t, "0.001")
	err := runServe([]string{"--config", tooSmall, "--log-level", "error"})
	if !errors.Is(err, errDoesNotFit) {
		t.Fatalf("serve of a config over its memory limit: %v", err)
	}
	for _, want := range []string{"nothing was loaded", "MODEL", "WEIGHTS", "LIMIT", "tiny", "DOES NOT FIT", "advice: memory_limit_gb must be >= 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q:\n%v", want, err)
		}
	}
	if code := runMain([]string{"serve", "--config", tooSmall, "--log-level", "error"}); code != 1 {
		t.Errorf("hxp serve exit code %d, want 1", code)
	}
}

func TestModelSpec(t *testing.T) {
	off := false
	m := config.Model{Name: "m", Path: "m.gguf", MemoryLimitGB: 2, CPUCores: 3, CtxPerSeq: 1024, Parallel: 5,
		KVType: "q8_0", GPULayers: -1, Batch: 256, FlashAttention: &off}
	got := app.ModelSpec(m)
	want := gpu.ModelSpec{Name: "m", Path: "m.gguf", MemoryLimitBytes: 2 << 30, CPUCores: 3, CtxPerSeq: 1024, Parallel: 5,
		KVType: kvtype.Q8_0, GPULayers: -1, BatchSize: 256, NoFlashAttention: true}
	if got != want {
		t.Errorf("modelSpec = %+v, want %+v", got, want)
	}
	m.FlashAttention = nil // default on
	if app.ModelSpec(m).NoFlashAttention {
		t.Error("unset flash_attention planned as off")
	}
}

// applyPlan passes the planner's n_gpu_layers, slots and context to the models.
func TestApplyPlan(t *testing.T) {
	cfg := &config.Config{Models: []config.Model{{Name: "a", GPULayers: -1, Parallel: 8, CtxPerSeq: 8192}, {Name: "b", Parallel: 1, CtxPerSeq: 512}}}
	p := gpu.Plan{Models: []gpu.ModelPlan{
		{Name: "a", NGPULayers: 33, Parallel: 4, CtxPerSeq: 4096, Fits: true, Reasons: []string{"cut"}},
		{Name: "b", NGPULayers: 0, Parallel: 1, CtxPerSeq: 512, Fits: true},
	}}
	applyPlan(cfg, p, zerolog.Nop())
	if a := cfg.Models[0]; a.GPULayers != 33 || a.Parallel != 4 || a.CtxPerSeq != 4096 {
		t.Errorf("model a after the plan: %+v", a)
	}
	if b := cfg.Models[1]; b.GPULayers != 0 || b.Parallel != 1 || b.CtxPerSeq != 512 {
		t.Errorf("model b after the plan: %+v", b)
	}
}

// The backend library comes from HXP_BACKEND_LIB; one that does not load is logged and
// the server goes on without it.
func TestLoadBackend(t *testing.T) {
	t.Setenv(BackendLibEnv, "")
	if p := backendLibPath(); p != "" {
		t.Fatalf("backend library found next to the test binary: %s", p)
	}
	bogus := filepath.Join(t.TempDir(), "libggml-cuda.so")
	if err := os.WriteFile(bogus, []byte("not a shared library"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(BackendLibEnv, bogus)
	if p := backendLibPath(); p != bogus {
		t.Fatalf("backendLibPath = %q, want %q", p, bogus)
	}
	var logs bytes.Buffer
	loadBackend(zerolog.New(&logs))
	if !strings.Contains(logs.String(), "GPU backend not loaded") || !strings.Contains(logs.String(), bogus) {
		t.Errorf("failed load not logged: %s", &logs)
	}
}
