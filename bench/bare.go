package bench

import (
	"fmt"
	"time"

	"github.com/hxp-ai/hxp/engine"
)

// BareDecode is the ceiling the scheduler is measured against: one llama_decode per
// step holding every stream's next token, greedy sampling through the engine's sampler
// chain, no queue and no channels. It clears ctx, prefills every prompt in one batch
// (batch must hold all their tokens) and generates n tokens per stream. Stream s runs
// as sequence ids[s] (nil: sequence s). The decode benchmarks and `hxp bench-decode`
// (the GPU kit) both run it.
func BareDecode(ctx *engine.Context, batch *engine.Batch, prompts [][]engine.Token, n int, ids []int) (Run, error) {
	m := ctx.Model()
	ctx.ClearAll()
	batch.Clear()
	if ids == nil {
		ids = make([]int, len(prompts))
		for s := range ids {
			ids[s] = s
		}
	}
	if len(ids) != len(prompts) {
		return Run{}, fmt.Errorf("bench: %d sequence ids for %d prompts", len(ids), len(prompts))
	}
	idx := make([]int, len(prompts))
	smp := make([]*engine.Sampler, 0, len(prompts))
	defer func() {
		for _, s := range smp {
			s.Close()
		}
	}()
	for s, p := range prompts {
		sm, err := m.NewSampler(engine.SamplingParams{})
		if err != nil {
			return Run{}, fmt.Errorf("bench: sampler of stream %d: %w", s, err)
		}
		smp = append(smp, sm)
		for i, t := range p {
			k, err := batch.Add(t, i, ids[s], i == len(p)-1)
			if err != nil {
				return Run{}, fmt.Errorf("bench: prompt of stream %d: %w", s, err)
			}
			idx[s] = k
		}
	}
	var r Run
	start := time.Now()
	last := start
	next := make([]engine.Token, len(prompts))
	for step := 0; step < n; step++ {
		if err := ctx.Decode(batch); err != nil {
			return Run{}, fmt.Errorf("bench: decode step %d: %w", step, err)
		}
		for s := range prompts {
			t, err := smp[s].Sample(ctx, batch, idx[s])
			if err != nil {
				return Run{}, fmt.Errorf("bench: sample stream %d at step %d: %w", s, step, err)
			}
			next[s] = t
		}
		now := time.Now()
		if step == 0 {
			r.Prefill = now.Sub(start)
		}
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
			k, err := batch.Add(next[s], len(prompts[s])+step, ids[s], true)
			if err != nil {
				return Run{}, fmt.Errorf("bench: next token of stream %d: %w", s, err)
			}
			idx[s] = k
		}
	}
	r.Elapsed = time.Since(start)
	r.Requests = len(prompts)
	return r, nil
}
