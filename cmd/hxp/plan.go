package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/app"
	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/gpu"
)

func init() {
	register(command{
		name:    "plan",
		summary: "print the memory plan of a config on this host (exit 1 when it does not fit)",
		run:     func(args []string) error { return runPlan(args, os.Stdout) },
	})
}

// BackendLibEnv names a ggml backend library (libggml-cuda.so) to load at start-up.
const BackendLibEnv = "HXP_BACKEND_LIB"

// backendLibName is the library looked for next to the executable when BackendLibEnv
// is unset (bin/ after `make cuda`).
const backendLibName = "libggml-cuda.so"

// errDoesNotFit is the error of a plan that does not fit the host.
var errDoesNotFit = errors.New("the config does not fit this host")

func runPlan(args []string, out io.Writer) error {
	fs := newFlags("plan", "--config FILE | --model NAME=PATH.gguf ... [--json]")
	cfgPath := fs.String("config", "", "YAML config file")
	var models modelFlags
	fs.Var(&models, "model", "plan the GGUF file at PATH as model NAME (repeatable; instead of --config)")
	asJSON := fs.Bool("json", false, "print the plan as JSON instead of a table")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: hxp plan --config FILE [--json]

Reads every model's GGUF header and plans the models on this host's devices, as
hxp serve does before it loads anything: the GPUs NVML reports when a CUDA backend
is loaded (%s, or %s next to the executable), else the host's memory and cores.
For each model it prints what it needs (weights, KV cache, compute buffer) against
its memory_limit_gb and the device's free memory, what the planner changed
(parallel, ctx_per_seq, gpu_layers) and what to change when it does not fit.
Exits 1 when the config does not fit.

Flags:
`, BackendLibEnv, backendLibName)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	cfg, err := serveConfig(*cfgPath, models, "", "warn", "console", false)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, os.Stderr)
	engine.SetLogger(log)
	loadBackend(log)
	p, err := planConfig(cfg, log)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			gpu.Plan
			Fits bool `json:"fits"`
		}{p, p.Fits()}); err != nil {
			return fmt.Errorf("write plan: %w", err)
		}
	} else if err := p.WriteTable(out); err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	if !p.Fits() {
		return errDoesNotFit
	}
	return nil
}

// backendLibPath is the ggml backend library to load: $HXP_BACKEND_LIB, else
// libggml-cuda.so next to the executable when it exists, else "".
func backendLibPath() string {
	if p := os.Getenv(BackendLibEnv); p != "" {
		return p
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), backendLibName)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// loadBackend loads the GPU backend library when there is one (see backendLibPath).
// A failed load is logged and the models run on the CPU.
func loadBackend(log zerolog.Logger) {
	path := backendLibPath()
	if path == "" {
		return
	}
	if err := engine.LoadBackend(path); err != nil {
		log.Error().Err(err).Str("library", path).Msg("GPU backend not loaded: models run on the CPU")
		return
	}
	for _, d := range engine.Devices() {
		if d.GPU {
			log.Info().Str("library", path).Str("device", d.Name).Str("description", d.Description).
				Uint64("free_bytes", d.FreeBytes).Uint64("total_bytes", d.TotalBytes).Msg("GPU backend loaded")
		}
	}
}

// planDevices returns the devices the models will use, and the host memory free for
// their CPU-resident parts (0 on a CPU-only host). GPUs count only when llama.cpp has
// a GPU backend: NVML's view of them when it has one, else llama.cpp's own. Without a
// GPU backend the host (its free memory and cores) is the one device, even when NVML
// sees GPUs, because llama.cpp cannot use them.
func planDevices(log zerolog.Logger) ([]gpu.Device, uint64, error) {
	var engineGPUs []gpu.Device
	for i, d := range engine.Devices() {
		if d.GPU {
			engineGPUs = append(engineGPUs, gpu.Device{Index: len(engineGPUs), Name: d.Description, Kind: gpu.KindGPU,
				TotalBytes: d.TotalBytes, FreeBytes: d.FreeBytes, UUID: fmt.Sprintf("ggml-%d-%s", i, d.Name)})
		}
	}
	devs, err := gpu.Discover()
	if err != nil {
		return nil, 0, err
	}
	nvmlGPUs := len(devs) > 0 && devs[0].Kind == gpu.KindGPU
	switch {
	case len(engineGPUs) > 0 && !nvmlGPUs:
		log.Warn().Msg("NVML sees no GPU but llama.cpp does: planning with llama.cpp's free memory (no GPU telemetry)")
		devs = engineGPUs
	case len(engineGPUs) == 0 && nvmlGPUs:
		log.Warn().Int("gpus", len(devs)).Msgf("NVML sees GPUs but no GPU backend is loaded (set %s or put %s next to hxp; see docs/cuda.md): planning for the CPU",
			BackendLibEnv, backendLibName)
		cpu, err := gpu.NewCPUSource("")
		if err != nil {
			return nil, 0, err
		}
		if devs, err = cpu.Devices(); err != nil {
			return nil, 0, err
		}
	}
	if devs[0].Kind == gpu.KindCPU {
		return devs, 0, nil
	}
	_, hostFree, err := gpu.HostMemory()
	if err != nil {
		return nil, 0, err
	}
	return devs, hostFree, nil
}

// planConfig plans cfg's models on this host's devices.
func planConfig(cfg *config.Config, log zerolog.Logger) (gpu.Plan, error) {
	devs, hostFree, err := planDevices(log)
	if err != nil {
		return gpu.Plan{}, fmt.Errorf("plan: %w", err)
	}
	specs := make([]gpu.ModelSpec, len(cfg.Models))
	for i, m := range cfg.Models {
		specs[i] = app.ModelSpec(m)
	}
	p, err := gpu.NewPlan(specs, devs, gpu.Options{HostCores: runtime.NumCPU(), HostFreeBytes: hostFree})
	if err != nil {
		return gpu.Plan{}, fmt.Errorf("plan: %w", err)
	}
	return p, nil
}

// prepareModels runs before hxp serve loads anything: it loads the GPU backend, plans
// the config on this host, refuses a config that does not fit (the error carries the
// plan table), and otherwise applies the plan to cfg: each model's n_gpu_layers, and
// the parallel slots and context per slot the planner chose when the requested ones did
// not fit.
func prepareModels(cfg *config.Config, log zerolog.Logger) error {
	loadBackend(log)
	p, err := planConfig(cfg, log)
	if err != nil {
		return err
	}
	if !p.Fits() {
		return fmt.Errorf("%w: nothing was loaded. Need against have per model and device, and what to change:\n\n%s\n(re-check with `hxp plan`)",
			errDoesNotFit, p.Table())
	}
	applyPlan(cfg, p, log)
	return nil
}

// applyPlan copies the planner's decisions into cfg's models and logs each one.
func applyPlan(cfg *config.Config, p gpu.Plan, log zerolog.Logger) {
	for i := range cfg.Models {
		m := &cfg.Models[i]
		mp, ok := p.Model(m.Name)
		if !ok {
			continue
		}
		ev := log.Info()
		if len(mp.Reasons)+len(mp.Warnings) > 0 {
			ev = log.Warn().Strs("changed", mp.Reasons).Strs("warnings", mp.Warnings)
		}
		dev := "cpu"
		if mp.Device.Kind == gpu.KindGPU {
			dev = "gpu" + mp.Device.Label()
		}
		ev.Str("model", m.Name).Str("device", dev).Str("device_name", mp.Device.Name).
			Int("n_gpu_layers", mp.NGPULayers).Int("parallel", mp.Parallel).Int("ctx_per_seq", mp.CtxPerSeq).
			Uint64("weights_bytes", mp.Need.Weights).Uint64("kv_bytes", mp.Need.KV).Uint64("compute_bytes", mp.Need.Compute).
			Uint64("limit_bytes", mp.LimitBytes).Msg("memory plan")
		app.ApplyModelPlan(m, mp)
	}
}
