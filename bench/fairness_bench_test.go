package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// Shapes of the fair-share benchmark (issue 16): tenant A keeps floodInFlight
// requests of floodTokens in flight on floodSlots slots; tenant B sends one short
// request of probeTokens at a time.
const (
	floodSlots    = 8
	floodInFlight = 32
	floodTokens   = 128
	probeTokens   = 32
	probesPerRun  = 4    // B's requests per measurement
	shareWindow   = 2048 // generated tokens over which shares are measured
)

// BenchmarkFairShare compares FCFS with the fair policy on the same model in the same
// run, round after round:
//   - B's time to first token alone, under A's flood (fcfs, fair, and fair with
//     max_slots_share 7/8), and under a batch-priority flood (fair);
//   - the share of generated tokens B gets while A and B both keep 16 requests in
//     flight, with weights 1:1 and 1:3 (B's weight 3: ideal 0.5 and 0.75);
//   - the total generation throughput during the flood, fair over FCFS.
func BenchmarkFairShare(b *testing.B) {
	m := loadBenchModel(b)
	variants := []struct {
		name string
		fair sched.Fairness
	}{
		{"fcfs", sched.Fairness{FCFS: true}},
		{"fair", sched.Fairness{TenantQueueShare: 1}},
		{"fair_cap", sched.Fairness{TenantQueueShare: 1, MaxSlotsShare: 7.0 / 8}},
	}
	scheds := make([]*sched.Scheduler, len(variants))
	for i, v := range variants {
		s, err := sched.New(sched.Config{Name: "fair-" + v.name, Model: m, QueueSize: 4 * floodInFlight, Fairness: v.fair,
			Context: engine.ContextParams{SeqCtx: 512, Sequences: floodSlots, Batch: 512, Threads: threads(), FlashAttention: true}})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		scheds[i] = s
	}
	var alone Latencies
	flood := make([]Latencies, len(variants))
	var batchFlood Latencies
	rate := make([]float64, len(variants)) // tokens/s during the flood, summed over rounds
	shares := map[string][]float64{}
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		for i, v := range variants {
			s := scheds[i]
			alone = append(alone, probe(b, s, m, round)...)
			f := startFlood(b, s, m, "a", 1, sched.Interactive, floodInFlight, round)
			t0, n0 := time.Now(), f.tokens.Load()
			flood[i] = append(flood[i], probe(b, s, m, round)...)
			rate[i] += float64(f.tokens.Load()-n0) / time.Since(t0).Seconds()
			stopFloods(f)
			if v.name == "fair" {
				f = startFlood(b, s, m, "a", 1, sched.Batch, floodInFlight, round)
				batchFlood = append(batchFlood, probe(b, s, m, round)...)
				stopFloods(f)
			}
			if v.name == "fair_cap" {
				continue // the cap is about latency; shares are measured without it
			}
			for _, w := range []float64{1, 3} {
				fa := startFlood(b, s, m, "a", 1, sched.Interactive, floodInFlight/2, round)
				fb := startFlood(b, s, m, "b", w, sched.Interactive, floodInFlight/2, round)
				// Warm up: A held every slot when B arrived; its generations in progress
				// (slots x floodTokens) are not the policy's choice, so they are not counted.
				for fa.tokens.Load()+fb.tokens.Load() < floodSlots*floodTokens {
					time.Sleep(10 * time.Millisecond)
				}
				a0, b0 := fa.tokens.Load(), fb.tokens.Load()
				for fa.tokens.Load()-a0+fb.tokens.Load()-b0 < shareWindow {
					time.Sleep(10 * time.Millisecond)
				}
				da, db := fa.tokens.Load()-a0, fb.tokens.Load()-b0
				key := fmt.Sprintf("%s_share_b_w%g", v.name, w)
				shares[key] = append(shares[key], float64(db)/float64(da+db))
				stopFloods(fa, fb)
			}
		}
	}
	b.StopTimer()
	aloneP99 := alone.Percentile(99)
	b.ReportMetric(ms(alone.Percentile(50)), "b_alone_ttft_p50_ms")
	b.ReportMetric(ms(aloneP99), "b_alone_ttft_p99_ms")
	for i, v := range variants {
		b.ReportMetric(ms(flood[i].Percentile(50)), v.name+"_b_flood_ttft_p50_ms")
		b.ReportMetric(ms(flood[i].Percentile(99)), v.name+"_b_flood_ttft_p99_ms")
		b.ReportMetric(float64(flood[i].Percentile(99))/float64(aloneP99), v.name+"_b_p99_over_alone")
		b.ReportMetric(rate[i]/float64(b.N), v.name+"_flood_tok/s")
	}
	b.ReportMetric(ms(batchFlood.Percentile(50)), "fair_b_batchflood_ttft_p50_ms")
	b.ReportMetric(ms(batchFlood.Percentile(99)), "fair_b_batchflood_ttft_p99_ms")
	b.ReportMetric(float64(batchFlood.Percentile(99))/float64(aloneP99), "fair_b_batchflood_p99_over_alone")
	b.ReportMetric(rate[1]/rate[0], "throughput_fair_over_fcfs")
	for key, xs := range shares {
		sum := 0.0
		for _, x := range xs {
			sum += x
		}
		b.ReportMetric(sum/float64(len(xs)), key)
	}
	b.ReportMetric(0, "ns/op")
}

