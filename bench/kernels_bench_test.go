package bench

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/engine"
)

// BenchmarkPrefillAttention evaluates one long prompt with flash attention, alternating
// the tiled kernel for prompt batches (engine/fattn.cpp) with ggml's own row kernel in
// every round, on the serving configuration (16 sequences, 1,024 cells each, 512-token
// batches). It reports the median prefill time of each and their ratio per round.
func BenchmarkPrefillAttention(b *testing.B) {
	m := loadBenchModel(b)
	for _, n := range []int{512, 1000} {
		b.Run(fmt.Sprintf("prompt%d", n), func(b *testing.B) {
			ctx, batch := bareContext(b, m, engine.ContextParams{SeqCtx: 1024, Sequences: 16, Batch: 512,
				Threads: threads(), FlashAttention: true})
			prompt := make([]engine.Token, n)
			for i := range prompt {
				prompt[i] = engine.Token((i*7919 + 13) % m.Info().VocabSize)
			}
			defer engine.SetTiledAttention(engine.SetTiledAttention(true))
			prefill := func(tiled bool) time.Duration {
				engine.SetTiledAttention(tiled)
				ctx.ClearAll()
				start := time.Now()
				for at := 0; at < n; at += batch.Cap() {
					batch.Clear()
					for i := at; i < min(n, at+batch.Cap()); i++ {
						if _, err := batch.Add(prompt[i], i, 0, i == n-1); err != nil {
							b.Fatal(err)
						}
					}
					if err := ctx.Decode(batch); err != nil {
						b.Fatal(err)
					}
				}
				return time.Since(start)
			}
			alternateKernel(b, "tiled", prefill)
		})
	}
}

// BenchmarkInt8Matmul alternates the int8 Q8_0 matrix-product kernel (engine/qmatmul.cpp)
// with ggml's own path in every round, on the serving configuration (16 sequences of
// 1,024 cells, flash attention): decoding 1, 2, 4 and 16 sequences (32 steps after a
// 16-token prompt each) and prefilling a 512-token prompt. It reports the median time of
// each (per decode step, or per prompt) and the median of the per-round ratios.
func BenchmarkInt8Matmul(b *testing.B) {
	if !engine.Int8MatmulAvailable() {
		b.Skip("this build has no int8 matrix-product kernel: the compiler does not target AVX-512 VNNI")
	}
	m := loadBenchModel(b)
	vocab := m.Info().VocabSize
	for _, c := range []struct {
		name         string
		seqs, prompt int
		steps        int
	}{{"decode1", 1, 16, 32}, {"decode2", 2, 16, 32}, {"decode4", 4, 16, 32}, {"decode16", 16, 16, 32}, {"prompt512", 1, 512, 0}} {
		b.Run(c.name, func(b *testing.B) {
			ctx, batch := bareContext(b, m, engine.ContextParams{SeqCtx: 1024, Sequences: 16, Batch: 512,
				Threads: threads(), FlashAttention: true})
			decode := func(from, n int) {
				batch.Clear()
				for s := 0; s < c.seqs; s++ {
					for p := from; p < from+n; p++ {
						if _, err := batch.Add(engine.Token((p*7919+s*104729+13)%vocab), p, s, p == from+n-1); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := ctx.Decode(batch); err != nil {
					b.Fatal(err)
				}
			}
			defer engine.SetInt8Matmul(engine.SetInt8Matmul(true))
			run := func(on bool) time.Duration {
				engine.SetInt8Matmul(on)
				ctx.ClearAll()
				if c.steps == 0 {
					start := time.Now()
					decode(0, c.prompt)
					return time.Since(start)
				}
				decode(0, c.prompt)
				start := time.Now()
				for i := 0; i < c.steps; i++ {
					decode(c.prompt+i, 1)
				}
				return time.Since(start) / time.Duration(c.steps)
			}
			alternateKernel(b, "int8", run)
		})
	}
}

// alternateKernel times run with HXP's kernel (true) and ggml's (false) once each per
// round, each going first in every other round, after one untimed run that pages the
// weights in and allocates the graphs. It reports the median time of each as
// <name>_ms and ggml_ms, and the median of the per-round ratios as <name>/ggml: a
// ratio within a round cancels the drift of a shared machine.
func alternateKernel(b *testing.B, name string, run func(ours bool) time.Duration) {
	run(true)
	var ours, ggml Latencies
	ratios := make([]float64, 0, b.N)
	for r := 0; r < b.N; r++ {
		var o, g time.Duration
		if r%2 == 0 {
			o, g = run(true), run(false)
		} else {
			g, o = run(false), run(true)
		}
		ours.Add(o)
		ggml.Add(g)
		ratios = append(ratios, ms(o)/ms(g))
	}
	sort.Float64s(ratios)
	b.ReportMetric(ms(ours.Percentile(50)), name+"_ms")
	b.ReportMetric(ms(ggml.Percentile(50)), "ggml_ms")
	b.ReportMetric(ratios[len(ratios)/2], name+"/ggml")
}
