package gpu_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/gpu"
)

// TestCalibrationSweep measures llama.cpp's compute and output buffers over a grid of
// models, micro-batch sizes, contexts, slot counts and flash attention settings, and writes
// them with the planner's estimate as CSV to the file named by HXP_CALIBRATION_CSV (it is
// skipped when that is unset; the sweep creates 1536 contexts, about 30 s on a CPU). The
// compute-buffer constants in plan.go were fitted to this sweep; run it with a CUDA build on
// a GPU host (the models are fully offloaded there) to check or refit them for the GPU.
func TestCalibrationSweep(t *testing.T) {
	out := os.Getenv("HXP_CALIBRATION_CSV")
	if out == "" {
		t.Skip("set HXP_CALIBRATION_CSV to a file to run the calibration sweep")
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintln(f, "model,n_embd,n_vocab,n_head,n_head_kv,n_ubatch,seq_ctx,seqs,flash_attn,compute_bytes,output_bytes,estimate_bytes,error")
	dir := t.TempDir()
	for _, name := range []string{"tiny", "demo", "bench", "bench-q8_0", "gqa", "vocab", "wide", "moe"} {
		path := calibrationModel(t, dir, name)
		info, err := gpu.ReadHeaderInfo(path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := engine.LoadModel(engine.ModelParams{Path: path, GPULayers: -1})
		if err != nil {
			t.Fatal(err)
		}
		for _, ub := range []int{64, 128, 256, 512, 1024, 2048} {
			for _, seqCtx := range []int{256, 1000, 2048, 4096} {
				for _, seqs := range []int{1, 2, 4, 8} {
					for _, fa := range []bool{false, true} {
						ctx, err := m.NewContext(engine.ContextParams{SeqCtx: seqCtx, Sequences: seqs, Batch: ub, Threads: 1, FlashAttention: fa})
						if err != nil {
							m.Close()
							t.Fatal(err)
						}
						got := ctx.Memory()
						ctx.Close()
						est := gpu.ComputeBytes(info, seqs, seqCtx, gpu.Options{BatchSize: ub, NoFlashAttention: !fa})
						fmt.Fprintf(f, "%s,%d,%d,%d,%d,%d,%d,%d,%t,%d,%d,%d,%.4f\n", name, info.EmbeddingLength, info.VocabSize, info.HeadCount,
							info.HeadCountKV[0], ub, seqCtx, seqs, fa, got.ComputeBytes, got.OutputBytes, est, pct(est, got.ComputeBytes+got.OutputBytes)/100)
					}
				}
			}
		}
		m.Close()
	}
}
