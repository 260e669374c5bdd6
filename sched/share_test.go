package sched_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

func TestPrefixChoice(t *testing.T) {
	cases := []struct {
		name               string
		own, held, pending int
		want               sched.PrefixAction
	}{
		{"cold, nothing anywhere", 0, 0, 0, sched.PrefixOwn},
		{"own slot holds the most", 300, 300, 0, sched.PrefixOwn},
		{"another slot holds a longer prefix", 0, 300, 0, sched.PrefixCopy},
		{"longer, but by less than the minimum", 280, 300, 0, sched.PrefixOwn},
		{"gain exactly the minimum", 268, 300, 0, sched.PrefixCopy},
		{"a running request is evaluating it", 0, 10, 300, sched.PrefixWait},
		{"it is evaluated already: copy, not wait", 0, 300, 300, sched.PrefixCopy},
		{"the rest is being evaluated: wait for all of it", 0, 290, 300, sched.PrefixWait},
		{"waiting gains too little over the own slot", 290, 0, 300, sched.PrefixOwn},
	}
	for _, c := range cases {
		if got := sched.PrefixChoice(c.own, c.held, c.pending, 32); got != c.want {
			t.Errorf("%s: PrefixChoice(%d, %d, %d) = %d, want %d", c.name, c.own, c.held, c.pending, got, c.want)
		}
	}
}

// sharedPrompts returns n prompts made of one long system prompt and different
// questions, and the system prompt's length in tokens.
func sharedPrompts(t *testing.T, n int) ([][]engine.Token, int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("You are a careful assistant for a hardware store. ")
	for i := 0; b.Len() < 600; i++ {
		fmt.Fprintf(&b, "Rule %d: answer about aisle %d, shelf %d, and never guess prices. ", i, i*7%13, i*5%11)
	}
	system := b.String()
	sys := len(prompt(t, system))
	if sys < 200 {
		t.Fatalf("system prompt has %d tokens; the test wants a long one", sys)
	}
	out := make([][]engine.Token, n)
	for i := range out {
		q := []string{"Where are the nails?", "Do you sell hammers today?", "How much paint for a room?", "Which saw cuts metal pipes?"}[i%4]
		out[i] = prompt(t, fmt.Sprintf("%s%s (question %d)", system, q, i))
	}
	return out, sys
}

// reference runs each prompt alone on a fresh scheduler: what the outputs must be.
func reference(t *testing.T, prompts [][]engine.Token, maxTokens int) []result {
	t.Helper()
	out := make([]result, len(prompts))
	for i, p := range prompts {
		s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 1, SeqCtx: 512}})
		out[i] = run(t, s, greedy(p, maxTokens))
		s.Close()
	}
	return out
}

// greedy asks for maxTokens tokens at temperature 0 with their log-probabilities, which
// depend on every cell of the prompt's KV: a wrong copied cell changes them.
func greedy(p []engine.Token, maxTokens int) sched.Request {
	return sched.Request{Prompt: p, MaxTokens: maxTokens, IgnoreEOS: true, Logprobs: true}
}

// sameOutput reports how got differs from want (tokens, or log-probabilities beyond
// float noise), "" when it does not. The noise of batch composition is under 3e-4 of a
// log-probability with a unified KV buffer (cells of other sequences change the order
// of the sums) and 1e-6 with split ones; copying a prefix 5 tokens too long changes
// them by 2-10%.
func sameOutput(got, want result) string {
	if !equalTokens(got.tokens, want.tokens) {
		return fmt.Sprintf("tokens %v, want %v", got.tokens, want.tokens)
	}
	if len(got.logprobs) != len(want.logprobs) {
		return fmt.Sprintf("%d logprobs, want %d", len(got.logprobs), len(want.logprobs))
	}
	for i := range got.logprobs {
		if d := math.Abs(float64(got.logprobs[i] - want.logprobs[i])); d > 1e-3*math.Abs(float64(want.logprobs[i]))+1e-6 {
			return fmt.Sprintf("token %d: logprob %v, want %v", i, got.logprobs[i], want.logprobs[i])
		}
	}
	return ""
}

