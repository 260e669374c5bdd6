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
	// Probes of B per measurement: under FCFS each waits for A's whole backlog (15 s
	// on a quiet 2-core machine), so one is taken there.
	probesFair = 8
	probesFCFS = 1
	// Generated tokens skipped before a measurement (A's generations in progress when
	// B arrives are not the policy's choice) and counted in it.
	settleTokens = floodSlots * floodTokens
	shareWindow  = 2048
	rateWindow   = 1024
)

// fairVariant is one scheduler of the benchmark.
type fairVariant struct {
	name string
	fair sched.Fairness
	s    *sched.Scheduler
}

// BenchmarkFairShare compares FCFS with the fair policy (virtual token counters with
// preemption, no slot cap) on the same model in the same run, round after round:
//   - B's time to first token alone, under A's flood, and under A's flood at batch
//     priority (B interactive; fair only: FCFS has no classes, a batch flood is the
//     same flood to it);
//   - the share of generated tokens B gets while A and B both keep 16 requests in
//     flight, with weights 1:1 and 1:3 (B's weight 3: ideal 0.5 and 0.75);
//   - the total generation rate while A floods and B sends requests back to back, fair
//     over FCFS, windows interleaved (fcfs, fair, fcfs, fair).
func BenchmarkFairShare(b *testing.B) {
	m := loadBenchModel(b)
	variants := []*fairVariant{
		{name: "fcfs", fair: sched.Fairness{FCFS: true}},
		{name: "fair", fair: sched.Fairness{TenantQueueShare: 1}},
	}
	for _, v := range variants {
		s, err := sched.New(sched.Config{Name: "fair-" + v.name, Model: m, QueueSize: 4 * floodInFlight, Fairness: v.fair,
			Context: engine.ContextParams{SeqCtx: 512, Sequences: floodSlots, Batch: 512, Threads: threads(), FlashAttention: true}})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		v.s = s
	}
	type ttfts struct{ alone, flood, batchFlood Latencies }
	lat := make([]ttfts, len(variants))
	rate := make([]float64, len(variants)) // tokens/s, summed over windows
	shares := map[string][]float64{}
	var preempts int64
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		for i, v := range variants {
			s := v.s
			n := probesFair
			if v.fair.FCFS {
				n = probesFCFS
			}
			lat[i].alone = append(lat[i].alone, probe(b, s, m, round, probesFair)...)
			p0 := s.Stats().Preemptions
			for _, class := range []sched.Priority{sched.Interactive, sched.Batch} {
				if class == sched.Batch && v.fair.FCFS {
					continue
				}
				f := startFlood(b, s, m, "a", 1, class, floodInFlight, floodTokens, round)
				measure(floodSlots*probeTokens, 0, f) // every slot past its prompt: the flood's steady state
				l := probe(b, s, m, round, n)
				if class == sched.Batch {
					lat[i].batchFlood = append(lat[i].batchFlood, l...)
				} else {
					lat[i].flood = append(lat[i].flood, l...)
				}
				stopFloods(f)
			}
			for _, w := range []float64{1, 3} {
				fa := startFlood(b, s, m, "a", 1, sched.Interactive, floodInFlight/2, floodTokens, round)
				fb := startFlood(b, s, m, "b", w, sched.Interactive, floodInFlight/2, floodTokens, round)
				got, _ := measure(settleTokens, shareWindow, fa, fb)
				key := fmt.Sprintf("%s_share_b_w%g", v.name, w)
				shares[key] = append(shares[key], float64(got[1])/float64(got[0]+got[1]))
				stopFloods(fa, fb)
			}
			preempts += s.Stats().Preemptions - p0
		}
		for _, i := range []int{0, 1, 0, 1} { // interleaved: drift on a shared machine hits both
			s := variants[i].s
			fa := startFlood(b, s, m, "a", 1, sched.Interactive, floodInFlight, floodTokens, round)
			fb := startFlood(b, s, m, "b", 1, sched.Interactive, 1, probeTokens, round)
			got, d := measure(floodSlots*probeTokens, rateWindow, fa, fb) // the flood alone is its steady state
			rate[i] += float64(got[0]+got[1]) / d.Seconds()
			stopFloods(fa, fb)
		}
	}
	b.StopTimer()
	for i, v := range variants {
		aloneP99 := lat[i].alone.Percentile(99)
		b.ReportMetric(ms(lat[i].alone.Percentile(50)), v.name+"_b_alone_ttft_p50_ms")
		b.ReportMetric(ms(aloneP99), v.name+"_b_alone_ttft_p99_ms")
		for _, x := range []struct {
			name string
			l    Latencies
		}{{"flood", lat[i].flood}, {"batchflood", lat[i].batchFlood}} {
			if len(x.l) == 0 {
				continue
			}
			b.ReportMetric(ms(x.l.Percentile(50)), v.name+"_b_"+x.name+"_ttft_p50_ms")
			b.ReportMetric(ms(x.l.Percentile(99)), v.name+"_b_"+x.name+"_ttft_p99_ms")
			b.ReportMetric(float64(x.l.Percentile(99))/float64(aloneP99), v.name+"_b_"+x.name+"_p99_over_alone")
		}
		b.ReportMetric(rate[i]/float64(2*b.N), v.name+"_flood_tok/s")
	}
	b.ReportMetric(rate[1]/rate[0], "throughput_fair_over_fcfs")
	for key, xs := range shares {
		sum := 0.0
		for _, x := range xs {
			sum += x
		}
		b.ReportMetric(sum/float64(len(xs)), key)
	}
	// B's share against its weight's ideal w/(1+w): 1 is exact.
	for _, w := range []float64{1, 3} {
		xs := shares[fmt.Sprintf("fair_share_b_w%g", w)]
		sum := 0.0
		for _, x := range xs {
			sum += x
		}
		b.ReportMetric(sum/float64(len(xs))/(w/(1+w)), fmt.Sprintf("fair_share_b_w%g_over_ideal", w))
	}
	b.ReportMetric(float64(preempts)/float64(b.N), "fair_preemptions/round")
	b.ReportMetric(0, "ns/op")
}