// probe sends B's requests one at a time and returns their times to first token.
func probe(b *testing.B, s *sched.Scheduler, m *engine.Model, round int) Latencies {
	var out Latencies
	for i := 0; i < probesPerRun; i++ {
		p, err := m.Tokenize(fmt.Sprintf("b %d-%d: %s", round, i, benchPrompts[i%len(benchPrompts)]), true, false)
		if err != nil {
			b.Fatal(err)
		}
		ch, err := s.Submit(context.Background(), sched.Request{Prompt: p, MaxTokens: probeTokens, IgnoreEOS: true, Tenant: "b"})
		if err != nil {
			b.Fatal(err)
		}
		for ev := range ch {
			if ev.Done {
				if ev.Err != nil {
					b.Fatal(ev.Err)
				}
				out.Add(ev.TimeToFirstToken)
			}
		}
	}
	return out
}

// floodRun is one tenant keeping a number of requests in flight until stopped.
type floodRun struct {
	tokens atomic.Int64 // generated tokens received
	queued atomic.Int64 // workers whose first request the scheduler took
	cancel context.CancelFunc
	wg     sync.WaitGroup
	s      *sched.Scheduler
}

// startFlood starts inFlight workers that each submit tenant's requests of
// floodTokens back to back, and returns once every worker's first request is in the
// scheduler and some run (not "every slot busy": a slot cap keeps a tenant below that).
func startFlood(b *testing.B, s *sched.Scheduler, m *engine.Model, tenant string, weight float64, pr sched.Priority, inFlight, round int) *floodRun {
	ctx, cancel := context.WithCancel(context.Background())
	f := &floodRun{cancel: cancel, s: s}
	for w := 0; w < inFlight; w++ {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			taken := false // the scheduler took this worker's first request
			for k := 0; ctx.Err() == nil; k++ {
				p, err := m.Tokenize(fmt.Sprintf("%s %d-%d-%d: %s", tenant, round, w, k, benchPrompts[(w+k)%len(benchPrompts)]), true, false)
				if err != nil {
					b.Error(err)
					return
				}
				ch, err := s.Submit(ctx, sched.Request{Prompt: p, MaxTokens: floodTokens, IgnoreEOS: true,
					Tenant: tenant, Weight: weight, Priority: pr})
				if errors.Is(err, sched.ErrOverloaded) {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil {
					b.Error(err)
					return
				}
				if !taken {
					taken = true
					f.queued.Add(1)
				}
				for ev := range ch {
					f.tokens.Add(int64(len(ev.Tokens)))
				}
			}
		}()
	}
	for f.queued.Load() < int64(inFlight) || s.Stats().Running == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	return f
}

// stopFloods cancels the floods' requests and waits until their schedulers are idle.
func stopFloods(fs ...*floodRun) {
	for _, f := range fs {
		f.cancel()
	}
	for _, f := range fs {
		f.wg.Wait()
		for f.s.Stats().Busy {
			time.Sleep(5 * time.Millisecond)
		}
	}
}
