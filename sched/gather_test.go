package sched_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// TestGatherBurst: requests that arrive a few milliseconds apart at an idle scheduler
// share its first step when the gather window covers their gaps, and the first step
// starts with the first request alone when gathering is off.
func TestGatherBurst(t *testing.T) {
	const n, gap = 4, 20 * time.Millisecond // gaps and quiet period far apart: timing-proof under load
	for _, tc := range []struct {
		window time.Duration
		want   func(prompts int) bool
		what   string
	}{
		{2 * time.Second, func(p int) bool { return p == n }, "all of them"}, // quiet period 500 ms
		{-1, func(p int) bool { return p < n }, "not all of them"},
	} {
		started, release := make(chan struct{}), make(chan struct{})
		var first sched.StepPlan
		var s *sched.Scheduler
		calls := 0
		s = newSched(t, sched.Config{Context: engine.ContextParams{Sequences: n}, GatherWindow: tc.window,
			StepHook: func() {
				if calls++; calls == 1 {
					first = s.Plan()
					close(started)
					<-release
				}
			}})
		var streams []<-chan sched.Event
		for i := range n {
			if i > 0 {
				time.Sleep(gap)
			}
			ch, err := s.Submit(context.Background(), sched.Request{Prompt: prompt(t, fmt.Sprintf("request %d of the burst", i)), MaxTokens: 2})
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, ch)
		}
		<-started
		close(release)
		for _, ch := range streams {
			if out := collect(t, ch); out.final.Err != nil {
				t.Fatal(out.final.Err)
			}
		}
		if !tc.want(len(first.Prefill)) {
			t.Errorf("gather window %v: the first step evaluated %d of %d prompts sent %v apart, want %s", tc.window, len(first.Prefill), n, gap, tc.what)
		}
	}
}
