package sched_test

import (
	"context"
	"testing"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// TestFreshPromptFirst: a request admitted while others decode gets its prompt
// evaluated in a step of its own, before their decodes (its first token does not wait
// for their step), under per-sequence KV; the others decode in the next step, beside
// B's own second token. Under a unified KV buffer, where the prompt and the decodes
// share one evaluation, they stay in one step.
func TestFreshPromptFirst(t *testing.T) {
	for _, unified := range []bool{false, true} {
		var plans []sched.StepPlan
		var s *sched.Scheduler
		s = newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 3, UnifiedKV: unified},
			StepHook: func() { plans = append(plans, s.Plan()) }})
		var streams []<-chan sched.Event
		for _, text := range []string{"Once upon a time", "The capital of France is"} {
			ch, err := s.Submit(context.Background(), sched.Request{Prompt: prompt(t, text), MaxTokens: 40, IgnoreEOS: true, Tenant: "a"})
			if err != nil {
				t.Fatal(err)
			}
			<-ch // decoding: its prompt is evaluated
			streams = append(streams, ch)
		}
		bp := prompt(t, "Hello world, how are you today? I hope that all is well with you and with yours.")
		b, err := s.Submit(context.Background(), sched.Request{Prompt: bp, MaxTokens: 4, IgnoreEOS: true, Tenant: "b"})
		if err != nil {
			t.Fatal(err)
		}
		if out := collect(t, b); out.final.Err != nil || len(out.tokens) != 4 {
			t.Fatalf("B: %d tokens, %v", len(out.tokens), out.final.Err)
		}
		for _, ch := range streams {
			for range ch {
			}
		}
		s.Close() // plans is written by the loop: read it once the loop has stopped
		var found bool
		for i, p := range plans {
			if len(p.Prefill) != 1 || p.Prefill[0].Tokens != len(bp) {
				continue // not B's prompt (A's are shorter)
			}
			found = true
			if !unified && (len(p.Decode) != 0 || i+1 == len(plans) || len(plans[i+1].Decode) != 3) {
				t.Errorf("split KV: B's prompt step %+v, next %+v; want the prompt alone, then A's two decodes and B's", p, plans[min(i+1, len(plans)-1)])
			}
			if unified && len(p.Decode) != 2 {
				t.Errorf("unified KV: B's prompt step %+v; want it beside both decodes", p)
			}
			break
		}
		if !found {
			t.Fatalf("unified=%v: no step evaluated B's prompt while A decoded: %+v", unified, plans)
		}
	}
}
