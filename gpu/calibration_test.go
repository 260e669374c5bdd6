package gpu_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/gpu"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/kvtype"
	"github.com/hxp-ai/hxp/modelgen"
)

// calibrationShapes are generated models that stress what the presets do not: many query
// heads per KV head, a vocabulary far wider than the model (logits dominate), a
// Llama-2-like width ratio without GQA (the FFN dominates with flash attention) and a
// mixture of experts. They derive from the tiny preset (two layers) to generate quickly.
var calibrationShapes = map[string]func(*modelgen.Preset){
	"gqa": func(p *modelgen.Preset) {
		p.Embd, p.Heads, p.HeadsKV, p.FFN, p.Vocab = 512, 16, 2, 1408, 8192
	},
	"vocab": func(p *modelgen.Preset) {
		p.Embd, p.Heads, p.HeadsKV, p.FFN, p.Vocab = 256, 4, 4, 512, 32000
	},
	"wide": func(p *modelgen.Preset) {
		p.Embd, p.Heads, p.HeadsKV, p.FFN, p.Vocab, p.Type = 1024, 8, 8, 2816, 8192, modelgen.F16
	},
	"moe": func(p *modelgen.Preset) {
		p.Embd, p.Heads, p.HeadsKV, p.FFN, p.Vocab, p.Experts, p.ExpertsUsed = 256, 8, 2, 896, 2000, 8, 2
	},
}

// calibrationModel returns the path of a preset ("tiny", "bench-q8_0") or of one of the
// calibrationShapes, generated once into dir.
func calibrationModel(t *testing.T, dir, name string) string {
	t.Helper()
	if preset, ftype, ok := strings.Cut(name, "-"); ok {
		return testmodel.Quantized(t, preset, ftype)
	}
	shape, ok := calibrationShapes[name]
	if !ok {
		return testmodel.Path(t, name)
	}
	p, err := modelgen.Lookup("tiny")
	if err != nil {
		t.Fatal(err)
	}
	shape(&p)
	p.Name = "calibration-" + name
	path := filepath.Join(dir, p.Name+".gguf")
	if err := modelgen.Generate(context.Background(), p, testmodel.Seed, path, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestEstimateMatchesLlamaCpp loads generated models through llama.cpp and compares the
// planner's estimate with the buffers llama.cpp reports it allocated, over a table of
// micro-batch sizes, contexts, slot counts and flash attention settings. Weights and KV
// must match within 2%, the compute estimate (compute and output buffers) within 15% and
// the total within 10%.
func TestEstimateMatchesLlamaCpp(t *testing.T) {
	cases := []struct {
		model               string
		seqCtx, seqs, batch int
		flash, unified      bool
	}{
		{"tiny", 512, 4, 512, false, false},
		{"tiny", 2048, 1, 2048, true, false},
		{"demo", 2048, 4, 512, false, false},
		{"demo", 4096, 2, 512, true, false},
		{"demo", 1000, 4, 64, false, false},
		{"bench", 2048, 2, 1024, true, false},
		{"bench-q8_0", 1024, 8, 512, false, false},
		{"bench-q8_0", 4096, 1, 128, true, false},
		{"gqa", 4096, 1, 256, true, false},
		{"gqa", 1000, 4, 2048, false, false},
		{"vocab", 2048, 2, 512, true, false},
		{"wide", 2048, 2, 512, true, false},
		{"wide", 1000, 4, 256, false, false},
		{"moe", 1000, 4, 512, true, false},
		// Unified caches (embedding contexts): attention spans every sequence's cells.
		{"demo", 1024, 4, 512, false, true},
		{"bench-q8_0", 2048, 2, 512, true, true},
	}
	dir := t.TempDir()
	type loaded struct {
		info gpu.HeaderInfo
		m    *engine.Model
	}
	models := map[string]loaded{}
	defer func() {
		for _, l := range models {
			l.m.Close()
		}
	}()
	var table []string
	for _, c := range cases {
		name := fmt.Sprintf("%s/ub%d/%dx%d", c.model, c.batch, c.seqCtx, c.seqs)
		if c.flash {
			name += "/fa"
		}
		if c.unified {
			name += "/unified"
		}
		t.Run(name, func(t *testing.T) {
			l, ok := models[c.model]
			if !ok {
				path := calibrationModel(t, dir, c.model)
				info, err := gpu.ReadHeaderInfo(path)
				if err != nil {
					t.Fatal(err)
				}
				m, err := engine.LoadModel(engine.ModelParams{Path: path})
				if err != nil {
					t.Fatal(err)
				}
				l = loaded{info, m}
				models[c.model] = l
			}
			ctx, err := l.m.NewContext(engine.ContextParams{SeqCtx: c.seqCtx, Sequences: c.seqs, Batch: c.batch, Threads: 1, FlashAttention: c.flash, UnifiedKV: c.unified})
			if err != nil {
				t.Fatal(err)
			}
			got := ctx.Memory()
			ctx.Close()
			got.WeightBytes = l.m.Memory().WeightBytes
			est := gpu.Estimate(l.info, kvtype.F16, c.seqs, c.seqCtx, gpu.Options{BatchSize: c.batch, NoFlashAttention: !c.flash, UnifiedKV: c.unified})
			compute := got.ComputeBytes + got.OutputBytes
			table = append(table, fmt.Sprintf("%-36s %9s %9s %+6.1f%% | %9s %9s %+6.1f%%", name,
				mib(compute), mib(est.Compute), pct(est.Compute, compute), mib(got.Total()), mib(est.Total()), pct(est.Total(), got.Total())))
			within(t, "weights", est.Weights, got.WeightBytes, 0.02)
			within(t, "kv", est.KV, got.KVBytes, 0.02)
			within(t, "compute+output", est.Compute, compute, 0.15)
			within(t, "total", est.Total(), got.Total(), 0.10)
		})
	}
	t.Logf("llama.cpp vs estimate (MiB; compute = compute + output buffers)\n%-36s %9s %9s %7s | %9s %9s %7s\n%s", "case",
		"compute", "estimate", "error", "total", "estimate", "error", strings.Join(table, "\n"))
}

func pct(est, got uint64) float64 { return 100 * (float64(est)/float64(got) - 1) }

func within(t *testing.T, what string, est, got uint64, tol float64) {
	t.Helper()
	if got == 0 {
		t.Fatalf("%s: llama.cpp reported nothing", what)
	}
	r := float64(est)/float64(got) - 1
	if r > tol || r < -tol {
		t.Errorf("%s: estimate %s vs allocated %s (%+.1f%%, allowed ±%.0f%%)", what, mib(est), mib(got), 100*r, 100*tol)
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.2fMiB", float64(b)/(1<<20)) }
