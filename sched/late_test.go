package sched_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// TestLatePromptStretchesSteps: a long prompt admitted beside a running stream gets
// larger chunks once it waits past its first-token target (steps stretched in
// proportion to its lateness), and stays at the inter-token budget's chunks under
// StrictITL or when it is a batch request (no first-token target). Both targets are 1 ms, so every step is over the inter-token target and
// the prompt is late from its first step.
func TestLatePromptStretchesSteps(t *testing.T) {
	long := prompt(t, strings.Repeat("the history of the river and the old mill by the bridge ", 30))[:400]
	for _, tc := range []struct {
		name          string
		strict, batch bool
	}{{"strict", true, false}, {"balanced", false, false}, {"batch request", false, true}} {
		pri := sched.Interactive
		if tc.batch {
			pri = sched.Batch
		}
		var plans []sched.StepPlan
		var s *sched.Scheduler
		s = newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 2, SeqCtx: 512, Batch: 256},
			TargetLatency: time.Millisecond, TargetITL: time.Millisecond, StrictITL: tc.strict,
			StepHook: func() { plans = append(plans, s.Plan()) }})
		a, err := s.Submit(context.Background(), sched.Request{Prompt: prompt(t, "Once upon a time"), MaxTokens: 480, IgnoreEOS: true})
		if err != nil {
			t.Fatal(err)
		}
		for range 8 { // decoding, and the step model has seen a few steps
			<-a
		}
		b, err := s.Submit(context.Background(), sched.Request{Prompt: long, MaxTokens: 1, IgnoreEOS: true, Priority: pri})
		if err != nil {
			t.Fatal(err)
		}
		if out := collect(t, b); out.final.Err != nil || len(out.tokens) != 1 {
			t.Fatalf("%s: B: %d tokens, %v", tc.name, len(out.tokens), out.final.Err)
		}
		s.Close() // plans is written by the loop: read it once the loop has stopped
		for range a {
		}
		biggest, mixed := 0, 0
		for _, p := range plans {
			if len(p.Decode) == 0 || len(p.Prefill) == 0 {
				continue
			}
			mixed++
			for _, c := range p.Prefill {
				biggest = max(biggest, c.Tokens)
			}
		}
		t.Logf("%s: %d-token prompt in %d steps beside the stream, largest chunk %d", tc.name, len(long), mixed, biggest)
		if mixed == 0 {
			t.Fatalf("%s: no step evaluated the prompt beside the stream", tc.name)
		}
		if (tc.strict || tc.batch) && biggest > 64 { // defaultChunk before the step model is calibrated, minChunk after
			t.Errorf("%s: a %d-token chunk beside the stream, over the inter-token budget", tc.name, biggest)
		}
		if !tc.strict && !tc.batch && biggest <= 64 {
			t.Errorf("a prompt late by 1000x its target never got more than %d tokens per step", biggest)
		}
	}
}
