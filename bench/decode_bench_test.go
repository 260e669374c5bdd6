package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/sched"
)

// genTokens is the number of tokens each stream generates per measured run.
const genTokens = 64

var benchPrompts = []string{
	"Once upon a time in a small village there lived an old",
	"The quick brown fox jumps over the lazy dog while the",
	"In the beginning of the computer age, engineers built",
	"Yesterday the weather was cold and the river was",
}

func loadBenchModel(b *testing.B) *engine.Model {
	b.Helper()
	path := testmodel.Quantized(b, "bench", "q8_0")
	m, err := engine.LoadModel(engine.ModelParams{Path: path})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	return m
}

// streamPrompts returns n prompts, distinct per stream and per round (so that the
// scheduler's prefix cache cannot skip work the bare loop does).
func streamPrompts(b *testing.B, m *engine.Model, n, round int) [][]engine.Token {
	out := make([][]engine.Token, n)
	for i := range out {
		p, err := m.Tokenize(fmt.Sprintf("%d-%d %s", round, i, benchPrompts[i%len(benchPrompts)]), true, false)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = p
	}
	return out
}

func threads() int { return runtime.NumCPU() }

// bareLoop is the ceiling: one llama_decode per step holding every stream's next
// token, greedy sampling through the same sampler chain, no queue, no channels.
func bareLoop(b *testing.B, ctx *engine.Context, batch *engine.Batch, prompts [][]engine.Token, n int) Run {
	m := ctx.Model()
	ctx.ClearAll()
	batch.Clear()
	idx := make([]int, len(prompts))
	smp := make([]*engine.Sampler, len(prompts))
	for s, p := range prompts {
		smp[s], _ = m.NewSampler(engine.SamplingParams{})
		for i, t := range p {
			k, err := batch.Add(t, i, s, i == len(p)-1)
			if err != nil {
				b.Fatal(err)
			}
			idx[s] = k
		}
	}
	defer func() {
		for _, s := range smp {
			s.Close()
		}
	}()
	var r Run
	start := time.Now()
	last := start
	next := make([]engine.Token, len(prompts))
	for step := 0; step < n; step++ {
		if err := ctx.Decode(batch); err != nil {
			b.Fatal(err)
		}
		for s := range prompts {
			t, err := smp[s].Sample(ctx, batch, idx[s])
			if err != nil {
				b.Fatal(err)
			}
			next[s] = t
		}
		now := time.Now()
		for range prompts {
			if step == 0 {
				r.TTFT.Add(now.Sub(start))
			} else {
				r.ITL.Add(now.Sub(last))
			}
		}
		last = now
		r.Tokens += len(prompts)
		batch.Clear()
		for s := range prompts {
			idx[s], _ = batch.Add(next[s], len(prompts[s])+step, s, true)
		}
	}
	r.Elapsed = time.Since(start)
	r.Requests = len(prompts)
	return r
}

// schedRun submits every prompt at once to the scheduler and collects token timings.
func schedRun(b *testing.B, s *sched.Scheduler, prompts [][]engine.Token, n int) Run {
	var mu sync.Mutex
	var r Run
	var wg sync.WaitGroup
	start := time.Now()
	for _, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := s.Submit(context.Background(), sched.Request{Prompt: p, MaxTokens: n, IgnoreEOS: true})
			if err != nil {
				b.Error(err)
				return
			}
			var local Run
			last := time.Time{}
			for ev := range ch {
				now := time.Now()
				for range ev.Tokens {
					if last.IsZero() {
						local.TTFT.Add(now.Sub(start))
					} else {
						local.ITL.Add(now.Sub(last))
					}
					last = now
				}
				local.Tokens += len(ev.Tokens)
				if ev.Done && ev.Err != nil {
					b.Error(ev.Err)
				}
			}
			mu.Lock()
			r.Merge(local)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	return r
}

// BenchmarkSchedulerVsBare runs the bare decode loop and the scheduler alternately
// on the same model and context size, and reports both and their ratio.
func BenchmarkSchedulerVsBare(b *testing.B) {
	m := loadBenchModel(b)
	for _, conc := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("streams=%d", conc), func(b *testing.B) {
			cp := engine.ContextParams{SeqCtx: 256, Sequences: conc, Batch: 512, Threads: threads(), FlashAttention: true}
			ctx, err := m.NewContext(cp)
			if err != nil {
				b.Fatal(err)
			}
			defer ctx.Close()
			batch, _ := engine.NewBatch(cp.Batch)
			defer batch.Free()
			s, err := sched.New(sched.Config{Name: "bench", Model: m, Context: cp, QueueSize: conc})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			bareLoop(b, ctx, batch, streamPrompts(b, m, conc, -1), 4) // warm up both
			schedRun(b, s, streamPrompts(b, m, conc, -1), 4)
			var bare, sch Run
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				prompts := streamPrompts(b, m, conc, i)
				bare.Merge(bareLoop(b, ctx, batch, prompts, genTokens))
				sch.Merge(schedRun(b, s, prompts, genTokens))
			}
			b.StopTimer()
			b.ReportMetric(bare.TokensPerSecond(), "bare_tok/s")
			b.ReportMetric(sch.TokensPerSecond(), "sched_tok/s")
			b.ReportMetric(sch.TokensPerSecond()/bare.TokensPerSecond(), "sched/bare")
			b.ReportMetric(ms(bare.TTFT.Percentile(50)), "bare_ttft_p50_ms")
			b.ReportMetric(ms(sch.TTFT.Percentile(50)), "sched_ttft_p50_ms")
			b.ReportMetric(ms(sch.TTFT.Percentile(99)), "sched_ttft_p99_ms")
			b.ReportMetric(ms(bare.ITL.Percentile(50)), "bare_itl_p50_ms")
			b.ReportMetric(ms(bare.ITL.Percentile(99)), "bare_itl_p99_ms")
			b.ReportMetric(ms(sch.ITL.Percentile(50)), "sched_itl_p50_ms")
			b.ReportMetric(ms(sch.ITL.Percentile(99)), "sched_itl_p99_ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
