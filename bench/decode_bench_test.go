package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
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
	path := testmodel.Quantized(b, "bench", benchQuant())
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

// bareContext returns a context and a batch for the bare loop, freed when b ends.
func bareContext(b *testing.B, m *engine.Model, cp engine.ContextParams) (*engine.Context, *engine.Batch) {
	ctx, err := m.NewContext(cp)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ctx.Close)
	batch, err := engine.NewBatch(cp.Batch)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(batch.Free)
	return ctx, batch
}

// bareLoop is the ceiling: one llama_decode per step holding every stream's next
// token, greedy sampling through the same sampler chain, no queue, no channels.
// Stream s is sequence s.
func bareLoop(b *testing.B, ctx *engine.Context, batch *engine.Batch, prompts [][]engine.Token, n int) Run {
	return bareLoopOn(b, ctx, batch, prompts, n, nil)
}

// bareLoopOn is bareLoop with stream s on sequence ids[s] (nil: s).
func bareLoopOn(b *testing.B, ctx *engine.Context, batch *engine.Batch, prompts [][]engine.Token, n int, ids []int) Run {
	r, err := BareDecode(ctx, batch, prompts, n, ids)
	if err != nil {
		b.Fatal(err)
	}
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
	r.Requests = len(prompts)
	r.Prefill = r.TTFT.Max()
	return r
}

// BenchmarkSchedulerVsBare runs the bare decode loop and the scheduler alternately
// on the same model and context size, and reports both and their ratio: per round
// (the two runs of a round share the machine's state) as the median and 25th
// percentile, and over all rounds. Throughput is given twice: over the whole run
// (prompts included) and for the decode phase after every stream's first token, as
// llama-batched-bench's S_TG. At 4 and 16 streams each round also runs one stream
// alone, so that batched-vs-single ratios come from the same rounds.
func BenchmarkSchedulerVsBare(b *testing.B) {
	m := loadBenchModel(b)
	for _, conc := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("streams=%d", conc), func(b *testing.B) {
			cp := engine.ContextParams{SeqCtx: 256, Sequences: conc, Batch: 512, Threads: threads(), FlashAttention: true}
			ctx, batch := bareContext(b, m, cp)
			s, err := sched.New(sched.Config{Name: "bench", Model: m, Context: cp, QueueSize: conc})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			bareLoop(b, ctx, batch, streamPrompts(b, m, conc, -1), 4) // warm up both
			schedRun(b, s, streamPrompts(b, m, conc, -1), 4)
			var bare, sch, bare1, sch1 Run
			var ratios, scaling []float64 // per round: sched/bare, and sched decode N streams / 1
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				prompts := streamPrompts(b, m, conc, i)
				var rb, rs Run
				if i%2 == 0 { // alternate which goes first
					rb, rs = bareLoop(b, ctx, batch, prompts, genTokens), schedRun(b, s, prompts, genTokens)
				} else {
					rs, rb = schedRun(b, s, prompts, genTokens), bareLoop(b, ctx, batch, prompts, genTokens)
				}
				ratios = append(ratios, rs.TokensPerSecond()/rb.TokensPerSecond())
				bare.Merge(rb)
				sch.Merge(rs)
				if conc > 1 { // a prompt of its own, so the prefix cache cannot skip it
					one := streamPrompts(b, m, 1, -2-i)
					rb1, rs1 := bareLoop(b, ctx, batch, one, genTokens), schedRun(b, s, one, genTokens)
					scaling = append(scaling, rs.DecodeTokensPerSecond()/rs1.DecodeTokensPerSecond())
					bare1.Merge(rb1)
					sch1.Merge(rs1)
				}
			}
			b.StopTimer()
			sort.Float64s(ratios)
			b.ReportMetric(bare.TokensPerSecond(), "bare_tok/s")
			b.ReportMetric(sch.TokensPerSecond(), "sched_tok/s")
			b.ReportMetric(bare.DecodeTokensPerSecond(), "bare_decode_tok/s")
			b.ReportMetric(sch.DecodeTokensPerSecond(), "sched_decode_tok/s")
			b.ReportMetric(sch.TokensPerSecond()/bare.TokensPerSecond(), "sched/bare")
			b.ReportMetric(ratios[len(ratios)/2], "sched/bare_median")
			b.ReportMetric(ratios[len(ratios)/4], "sched/bare_p25")
			if conc > 1 {
				sort.Float64s(scaling)
				b.ReportMetric(sch.TokensPerSecond()/sch1.TokensPerSecond(), "sched_x1")
				b.ReportMetric(sch.DecodeTokensPerSecond()/sch1.DecodeTokensPerSecond(), "sched_decode_x1")
				b.ReportMetric(scaling[len(scaling)/2], "sched_decode_x1_median")
				b.ReportMetric(bare.DecodeTokensPerSecond()/bare1.DecodeTokensPerSecond(), "bare_decode_x1")
			}
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

// benchQuant is the bench model's quantization: HXP_BENCH_QUANT (default q8_0).
func benchQuant() string {
	if q := os.Getenv("HXP_BENCH_QUANT"); q != "" {
		return q
	}
	return "q8_0"
}

// BenchmarkFragmentedSlots: 16 streams run, then every other one ends (clients leave
// at different times), so the 8 survivors sit on every other slot. With per-sequence
// KV buffers llama.cpp evaluates each run of adjacent sequence ids as a micro-batch of
// its own, so a decode loop that leaves streams where they are pays 8 graph
// evaluations per step; the scheduler moves the survivors next to each other (one KV
// copy each) and decodes them as one. Reported, alternately in the same run: the bare
// loop over 8 adjacent sequences (the ceiling), the bare loop over 8 sequences on every
// other id (no packing), and the scheduler's survivors after the cancellation.
func BenchmarkFragmentedSlots(b *testing.B) {
	m := loadBenchModel(b)
	const slots, survivors = 16, 8
	cp := engine.ContextParams{SeqCtx: 256, Sequences: slots, Batch: 512, Threads: threads(), FlashAttention: true}
	ctx, batch := bareContext(b, m, cp)
	every := make([]int, survivors)
	for i := range every {
		every[i] = 2 * i
	}
	var adjacent, spread, packed Run
	var moves int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		adjacent.Merge(bareLoopOn(b, ctx, batch, streamPrompts(b, m, survivors, i), genTokens, nil))
		spread.Merge(bareLoopOn(b, ctx, batch, streamPrompts(b, m, survivors, i), genTokens, every))
		r, mv := fragmentedRun(b, m, cp, streamPrompts(b, m, slots, i), genTokens)
		packed.Merge(r)
		moves += mv
	}
	b.StopTimer()
	// Decode throughput: the bare loops' first step (the prompts) is left out, as the
	// survivors' prompts were evaluated before the measurement.
	b.ReportMetric(adjacent.DecodeTokensPerSecond(), "adjacent_tok/s")
	b.ReportMetric(spread.DecodeTokensPerSecond(), "spread_tok/s")
	b.ReportMetric(packed.DecodeTokensPerSecond(), "sched_tok/s")
	b.ReportMetric(spread.DecodeTokensPerSecond()/adjacent.DecodeTokensPerSecond(), "spread/adjacent")
	b.ReportMetric(packed.DecodeTokensPerSecond()/adjacent.DecodeTokensPerSecond(), "sched/adjacent")
	b.ReportMetric(ms(adjacent.ITL.Percentile(50)), "adjacent_itl_p50_ms")
	b.ReportMetric(ms(spread.ITL.Percentile(50)), "spread_itl_p50_ms")
	b.ReportMetric(ms(packed.ITL.Percentile(50)), "sched_itl_p50_ms")
	b.ReportMetric(float64(moves)/float64(b.N), "moves/round")
	b.ReportMetric(0, "ns/op")
}