// TestSharedPromptColdSlots: 16 requests with one long system prompt arrive while every
// slot is cold. The first evaluates the system prompt; the others are parked until it is
// in the cache, then copy it: the prompt tokens evaluated are about one system prompt
// plus 16 questions, not 16 whole prompts, and the greedy outputs equal those of each
// request alone on a fresh scheduler (the copied cells are right). With split and with
// unified KV buffers.
func TestSharedPromptColdSlots(t *testing.T) {
	const n, maxTokens = 16, 12
	prompts, sys := sharedPrompts(t, n)
	want := reference(t, prompts, maxTokens)
	unshared := 0
	for _, p := range prompts {
		unshared += len(p)
	}
	for _, unified := range []bool{false, true} {
		t.Run(fmt.Sprintf("unified=%v", unified), func(t *testing.T) {
			g := newStepGate()
			// The arrivals are staged (one admitted, then the rest): no burst gathering.
			s := newSched(t, sched.Config{StepHook: g.hook, GatherWindow: -1,
				Context: engine.ContextParams{Sequences: n, SeqCtx: 512, Batch: 64, UnifiedKV: unified}})
			g.openAtEnd(t)
			chans := make([]<-chan sched.Event, n)
			submit := func(i int) {
				ch, err := s.Submit(context.Background(), greedy(prompts[i], maxTokens))
				if err != nil {
					t.Fatal(err)
				}
				chans[i] = ch
			}
			// The first is admitted (off the queue) and waits at its first step.
			submit(0)
			if st, ok := waitStats(s, func(st sched.Stats) bool { return st.Queued == 0 }); !ok {
				t.Fatalf("first request not admitted: %+v", st)
			}
			for i := 1; i < n; i++ {
				submit(i)
			}
			if st, ok := waitStats(s, func(st sched.Stats) bool { return st.Queued == n-1 }); !ok {
				t.Fatalf("requests not queued: %+v", st)
			}
			// After one 64-token chunk of the first prompt the others find it being
			// evaluated and wait for it (visible in the stats of the next step).
			g.step(t, 2)
			if st, ok := waitStats(s, func(st sched.Stats) bool { return st.Steps >= 2 }); !ok || st.Parked != n-1 {
				t.Fatalf("after 2 steps: %d parked, want %d (%+v)", st.Parked, n-1, st)
			}
			g.open()
			var wg sync.WaitGroup
			got := make([]result, n)
			for i := range chans {
				wg.Add(1)
				go func() { defer wg.Done(); got[i] = collect(t, chans[i]) }()
			}
			wg.Wait()
			st := s.Stats()
			for i, r := range got {
				if d := sameOutput(r, want[i]); d != "" {
					t.Errorf("request %d with a shared prefix, compared with alone: %s", i, d)
				}
				if i > 0 && r.final.Usage.CachedTokens < sys-2 {
					t.Errorf("request %d: %d prompt tokens cached, want the system prompt's ~%d", i, r.final.Usage.CachedTokens, sys)
				}
			}
			// The first prompt whole, then each other prompt past what it shares with it.
			bound := len(prompts[0])
			for _, p := range prompts[1:] {
				bound += len(p) - min(commonPrefixLen(p, prompts[0]), len(p)-1)
			}
			if st.PromptEvaluated > int64(bound) || st.PromptEvaluated < int64(len(prompts[0])) {
				t.Errorf("evaluated %d prompt tokens; want between %d and %d (%d without sharing)", st.PromptEvaluated, len(prompts[0]), bound, unshared)
			}
			if st.SharedPrefixes < n-1 {
				t.Errorf("%d prefixes copied, want %d", st.SharedPrefixes, n-1)
			}
			t.Logf("prompt tokens evaluated: %d shared, %d without sharing (system prompt %d tokens)", st.PromptEvaluated, unshared, sys)
		})
	}
}

// TestSharedPromptFromRunningSlot: a request whose system prompt a running, generating
// request holds copies it into its own cold slot (the source keeps generating in the
// same steps); both outputs equal those alone.
func TestSharedPromptFromRunningSlot(t *testing.T) {
	prompts, sys := sharedPrompts(t, 2)
	want := reference(t, prompts, 24)
	s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 2, SeqCtx: 512}})
	a, err := s.Submit(context.Background(), greedy(prompts[0], 24))
	if err != nil {
		t.Fatal(err)
	}
	first := <-a // a generates: its prompt is in its slot
	b := run(t, s, greedy(prompts[1], 24))
	ra := collect(t, a)
	ra.tokens = append(first.Tokens, ra.tokens...)
	ra.logprobs = append([]float32{first.Logprobs[0].Logprob}, ra.logprobs...)
	for i, r := range []result{ra, b} {
		if d := sameOutput(r, want[i]); d != "" {
			t.Errorf("request %d, compared with alone: %s", i, d)
		}
	}
	if b.final.Usage.CachedTokens < sys-2 {
		t.Errorf("second request: %d prompt tokens cached, want the system prompt's ~%d", b.final.Usage.CachedTokens, sys)
	}
	if st := s.Stats(); st.SharedPrefixes != 1 {
		t.Errorf("%d prefixes copied, want 1", st.SharedPrefixes)
	}
}

// TestSharedPromptSourceCancelled: when the request evaluating the shared prefix is
// cancelled while others wait for it, its cells are dropped and never copied: the
// waiting requests evaluate the prompt themselves and their outputs are right.
func TestSharedPromptSourceCancelled(t *testing.T) {
	const n, maxTokens = 4, 8
	prompts, _ := sharedPrompts(t, n)
	want := reference(t, prompts, maxTokens)
	g := newStepGate()
	// The arrivals are staged (one admitted, then the rest): no burst gathering.
	s := newSched(t, sched.Config{StepHook: g.hook, GatherWindow: -1, Context: engine.ContextParams{Sequences: n, SeqCtx: 512, Batch: 64}})
	g.openAtEnd(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := s.Submit(ctx, greedy(prompts[0], maxTokens))
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := waitStats(s, func(st sched.Stats) bool { return st.Queued == 0 }); !ok {
		t.Fatalf("first request not admitted: %+v", st)
	}
	chans := make([]<-chan sched.Event, n)
	for i := 1; i < n; i++ {
		if chans[i], err = s.Submit(context.Background(), greedy(prompts[i], maxTokens)); err != nil {
			t.Fatal(err)
		}
	}
	g.step(t, 2)
	if st, ok := waitStats(s, func(st sched.Stats) bool { return st.Parked == n-1 }); !ok {
		t.Fatalf("%d parked, want %d", st.Parked, n-1)
	}
	cancel()
	g.open()
	if r := collect(t, first); r.final.Finish != sched.FinishCancelled {
		t.Errorf("first request finished %s, want cancelled", r.final.Finish)
	}
	for i := 1; i < n; i++ {
		if d := sameOutput(collect(t, chans[i]), want[i]); d != "" {
			t.Errorf("request %d, compared with alone: %s", i, d)
		}
	}
}

func commonPrefixLen(a, b []engine.Token) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
