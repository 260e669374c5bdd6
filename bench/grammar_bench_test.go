package bench

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/grammar"
	"github.com/hxp-ai/hxp/sched"
)

// benchSchema keeps a constrained stream inside its grammar for the whole run: at
// least 64 items, so the grammar never allows an end before genTokens.
const benchSchema = `{"type":"array","minItems":64,"items":{"type":"object","properties":{
	"id":{"type":"integer","minimum":0,"maximum":999999},
	"name":{"type":"string","maxLength":12},
	"tags":{"type":"array","items":{"enum":["red","green","blue"]},"maxItems":4}},
	"required":["id","name","tags"],"additionalProperties":false}}`

// streamsRun submits one request per stream at once and returns the whole run and
// each stream's own timings.
func streamsRun(b *testing.B, s *sched.Scheduler, reqs []sched.Request) (Run, []Run) {
	per := make([]Run, len(reqs))
	var wg sync.WaitGroup
	start := time.Now()
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := s.Submit(context.Background(), req)
			if err != nil {
				b.Error(err)
				return
			}
			var last time.Time
			for ev := range ch {
				now := time.Now()
				for range ev.Tokens {
					if last.IsZero() {
						per[i].TTFT.Add(now.Sub(start))
					} else {
						per[i].ITL.Add(now.Sub(last))
					}
					last = now
				}
				per[i].Tokens += len(ev.Tokens)
				if ev.Done && ev.Err != nil {
					b.Error(ev.Err)
				}
			}
			per[i].Requests = 1
		}()
	}
	wg.Wait()
	var all Run
	for _, r := range per {
		all.Merge(r)
	}
	all.Elapsed = time.Since(start)
	all.Prefill = all.TTFT.Max()
	return all, per
}

// BenchmarkGrammar measures what a JSON-schema grammar costs through the scheduler.
// Each round runs the same prompts unconstrained and with every stream constrained
// (alternating which goes first) and reports tok/s and their ratio. At 16 streams a
// round also runs 15 unconstrained streams beside one constrained one, and reports
// the inter-token latency of those 15 against the same 15 in the unconstrained run:
// the grammar is sampled per sequence, but on the scheduler's one loop, so its cost
// shows up in every stream's step.
func BenchmarkGrammar(b *testing.B) {
	m := loadBenchModel(b)
	g, err := grammar.FromSchema([]byte(benchSchema))
	if err != nil {
		b.Fatal(err)
	}
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("streams=%d", conc), func(b *testing.B) {
			cp := engine.ContextParams{SeqCtx: 256, Sequences: conc, Batch: 512, Threads: threads(), FlashAttention: true}
			s, err := sched.New(sched.Config{Name: "grammar", Model: m, Context: cp, QueueSize: conc})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			reqs := func(round, constrained int) []sched.Request {
				out := make([]sched.Request, conc)
				for i, p := range streamPrompts(b, m, conc, round) {
					out[i] = sched.Request{Prompt: p, MaxTokens: genTokens, IgnoreEOS: true}
					if i < constrained {
						out[i].Sampling.Grammar = g
					}
				}
				return out
			}
			streamsRun(b, s, reqs(-1, conc)) // warm up
			var plain, constrained Run
			var others, othersPlain Latencies
			var ratios []float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var rp, rc Run
				var perPlain []Run
				if i%2 == 0 {
					rp, perPlain = streamsRun(b, s, reqs(i, 0))
					rc, _ = streamsRun(b, s, reqs(i, conc))
				} else {
					rc, _ = streamsRun(b, s, reqs(i, conc))
					rp, perPlain = streamsRun(b, s, reqs(i, 0))
				}
				ratios = append(ratios, rc.TokensPerSecond()/rp.TokensPerSecond())
				plain.Merge(rp)
				constrained.Merge(rc)
				if conc > 1 {
					_, perMixed := streamsRun(b, s, reqs(i, 1))
					for j := 1; j < conc; j++ {
						others = append(others, perMixed[j].ITL...)
						othersPlain = append(othersPlain, perPlain[j].ITL...)
					}
				}
			}
			b.StopTimer()
			sort.Float64s(ratios)
			b.ReportMetric(plain.TokensPerSecond(), "plain_tok/s")
			b.ReportMetric(constrained.TokensPerSecond(), "grammar_tok/s")
			b.ReportMetric(constrained.TokensPerSecond()/plain.TokensPerSecond(), "grammar/plain")
			b.ReportMetric(ratios[len(ratios)/2], "grammar/plain_median")
			b.ReportMetric(ms(plain.ITL.Percentile(50)), "plain_itl_p50_ms")
			b.ReportMetric(ms(constrained.ITL.Percentile(50)), "grammar_itl_p50_ms")
			if conc > 1 {
				b.ReportMetric(ms(othersPlain.Percentile(50)), "others_itl_p50_ms")
				b.ReportMetric(ms(others.Percentile(50)), "others_beside_grammar_itl_p50_ms")
				b.ReportMetric(others.Percentile(50).Seconds()/othersPlain.Percentile(50).Seconds(), "others_itl_ratio")
				b.ReportMetric(ms(others.Percentile(99)), "others_beside_grammar_itl_p99_ms")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}