// fragmentedRun starts len(prompts) streams on a fresh scheduler (so stream i takes
// slot i), cancels every other one once all decode, and measures the survivors'
// next n tokens. It returns their run and the scheduler's slot moves.
func fragmentedRun(b *testing.B, m *engine.Model, cp engine.ContextParams, prompts [][]engine.Token, n int) (Run, int64) {
	s, err := sched.New(sched.Config{Name: "fragmented", Model: m, Context: cp, QueueSize: len(prompts)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	chans := make([]<-chan sched.Event, len(prompts))
	cancels := make([]context.CancelFunc, len(prompts))
	for i, p := range prompts { // one goroutine: queue order is slot order
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		if chans[i], err = s.Submit(ctx, sched.Request{Prompt: p, MaxTokens: 3 * n, IgnoreEOS: true}); err != nil {
			b.Fatal(err)
		}
	}
	for _, ch := range chans {
		<-ch // every stream decodes
	}
	for i := 1; i < len(prompts); i += 2 {
		cancels[i]()
		for range chans[i] {
		}
	}
	for i := 0; i < len(prompts); i += 2 {
		for len(chans[i]) > 0 { // tokens from before the cancellations
			<-chans[i]
		}
	}
	var mu sync.Mutex
	var r Run
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < len(prompts); i += 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancels[i]()
			var local Run
			last := start
			for ev := range chans[i] {
				now := time.Now()
				for range ev.Tokens {
					local.ITL.Add(now.Sub(last))
					last = now
				}
				if local.Tokens += len(ev.Tokens); local.Tokens >= n {
					break
				}
			}
			mu.Lock()
			r.Merge(local)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	if st := s.Stats(); st.Runs != 1 {
		b.Errorf("survivors' slots are in %d runs after packing, want 1", st.Runs)
	}
	return r, s.Stats().Moves
}
