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
			prefill(true) // warm up: weights paged in, graphs allocated
			var tiled, ggml Latencies
			var ratios []float64
			for r := 0; r < b.N; r++ {
				var t, g time.Duration
				if r%2 == 0 { // each goes first in every other round
					t, g = prefill(true), prefill(false)
				} else {
					g, t = prefill(false), prefill(true)
				}
				tiled.Add(t)
				ggml.Add(g)
				ratios = append(ratios, ms(t)/ms(g))
			}
			sort.Float64s(ratios)
			b.ReportMetric(ms(tiled.Percentile(50)), "tiled_ms")
			b.ReportMetric(ms(ggml.Percentile(50)), "ggml_ms")
			b.ReportMetric(ratios[len(ratios)/2], "tiled/ggml")
		})
	}
}
