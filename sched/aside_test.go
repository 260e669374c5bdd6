package sched_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/grammar"
	"github.com/hxp-ai/hxp/sched"
)

// longSchema keeps a constrained stream inside its grammar for a long time: the tiny
// model's picks break its structure often, so the grammar redraws many tokens.
const longSchema = `{"type":"array","minItems":64,"items":{"type":"object","properties":{
	"id":{"type":"integer","minimum":0,"maximum":999},"ok":{"type":"boolean"}},
	"required":["id","ok"],"additionalProperties":false}}`

func longGrammar(t testing.TB) string {
	t.Helper()
	g, err := grammar.FromSchema([]byte(longSchema))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestConstrainedBesideOthers: constrained sequences are sampled off the loop while the
// others decode (aside.go); together they give exactly the tokens, texts and logprobs
// of each request alone, greedy, constrained or not, and the same logprobs within
// the noise of batch composition.
func TestConstrainedBesideOthers(t *testing.T) {
	s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 6}})
	g := longGrammar(t)
	req := func(i int) sched.Request {
		r := sched.Request{Prompt: prompt(t, prompts[i]), MaxTokens: 24, Logprobs: true, TopLogprobs: 2}
		if i%2 == 0 {
			r.Sampling.Grammar = g
		} else {
			r.IgnoreEOS = true
		}
		return r
	}
	alone := make([]result, len(prompts))
	for i := range prompts {
		alone[i] = run(t, s, req(i))
		if len(alone[i].tokens) == 0 || len(alone[i].logprobs) != len(alone[i].tokens) {
			t.Fatalf("%q alone: %d tokens, %d logprobs (%+v)", prompts[i], len(alone[i].tokens), len(alone[i].logprobs), alone[i].final)
		}
	}
	for round := range 2 {
		got := make([]result, len(prompts))
		var wg sync.WaitGroup
		for i := range prompts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i] = run(t, s, req(i))
			}()
		}
		wg.Wait()
		for i, p := range prompts {
			if fmt.Sprint(got[i].tokens) != fmt.Sprint(alone[i].tokens) || got[i].text != alone[i].text ||
				!closeLogprobs(got[i].logprobs, alone[i].logprobs) || got[i].final.Finish != alone[i].final.Finish {
				t.Errorf("round %d, %q (constrained %v): together %v %q %s %v, alone %v %q %s %v", round, p, i%2 == 0,
					got[i].tokens, got[i].text, got[i].final.Finish, got[i].logprobs, alone[i].tokens, alone[i].text, alone[i].final.Finish, alone[i].logprobs)
			}
		}
	}
}

// closeLogprobs compares logprobs of the same tokens computed in batches of different
// compositions, which llama.cpp does not make bit-identical.
func closeLogprobs(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-3+1e-4*math.Abs(float64(b[i])) {
			return false
		}
	}
	return true
}

// TestCancelConstrained: a constrained stream cancelled while it runs (its token possibly
// being sampled off the loop) ends with FinishCancelled, frees its slot, and the
// scheduler goes on serving.
func TestCancelConstrained(t *testing.T) {
	gate := newStepGate()
	s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 2}, StepHook: gate.hook})
	gate.openAtEnd(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := sched.Request{Prompt: prompt(t, "abc"), MaxTokens: 200}
	r.Sampling.Grammar = longGrammar(t)
	ch, err := s.Submit(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	gate.step(t, 6)
	cancel()
	last, steps := gate.collectStepping(t, ch)
	if last.final.Finish != sched.FinishCancelled {
		t.Fatalf("cancelled constrained stream: finish %s (%+v)", last.final.Finish, last.final)
	}
	if n := last.final.Usage.CompletionTokens; n > 6+steps || n >= 200 {
		t.Errorf("%d tokens in %d steps", n, 6+steps)
	}
	if st, ok := waitStats(s, func(st sched.Stats) bool { return st.InFlight == 0 && st.Running == 0 }); !ok {
		t.Errorf("after the cancel: %+v", st)
	}
	next := gate.collectSteppingOf(t, s, sched.Request{Prompt: prompt(t, "x"), MaxTokens: 2, IgnoreEOS: true})
	if next.final.Finish != sched.FinishLength || len(next.tokens) != 2 {
		t.Errorf("request after the cancel: %+v", next.final)
	}
}
