package engine_test

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/modelgen"
)

// attentionCase decodes batches and returns the logits of every token of the last one.
type attentionCase struct {
	name string
	// batches are decoded in order; each entry is (sequence, first position, length).
	batches [][][3]int
}

var attentionCases = []attentionCase{
	// 300 query rows: nine full blocks and a partial one, over a causal mask.
	{"one prompt", [][][3]int{{{0, 0, 300}}}},
	// The second batch's queries see 100 cached cells before their own.
	{"continuation", [][][3]int{{{0, 0, 100}}, {{0, 100, 150}}}},
	// Two sequences of one batch: the KV view has a stream per sequence.
	{"two sequences", [][][3]int{{{0, 0, 120}, {1, 0, 120}}}},
}

// TestTiledAttentionMatches checks the tiled flash-attention kernel (fattn.cpp) against
// the other two ways llama.cpp computes attention on the CPU: ggml's flash-attention
// kernel and, without flash attention, matrix products and a softmax. Head sizes 32
// (the tiny model), 64 and 96 take the kernel's 64-wide accumulation, its remainder
// loop, and both; every model has grouped-query attention.
func TestTiledAttentionMatches(t *testing.T) {
	type model struct{ name, path string }
	models := []model{{"head 32", testmodel.Path(t, "tiny")}}
	for _, d := range []struct {
		name                 string
		embd, heads, headsKV int
	}{{"head 64", 256, 4, 2}, {"head 96", 384, 4, 1}} {
		p := modelgen.Preset{Name: "fattn-test", Embd: d.embd, Layers: 2, Heads: d.heads, HeadsKV: d.headsKV, FFN: 256,
			Vocab: 1024, Context: 1024, RopeBase: 10000, NormEps: 1e-5, Type: modelgen.F16}
		path := filepath.Join(t.TempDir(), "model.gguf")
		if err := modelgen.Generate(context.Background(), p, modelgen.DefaultSeed, path, nil); err != nil {
			t.Fatal(err)
		}
		models = append(models, model{d.name, path})
	}
	for _, mod := range models {
		m, err := engine.LoadModel(engine.ModelParams{Path: mod.path})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		for _, tc := range attentionCases {
			t.Run(mod.name+"/"+tc.name, func(t *testing.T) { checkTiledAttention(t, m, tc) })
		}
	}
}

func checkTiledAttention(t *testing.T, m *engine.Model, tc attentionCase) {
	run := func(flash, tiled bool) ([][]float32, int64) {
		t.Helper()
		defer engine.SetTiledAttention(engine.SetTiledAttention(tiled))
		ctx := newCtx(t, m, engine.ContextParams{SeqCtx: 512, Sequences: 2, Batch: 512, Threads: 2, FlashAttention: flash})
		before := engine.TiledAttentionOps()
		logits := decodeParts(t, ctx, tc.batches)
		return logits, engine.TiledAttentionOps() - before
	}
	tiled, ops := run(true, true)
	if ops == 0 {
		t.Fatal("the tiled kernel computed no op: the prompt batch fell back to ggml's kernel")
	}
	ggml, ggmlOps := run(true, false)
	if ggmlOps != 0 {
		t.Fatalf("the tiled kernel ran %d ops while turned off", ggmlOps)
	}
	plain, _ := run(false, true)
	dTiled, dGGML := maxDiff(tiled, plain), maxDiff(ggml, plain)
	t.Logf("max |logit difference| from attention without flash: tiled %.2e, ggml's flash kernel %.2e", dTiled, dGGML)
	// ggml's kernel accumulates in f16 and the tiled one in f32: the tiled result may
	// not be further from the unfused computation than ggml's, beyond rounding.
	if dTiled > 2*dGGML+1e-3 {
		t.Errorf("tiled kernel is %.2e from the unfused computation, ggml's flash kernel %.2e", dTiled, dGGML)
	}
	if d := maxDiff(tiled, ggml); d > 0.05 {
		t.Errorf("tiled and ggml flash kernels differ by %.3g", d)
	}
}

// decodeParts decodes batches into ctx in order, each part of a batch being (sequence,
// first position, length) of deterministic tokens, and returns the logits of every
// token of the last batch.
func decodeParts(t *testing.T, ctx *engine.Context, batches [][][3]int) [][]float32 {
	t.Helper()
	vocab := ctx.Model().Info().VocabSize
	b, err := engine.NewBatch(512)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	for bi, batch := range batches {
		b.Clear()
		for _, part := range batch {
			for p := part[1]; p < part[1]+part[2]; p++ {
				if _, err := b.Add(engine.Token((p*7919+part[0]*104729)%vocab), p, part[0], true); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := ctx.Decode(b); err != nil {
			t.Fatalf("batch %d: %v", bi, err)
		}
	}
	out := make([][]float32, b.Len())
	for i := range out {
		l, err := ctx.Logits(b, i)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = append([]float32(nil), l...)
	}
	return out
}

func maxDiff(a, b [][]float32) float64 {
	var d float64
	for i := range a {
		for j := range a[i] {
			d = math.Max(d, math.Abs(float64(a[i][j]-b[i][j])))
		}
	}
	return d
}

// TestKernelsOff runs this test binary again with HXP_TILED_ATTENTION=off and
// HXP_INT8_MATMUL=off: HXP's kernels must then compute nothing, so that ggml's own
// kernels do all the work. The same prompt in this process takes both kernels (the int8
// one where the build has it), so the check is not vacuous.
func TestKernelsOff(t *testing.T) {
	child := os.Getenv(engine.TiledAttentionEnv) == "off"
	m, err := engine.LoadModel(engine.ModelParams{Path: testmodel.Quantized(t, "tiny", "q8_0")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	ctx := newCtx(t, m, engine.ContextParams{Batch: 256, FlashAttention: true})
	b, err := engine.NewBatch(256)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	for p := 0; p < 200; p++ {
		b.Add(engine.Token(p+10), p, 0, p == 199)
	}
	attn, mm := engine.TiledAttentionOps(), engine.Int8MatmulOps()
	if err := ctx.Decode(b); err != nil {
		t.Fatal(err)
	}
	attn, mm = engine.TiledAttentionOps()-attn, engine.Int8MatmulOps()-mm
	if child {
		if attn != 0 || mm != 0 {
			t.Fatalf("with both kernels off, tiled attention computed %d ops and the int8 kernel %d", attn, mm)
		}
		return
	}
	if attn == 0 || (engine.Int8MatmulAvailable() && mm == 0) {
		t.Fatalf("with both kernels on, tiled attention computed %d ops and the int8 kernel %d", attn, mm)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKernelsOff$", "-test.count=1")
	cmd.Env = append(os.Environ(), engine.TiledAttentionEnv+"=off", engine.Int8MatmulEnv+"=off")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child with both kernels off: %v\n%s", err, out)
	}
}