// measure waits until fs have generated skip tokens, then until they have generated
// window more, and returns each one's tokens in the window and its duration.
func measure(skip, window int64, fs ...*floodRun) ([]int64, time.Duration) {
	sum := func() int64 {
		n := int64(0)
		for _, f := range fs {
			n += f.tokens.Load()
		}
		return n
	}
	for start := sum(); sum()-start < skip; {
		time.Sleep(10 * time.Millisecond)
	}
	t0 := time.Now()
	base := make([]int64, len(fs))
	for i, f := range fs {
		base[i] = f.tokens.Load()
	}
	for start := sum(); sum()-start < window; {
		time.Sleep(10 * time.Millisecond)
	}
	out := make([]int64, len(fs))
	for i, f := range fs {
		out[i] = f.tokens.Load() - base[i]
	}
	return out, time.Since(t0)
}

// probe sends n of B's requests one at a time and returns their times to first token.
func probe(b *testing.B, s *sched.Scheduler, m *engine.Model, round, n int) Latencies {
	var out Latencies
	for i := 0; i < n; i++ {
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

// startFlood starts inFlight workers that each submit tenant's requests of maxTokens
// back to back, and returns once every worker's first request is in the scheduler and
// some run (not "every slot busy": a slot cap keeps a tenant below that).
func startFlood(b *testing.B, s *sched.Scheduler, m *engine.Model, tenant string, weight float64, pr sched.Priority, inFlight, maxTokens, round int) *floodRun {
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
				ch, err := s.Submit(ctx, sched.Request{Prompt: p, MaxTokens: maxTokens, IgnoreEOS: true,
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
