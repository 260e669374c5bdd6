package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// BenchmarkChunkedPrefill: 8 streams decode while a long prompt arrives. Without
// chunking the whole prompt is evaluated in one step and every stream stalls for it;
// with the latency-driven budget the prompt is split so that steps stay near the
// model's inter-token target (60 ms) while the prompt is within its first-token
// target (1 s), then grow with its lateness (`adaptive`, the default), or stay at the
// inter-token target however late it is (`strict`, sched.Config.StrictITL). Reports
// the streams' inter-token latency while the prompt is being evaluated, and the long
// request's time to first token, for each.
func BenchmarkChunkedPrefill(b *testing.B) {
	m := loadBenchModel(b)
	const streams, longTokens = 8, 1536
	target := 60 * time.Millisecond
	variants := []struct {
		name   string
		chunk  int
		strict bool
	}{{"adaptive", 0, false}, {"unchunked", -1, false}, {"strict", 0, true}}
	type result struct{ itl, ttft Latencies }
	results := make([]result, len(variants))
	scheds := make([]*sched.Scheduler, len(variants))
	for i, v := range variants {
		s, err := sched.New(sched.Config{Name: "chunk-" + v.name, Model: m, TargetLatency: time.Second, TargetITL: target,
			PrefillChunk: v.chunk, StrictITL: v.strict,
			Context: engine.ContextParams{SeqCtx: 2048, Sequences: streams + 1, Batch: 2048, Threads: threads(), FlashAttention: true}})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		scheds[i] = s
	}
	long := strings.Repeat("the history of the river and the old mill by the bridge ", 200)
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for i := range variants {
			itl, ttft := chunkRound(b, scheds[i], m, fmt.Sprintf("%d %s", it, long), longTokens, streams, it)
			results[i].itl = append(results[i].itl, itl...)
			results[i].ttft = append(results[i].ttft, ttft)
		}
	}
	b.StopTimer()
	for i, v := range variants {
		b.ReportMetric(ms(results[i].itl.Percentile(50)), v.name+"_itl_p50_ms")
		b.ReportMetric(ms(results[i].itl.Percentile(99)), v.name+"_itl_p99_ms")
		b.ReportMetric(ms(results[i].itl.Max()), v.name+"_itl_max_ms")
		b.ReportMetric(ms(results[i].ttft.Percentile(50)), v.name+"_long_ttft_ms")
	}
	b.ReportMetric(float64(results[1].itl.Max())/float64(results[0].itl.Max()), "stall_reduction_x")
	b.ReportMetric(0, "ns/op")
}

// chunkRound starts the streams, waits until they all decode, submits the long
// prompt, and returns the streams' inter-token gaps that overlap the time until its
// first token arrived (a gap that began before then counts when it ends: the decodes
// a step deferred for the prompt end after its first token).
func chunkRound(b *testing.B, s *sched.Scheduler, m *engine.Model, longText string, longTokens, streams, round int) (Latencies, time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var gaps Latencies
	var window struct{ from, to time.Time }
	var started, after sync.WaitGroup // after: every stream's first token once window.to is set
	after.Add(streams)
	var wg sync.WaitGroup
	for i, p := range streamPrompts(b, m, streams, round) {
		started.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := s.Submit(ctx, sched.Request{Prompt: p, IgnoreEOS: true, MaxTokens: 1500})
			if err != nil {
				b.Error(err)
				started.Done()
				return
			}
			var last time.Time
			first, ended := true, false
			for ev := range ch {
				now := time.Now()
				if len(ev.Tokens) == 0 {
					continue
				}
				if first {
					started.Done()
					first = false
				}
				mu.Lock()
				if !last.IsZero() && !window.from.IsZero() && now.After(window.from) && (window.to.IsZero() || last.Before(window.to)) {
					gaps.Add(now.Sub(last))
				}
				if !window.to.IsZero() && !ended {
					ended = true
					after.Done()
				}
				mu.Unlock()
				last = now
			}
			if !ended {
				after.Done()
			}
			_ = i
		}()
	}
	started.Wait()
	time.Sleep(100 * time.Millisecond) // steady decoding
	toks, _ := m.Tokenize(longText, true, false)
	toks = toks[:longTokens]
	mu.Lock()
	window.from = time.Now()
	mu.Unlock()
	ch, err := s.Submit(ctx, sched.Request{Prompt: toks, MaxTokens: 1, IgnoreEOS: true})
	if err != nil {
		b.Fatal(err)
	}
	var ttft time.Duration
	for ev := range ch {
		if ev.Done {
			ttft = ev.TimeToFirstToken
		}
	}
	mu.Lock()
	window.to = time.Now()
	mu.Unlock()
	after.Wait()
	cancel()
	wg.Wait()
	return gaps, ttft
}
