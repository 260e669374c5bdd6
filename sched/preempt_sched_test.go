package sched_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// tracked is one stream of a stepped test: what it received and at which step.
type tracked struct {
	ch      <-chan sched.Event
	r       result
	first   int // steps let through when its first token was read; -1 before
	done    int // steps let through when its final event was read; -1 before
	closed  bool
	tenant  string
	started bool
}

func (s *tracked) add(ev sched.Event, ok bool, steps int) {
	if !ok {
		s.closed = true
		return
	}
	s.r.events++
	s.r.text += ev.Text
	s.r.tokens = append(s.r.tokens, ev.Tokens...)
	if len(ev.Tokens) > 0 && !s.started {
		s.started, s.first = true, steps
	}
	if ev.Done {
		s.r.final, s.done = ev, steps
	}
}

// stepUntil lets the scheduler take steps until cond holds or every stream is closed,
// reading every stream meanwhile, and returns the steps taken so far. An event of step
// k is recorded at step k or k+1: streams are drained before each step is let through.
func stepUntil(t *testing.T, g *stepGate, steps int, streams []*tracked, cond func(steps int) bool) int {
	t.Helper()
	for {
		for _, s := range streams { // drain what the steps so far sent
			for !s.closed {
				select {
				case ev, ok := <-s.ch:
					s.add(ev, ok, steps)
					continue
				default:
				}
				break
			}
		}
		open := 0
		cases := []reflect.SelectCase{{Dir: reflect.SelectSend, Chan: reflect.ValueOf(g.tick), Send: reflect.ValueOf(struct{}{})},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(time.After(gateTimeout))}}
		var live []*tracked
		for _, s := range streams {
			if !s.closed {
				open++
				live = append(live, s)
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s.ch)})
			}
		}
		if open == 0 || cond(steps) {
			return steps
		}
		if steps > 5000 {
			t.Fatalf("still running after %d steps", steps)
		}
		i, v, ok := reflect.Select(cases)
		switch i {
		case 0:
			steps++
		case 1:
			t.Fatalf("no event and no step within %s", gateTimeout)
		default:
			ev, _ := v.Interface().(sched.Event)
			live[i-2].add(ev, ok, steps)
		}
	}
}

// preemptScenario runs, on two slots stepped one at a time, two long generations of
// tenant A (in class aClass) until both have run PreemptMinSteps, then one short
// request of tenant B, and returns A's two streams, B's, and the scheduler's stats.
func preemptScenario(t *testing.T, f sched.Fairness, aClass sched.Priority, sp engine.SamplingParams) ([]*tracked, *tracked, sched.Stats) {
	g := newStepGate()
	s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 2, SeqCtx: 256}, QueueSize: 16, Fairness: f, StepHook: g.hook})
	g.openAtEnd(t)
	submit := func(tenant, text string, n int, class sched.Priority) *tracked {
		ch, err := s.Submit(context.Background(), sched.Request{Prompt: prompt(t, text), MaxTokens: n, IgnoreEOS: true,
			Tenant: tenant, Priority: class, Sampling: sp})
		if err != nil {
			t.Fatalf("submit for %s: %v", tenant, err)
		}
		return &tracked{ch: ch, first: -1, done: -1, tenant: tenant}
	}
	a := []*tracked{submit("a", "Once upon a time", 48, aClass), submit("a", "The capital of France is", 48, aClass)}
	steps := stepUntil(t, g, 0, a, func(int) bool {
		return len(a[0].r.tokens) > sched.PreemptMinSteps && len(a[1].r.tokens) > sched.PreemptMinSteps
	})
	b := submit("b", "hello world", 6, sched.Interactive)
	stepUntil(t, g, steps, append(a, b), func(int) bool { return false })
	for _, x := range append(a, b) {
		if x.r.final.Err != nil || x.r.final.Finish != sched.FinishLength {
			t.Fatalf("%s's request: finish %s, %v", x.tenant, x.r.final.Finish, x.r.final.Err)
		}
	}
	return a, b, s.Stats()
}

