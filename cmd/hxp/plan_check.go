package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/gpu"
	"github.com/hxp-ai/hxp/modelgen"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
)

func init() {
	register(command{
		name:    "plan-check",
		summary: "load a config's models together as planned and compare the plan with the memory measured",
		run:     func(args []string) error { return runPlanCheck(args, os.Stdout) },
	})
}

// planCheckPrompt is the prompt of the short generation after each load.
const planCheckPrompt = "Hello, how are you?"

// memProbe reads the memory in use on every device of a telemetry source (NVML's
// used memory of each GPU, or the host's used memory on a CPU-only host), summed.
type memProbe struct {
	src  gpu.Source
	devs []gpu.Device
}

func (p memProbe) used() (uint64, error) {
	var sum uint64
	for _, d := range p.devs {
		t, err := p.src.Telemetry(d.Index)
		if err != nil {
			return 0, err
		}
		sum += t.MemUsed
	}
	return sum, nil
}

// planCheckRow is one model's planned and measured memory.
type planCheckRow struct {
	plan                gpu.ModelPlan
	afterLoad, afterGen int64 // growth of the memory in use since before the load
	generated           bool  // afterGen was measured
}

func runPlanCheck(args []string, out io.Writer) error {
	fs := newFlags("plan-check", "--config FILE | --model NAME=PATH.gguf ... [--gen-tokens N]")
	cfgPath := fs.String("config", "", "YAML config file")
	var models modelFlags
	fs.Var(&models, "model", "the GGUF file at PATH as model NAME (repeatable; instead of --config)")
	genTokens := fs.Int("gen-tokens", 4, "tokens each model generates after its load, before the second reading (0: none)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: hxp plan-check --config FILE [flags]

Plans the config's models on this host as hxp serve does (see hxp plan), then loads
them one after the other through the same model service hxp serve uses, keeping
every one loaded, and reads the device memory in use (NVML; the host's memory on a
CPU-only host) before and after each load and after a short generation. Prints a
Markdown table of each model's planned device memory against what its load added
and the planner's error. The first GPU reading is taken after the GPU backend has
created its CUDA context, so the context is not counted against the first model.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *genTokens < 0 {
		return fmt.Errorf("%w: --gen-tokens %d: want 0 or more", errUsage, *genTokens)
	}
	cfg, err := serveConfig(*cfgPath, models, "", "warn", "console", false)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, os.Stderr)
	engine.SetLogger(log)

	src, err := gpu.Open()
	if err != nil {
		return fmt.Errorf("plan-check: %w", err)
	}
	defer src.Close()
	devs, err := src.Devices()
	if err != nil {
		return fmt.Errorf("plan-check: %w", err)
	}
	probe := memProbe{src: src, devs: devs}
	before, err := probe.used()
	if err != nil {
		return fmt.Errorf("plan-check: %w", err)
	}
	loadBackend(log)
	engine.Devices() // reads each device's memory, which creates the CUDA context
	base, err := probe.used()
	if err != nil {
		return fmt.Errorf("plan-check: %w", err)
	}
	p, err := planConfig(cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "devices: %s; memory in use %s before the GPU backend, %s after it (GPU backend and CUDA context: %s)\n\n",
		deviceNames(devs), modelgen.FormatBytes(int64(before)), modelgen.FormatBytes(int64(base)), signedBytes(int64(base)-int64(before)))
	fmt.Fprintf(out, "```\n%s```\n\n", p.Table())
	if !p.Fits() {
		return fmt.Errorf("%w: nothing was loaded (see the plan above)", errDoesNotFit)
	}
	applyPlan(cfg, p, log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var rows []planCheckRow
	var loaded []*service.Service
	defer func() {
		for _, s := range loaded {
			s.Close()
		}
	}()
	for _, m := range cfg.Models {
		mp, _ := p.Model(m.Name)
		row := planCheckRow{plan: mp}
		s, grew, err := loadMeasured(ctx, m, probe, log)
		if s != nil {
			loaded = append(loaded, s)
		}
		if err != nil {
			writePlanCheck(out, rows)
			return err
		}
		row.afterLoad = grew
		if *genTokens > 0 {
			if row.afterGen, err = generateMeasured(ctx, s, *genTokens, probe); err != nil {
				writePlanCheck(out, rows)
				return fmt.Errorf("model %s: generation after load: %w", m.Name, err)
			}
			row.afterGen += grew
			row.generated = true
		}
		rows = append(rows, row)
	}
	writePlanCheck(out, rows)
	fmt.Fprintf(out, "\nall %d models were loaded together\n", len(rows))
	if len(devs) > 0 && devs[0].Kind == gpu.KindCPU {
		fmt.Fprintln(out, "\nCPU-only host: the memory in use is the whole host's, which every other process moves too, and mapped weights are not counted: these figures check the steps, not the plan.")
	}
	return nil
}

// loadMeasured loads one model through its service and returns how much the memory in
// use grew. The service is returned whenever it was created, so that the caller closes it.
func loadMeasured(ctx context.Context, m config.Model, probe memProbe, log zerolog.Logger) (*service.Service, int64, error) {
	before, err := probe.used()
	if err != nil {
		return nil, 0, fmt.Errorf("plan-check: %w", err)
	}
	s := service.New(m, log, service.Options{})
	if err := s.Load(ctx); err != nil {
		return s, 0, err
	}
	after, err := probe.used()
	if err != nil {
		return s, 0, fmt.Errorf("plan-check: %w", err)
	}
	return s, int64(after) - int64(before), nil
}

// generateMeasured generates n tokens on s and returns how much the memory in use grew.
func generateMeasured(ctx context.Context, s *service.Service, n int, probe memProbe) (int64, error) {
	before, err := probe.used()
	if err != nil {
		return 0, err
	}
	prompt, err := s.Tokenize(planCheckPrompt, true, false)
	if err != nil {
		return 0, err
	}
	ch, err := s.Submit(ctx, sched.Request{Prompt: prompt, MaxTokens: n, IgnoreEOS: true})
	if err != nil {
		return 0, err
	}
	for ev := range ch {
		if ev.Done && ev.Err != nil {
			return 0, ev.Err
		}
	}
	after, err := probe.used()
	if err != nil {
		return 0, err
	}
	return int64(after) - int64(before), nil
}

// writePlanCheck writes the Markdown table of planned against measured memory.
func writePlanCheck(out io.Writer, rows []planCheckRow) {
	fmt.Fprintln(out, "| model | device | n_gpu_layers | parallel x ctx | planned weights | planned KV | planned compute | planned on device | after load | error | after generation | error |")
	fmt.Fprintln(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	var planned uint64
	var load, gen int64
	for _, r := range rows {
		mp := r.plan
		planned += mp.DeviceBytes
		load += r.afterLoad
		genCell, genErr := "-", "-"
		if r.generated {
			gen += r.afterGen
			genCell, genErr = signedBytes(r.afterGen), planError(r.afterGen, mp.DeviceBytes)
		}
		fmt.Fprintf(out, "| %s | %s | %d | %d x %d | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			mp.Name, mp.Device.Name, mp.NGPULayers, mp.Parallel, mp.CtxPerSeq,
			modelgen.FormatBytes(int64(mp.Need.Weights)), modelgen.FormatBytes(int64(mp.Need.KV)), modelgen.FormatBytes(int64(mp.Need.Compute)),
			modelgen.FormatBytes(int64(mp.DeviceBytes)), signedBytes(r.afterLoad), planError(r.afterLoad, mp.DeviceBytes), genCell, genErr)
	}
	if len(rows) > 1 {
		fmt.Fprintf(out, "| all | | | | | | | %s | %s | %s | %s | %s |\n", modelgen.FormatBytes(int64(planned)),
			signedBytes(load), planError(load, planned), signedBytes(gen), planError(gen, planned))
	}
}

// signedBytes formats a growth of memory that may be negative (other processes freed
// memory meanwhile, on a shared host).
func signedBytes(n int64) string {
	if n < 0 {
		return "-" + modelgen.FormatBytes(-n)
	}
	return modelgen.FormatBytes(n)
}

// planError is the planner's error as a signed percentage of the plan: positive when
// the measurement exceeds the plan.
func planError(measured int64, planned uint64) string {
	if planned == 0 {
		return "-"
	}
	return fmt.Sprintf("%+.1f%%", 100*(float64(measured)-float64(planned))/float64(planned))
}

// deviceNames lists the devices as "0: NVIDIA H200 (139.8 GiB)".
func deviceNames(devs []gpu.Device) string {
	s := ""
	for i, d := range devs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s: %s (%s)", d.Label(), d.Name, modelgen.FormatBytes(int64(d.TotalBytes)))
	}
	return s
}