// TestPreemption: tenant A's long generations hold both slots when tenant B's request
// arrives. With preemption B starts before either of A's ends (A's sequence with the
// least work gives its slot back, and resumes when B is done); without it B waits for
// one of A's to end. A's output is the same either way, token for token: nothing is
// lost or repeated, with greedy and with seeded sampling (the sampler lives on across
// the preemption), and whether the work preempted is interactive or batch.
func TestPreemption(t *testing.T) {
	for _, c := range []struct {
		name  string
		class sched.Priority
		sp    engine.SamplingParams
	}{
		{"interactive, greedy", sched.Interactive, engine.SamplingParams{}},
		{"interactive, seeded sampling", sched.Interactive, engine.SamplingParams{Temperature: 0.9, Seed: 7}},
		{"batch work for an interactive request", sched.Batch, engine.SamplingParams{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			kept, bWaits, st := preemptScenario(t, sched.Fairness{NoPreempt: true}, c.class, c.sp)
			if st.Preemptions != 0 {
				t.Errorf("NoPreempt: %d preemptions", st.Preemptions)
			}
			firstEnd := min(kept[0].done, kept[1].done)
			if bWaits.first < firstEnd {
				t.Errorf("NoPreempt: B's first token at step %d, before A's first end at %d", bWaits.first, firstEnd)
			}
			a, b, st := preemptScenario(t, sched.Fairness{}, c.class, c.sp)
			if st.Preemptions < 1 {
				t.Errorf("no preemption")
			}
			if firstEnd := min(a[0].done, a[1].done); b.first >= firstEnd {
				t.Errorf("B's first token at step %d, not before A's first end at %d", b.first, firstEnd)
			}
			if b.done >= min(a[0].done, a[1].done) {
				t.Errorf("B (6 tokens) ended at step %d, after one of A's (48 tokens) at %d", b.done, min(a[0].done, a[1].done))
			}
			for i := range a {
				if !equalTokens(a[i].r.tokens, kept[i].r.tokens) || a[i].r.text != kept[i].r.text {
					t.Errorf("A's request %d preempted: %v\n%q\nnot preempted: %v\n%q", i, a[i].r.tokens, a[i].r.text, kept[i].r.tokens, kept[i].r.text)
				}
				if u, want := a[i].r.final.Usage, kept[i].r.final.Usage; u != want {
					t.Errorf("A's request %d usage %+v, not preempted %+v", i, u, want)
				}
			}
			if fmt.Sprint(b.r.tokens) != fmt.Sprint(bWaits.r.tokens) {
				t.Errorf("B's tokens %v, %v after waiting", b.r.tokens, bWaits.r.tokens)
			}
			// The preempted sequence resumed from its KV cache saved in host memory,
			// released once resumed; without the swap it evaluates its tokens again,
			// with the same output.
			if st.SwapIns < 1 || st.SwapBytes != 0 {
				t.Errorf("swap: %d resumed from a saved cache, %d bytes still held; want >= 1 and 0", st.SwapIns, st.SwapBytes)
			}
			again, _, stAgain := preemptScenario(t, sched.Fairness{PreemptSwapBytes: -1}, c.class, c.sp)
			if stAgain.Preemptions < 1 || stAgain.SwapIns != 0 {
				t.Errorf("PreemptSwapBytes -1: %d preemptions, %d swap-ins; want >= 1 and 0", stAgain.Preemptions, stAgain.SwapIns)
			}
			for i := range again {
				if !equalTokens(again[i].r.tokens, kept[i].r.tokens) {
					t.Errorf("A's request %d preempted without the swap: %v, not preempted: %v", i, again[i].r.tokens, kept[i].r.tokens)
				}
			}
			if redone := stAgain.PromptEvaluated - st.PromptEvaluated; redone < 2*int64(sched.PreemptMinSteps) {
				t.Errorf("the swap saved %d token evaluations (%d without it, %d with), want at least the %d tokens the preempted sequence had generated",
					redone, stAgain.PromptEvaluated, st.PromptEvaluated, 2*sched.PreemptMinSteps)
			}
		})
	}
}

// TestPreemptionWeightedShare: tenant A's long generations hold all four slots when
// tenant B, of weight 3, queues as many. With preemption B takes three slots within a
// few steps and, while both stay backlogged, gets three tokens for each of A's; without
// it B gets nothing until one of A's ends.
func TestPreemptionWeightedShare(t *testing.T) {
	for _, c := range []struct {
		name   string
		fair   sched.Fairness
		lo, hi float64 // bounds of B's tokens over A's in the window
	}{
		{"preempt", sched.Fairness{}, 2.7, 3.3},
		{"no preemption", sched.Fairness{NoPreempt: true}, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newStepGate()
			s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 4, SeqCtx: 256}, QueueSize: 32, Fairness: c.fair, StepHook: g.hook})
			g.openAtEnd(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			submit := func(tenant string, w float64, n int) []*tracked {
				var out []*tracked
				for i := range n {
					ch, err := s.Submit(ctx, sched.Request{Prompt: prompt(t, fmt.Sprintf("%s %d", tenant, i)), MaxTokens: 200, IgnoreEOS: true,
						Tenant: tenant, Weight: w})
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, &tracked{ch: ch, first: -1, done: -1, tenant: tenant})
				}
				return out
			}
			a := submit("a", 1, 8)
			steps := stepUntil(t, g, 0, a, func(n int) bool { return n >= 8 })
			all := append(a, submit("b", 3, 8)...)
			tokens := func(tenant string) int {
				n := 0
				for _, x := range all {
					if x.tenant == tenant {
						n += len(x.r.tokens)
					}
				}
				return n
			}
			steps = stepUntil(t, g, steps, all, func(n int) bool { return n >= steps+10 }) // B takes its slots
			a0, b0 := tokens("a"), tokens("b")
			stepUntil(t, g, steps, all, func(n int) bool { return n >= steps+100 })
			da, db := tokens("a")-a0, tokens("b")-b0
			t.Logf("over 100 steps: B %d tokens, A %d, %d preemptions", db, da, s.Stats().Preemptions)
			if got := float64(db) / float64(da); got < c.lo || got > c.hi {
				t.Errorf("over 100 steps B got %d tokens and A %d (ratio %.2f), want %v..%v", db, da, got, c.lo, c.hi)
			}
			for _, x := range all {
				if x.done >= 0 {
					t.Errorf("a request of %s ended (%s) inside the window", x.tenant, x.r.final.Finish)
				}
			}
			cancel()
			stepUntil(t, g, 0, all, func(int) bool { return false })
		})
	}
}
