package sched_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/sched"
)

var (
	modelOnce sync.Once
	model     *engine.Model
	modelErr  error
)

func tiny(t testing.TB) *engine.Model {
	t.Helper()
	modelOnce.Do(func() {
		model, modelErr = engine.LoadModel(engine.ModelParams{Path: testmodel.Path(t, "tiny")})
	})
	if modelErr != nil {
		t.Fatal(modelErr)
	}
	return model
}

func newSched(t testing.TB, cfg sched.Config) *sched.Scheduler {
	t.Helper()
	cfg.Model = tiny(t)
	if cfg.Name == "" {
		cfg.Name = "tiny"
	}
	if cfg.Context.SeqCtx == 0 {
		cfg.Context.SeqCtx = 256
	}
	if cfg.Context.Sequences == 0 {
		cfg.Context.Sequences = 4
	}
	if cfg.Context.Batch == 0 {
		cfg.Context.Batch = 128
	}
	if cfg.Context.Threads == 0 {
		cfg.Context.Threads = 1
	}
	s, err := sched.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func prompt(t testing.TB, text string) []engine.Token {
	toks, err := tiny(t).Tokenize(text, true, false)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

type result struct {
	text     string
	tokens   []engine.Token
	logprobs []float32 // of the tokens, when requested
	final    sched.Event
	events   int
}

func collect(t testing.TB, ch <-chan sched.Event) result {
	t.Helper()
	var r result
	for ev := range ch {
		r.events++
		r.text += ev.Text
		r.tokens = append(r.tokens, ev.Tokens...)
		for _, lp := range ev.Logprobs {
			r.logprobs = append(r.logprobs, lp.Logprob)
		}
		if ev.Done {
			r.final = ev
		}
	}
	if !r.final.Done {
		t.Fatal("stream closed without a final event")
	}
	return r
}

func run(t testing.TB, s *sched.Scheduler, r sched.Request) result {
	t.Helper()
	ch, err := s.Submit(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return collect(t, ch)
}

var prompts = []string{"Once upon a time", "The capital of France is", "hello world", "a b c d e f g", "Why is the sky blue?", "1 2 3 4 5"}

// TestBatchEquivalence: requests decoded together give the same tokens as each alone.
func TestBatchEquivalence(t *testing.T) {
	s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 6}})
	alone := map[string]result{}
	for _, p := range prompts {
		alone[p] = run(t, s, sched.Request{Prompt: prompt(t, p), MaxTokens: 20, IgnoreEOS: true})
		if len(alone[p].tokens) != 20 || alone[p].final.Finish != sched.FinishLength {
			t.Fatalf("%q: %d tokens, finish %s", p, len(alone[p].tokens), alone[p].final.Finish)
		}
	}
	var wg sync.WaitGroup
	got := make([]result, len(prompts))
	for i, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = run(t, s, sched.Request{Prompt: prompt(t, p), MaxTokens: 20, IgnoreEOS: true})
		}()
	}
	wg.Wait()
	for i, p := range prompts {
		if fmt.Sprint(got[i].tokens) != fmt.Sprint(alone[p].tokens) || got[i].text != alone[p].text {
			t.Errorf("%q: batched %v != alone %v", p, got[i].tokens, alone[p].tokens)
		}
	}
}

func TestStopStringNeverLeaks(t *testing.T) {
	s := newSched(t, sched.Config{})
	p := prompt(t, "Once upon a time")
	full := run(t, s, sched.Request{Prompt: p, MaxTokens: 40, IgnoreEOS: true})
	runes := []rune(full.text)
	if len(runes) < 12 {
		t.Fatalf("too little text to pick a stop string from: %q", full.text)
	}
	// A stop string taken from the middle of the output, likely spanning tokens.
	stop := string(runes[len(runes)/2 : len(runes)/2+4])
	want := full.text[:strings.Index(full.text, stop)]
	ch, err := s.Submit(context.Background(), sched.Request{Prompt: p, MaxTokens: 40, IgnoreEOS: true, Stop: []string{stop}})
	if err != nil {
		t.Fatal(err)
	}
	streamed := ""
	for ev := range ch {
		streamed += ev.Text
		if strings.Contains(streamed, stop) {
			t.Fatalf("stop string %q leaked: %q", stop, streamed)
		}
		if ev.Done && ev.Finish != sched.FinishStop {
			t.Fatalf("finish %s, want stop", ev.Finish)
		}
	}
	if streamed != want {
		t.Fatalf("got %q, want %q (stop %q)", streamed, want, stop)
	}
}

func TestMaxTokensAndContextFull(t *testing.T) {
	s := newSched(t, sched.Config{Context: engine.ContextParams{SeqCtx: 48}})
	p := prompt(t, "Once upon a time")
	r := run(t, s, sched.Request{Prompt: p, MaxTokens: 5, IgnoreEOS: true})
	if r.final.Finish != sched.FinishLength || r.final.Usage.CompletionTokens != 5 || len(r.tokens) != 5 {
		t.Errorf("max_tokens: %+v", r.final)
	}
	r = run(t, s, sched.Request{Prompt: p, IgnoreEOS: true}) // until the context is full
	if r.final.Finish != sched.FinishLength || len(p)+r.final.Usage.CompletionTokens != 48 {
		t.Errorf("context full: prompt %d + %d generated, finish %s", len(p), r.final.Usage.CompletionTokens, r.final.Finish)
	}
	_, err := s.Submit(context.Background(), sched.Request{Prompt: p, MaxTokens: 48})
	if !errors.Is(err, sched.ErrContextOverflow) {
		t.Errorf("prompt+max_tokens over the context: %v", err)
	}
	long := make([]engine.Token, 60)
	for i := range long {
		long[i] = p[1]
	}
	if _, err := s.Submit(context.Background(), sched.Request{Prompt: long}); !errors.Is(err, sched.ErrContextOverflow) {
		t.Errorf("prompt over the context: %v", err)
	}
}

func TestValidation(t *testing.T) {
	s := newSched(t, sched.Config{})
	p := prompt(t, "hi")
	bad := []sched.Request{
		{},
		{Prompt: []engine.Token{-1}},
		{Prompt: []engine.Token{1 << 30}},
		{Prompt: p, MaxTokens: -1},
		{Prompt: p, Stop: []string{""}},
		{Prompt: p, TopLogprobs: 21},
		{Prompt: p, Sampling: engine.SamplingParams{Temperature: 9}},
	}
	for _, r := range bad {
		if _, err := s.Submit(context.Background(), r); !errors.Is(err, sched.ErrInvalidRequest) {
			t.Errorf("%+v: %v", r, err)
		}
	}
}

func TestCancellationFreesSlot(t *testing.T) {
	s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := s.Submit(ctx, sched.Request{Prompt: prompt(t, "Once upon a time"), IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	<-ch // the stream is running
	// A second request waits for the only slot.
	next, err := s.Submit(context.Background(), sched.Request{Prompt: prompt(t, "hello"), MaxTokens: 3, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	r := collect(t, ch)
	if r.final.Finish != sched.FinishCancelled {
		t.Errorf("finish %s, want cancelled", r.final.Finish)
	}
	if r.final.Usage.CompletionTokens >= s.SeqCtx()-5 {
		t.Errorf("cancelled stream ran to the end of the context")
	}
	n := collect(t, next)
	if n.final.Finish != sched.FinishLength || len(n.tokens) != 3 {
		t.Errorf("queued request after cancel: %+v", n.final)
	}
}

// stepGate lets a test drive the scheduler one decode step at a time: its hook (the
// scheduler's StepHook) waits for a tick before each step. Opening it lets the scheduler run
// freely.
type stepGate struct {
	tick chan struct{}
	once sync.Once
}

func newStepGate() *stepGate { return &stepGate{tick: make(chan struct{})} }

// openAtEnd opens g when the test ends. Call it after the scheduler's Close is registered
// with t.Cleanup: cleanups run last registered first, so Close never waits on a stalled step.
func (g *stepGate) openAtEnd(t testing.TB) { t.Cleanup(g.open) }

func (g *stepGate) hook() { <-g.tick }

func (g *stepGate) open() { g.once.Do(func() { close(g.tick) }) }

// gateTimeout bounds how long a test waits for the scheduler to take a step or deliver an
// event; only a scheduler that is stuck takes that long.
const gateTimeout = 30 * time.Second

// step lets the scheduler take n decode steps. It fails when the loop does not come back
// for the next step: it is blocked somewhere else.
func (g *stepGate) step(t testing.TB, n int) {
	t.Helper()
	for i := range n {
		select {
		case g.tick <- struct{}{}:
		case <-time.After(gateTimeout):
			t.Fatalf("the scheduler did not come back for step %d of %d within %s: its loop is blocked", i+1, n, gateTimeout)
		}
	}
}

// collectStepping reads ch to its end, letting the scheduler take steps meanwhile, and
// returns what it read and how many steps it let through.
func (g *stepGate) collectStepping(t testing.TB, ch <-chan sched.Event) (result, int) {
	t.Helper()
	var r result
	steps := 0
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				if !r.final.Done {
					t.Fatal("stream closed without a final event")
				}
				return r, steps
			}
			r.events++
			r.text += ev.Text
			r.tokens = append(r.tokens, ev.Tokens...)
			if ev.Done {
				r.final = ev
			}
		case g.tick <- struct{}{}:
			steps++
		case <-time.After(gateTimeout):
			t.Fatalf("no event and no step within %s", gateTimeout)
		}
	}
}

// TestCancelWithoutReading: a stream whose consumer never reads does not block the loop (its
// output is held back, merged), other requests run beside it, and cancelling it ends it with
// FinishCancelled while it is still running.
func TestCancelWithoutReading(t *testing.T) {
	g := newStepGate()
	s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 2}, StepHook: g.hook})
	g.openAtEnd(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := prompt(t, "abc")
	ch, err := s.Submit(ctx, sched.Request{Prompt: p, IgnoreEOS: true}) // runs to the end of its context
	if err != nil {
		t.Fatal(err)
	}
	// 40 tokens into a 16-event channel nobody reads: the loop must keep coming back.
	const unread = 40
	g.step(t, unread)
	other, err := s.Submit(context.Background(), sched.Request{Prompt: prompt(t, "x"), MaxTokens: 2, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	r, steps := g.collectStepping(t, other)
	if r.final.Finish != sched.FinishLength || len(r.tokens) != 2 {
		t.Fatalf("request beside the unread stream: %+v, %d tokens", r.final, len(r.tokens))
	}
	cancel()
	last, more := g.collectStepping(t, ch)
	if last.final.Finish != sched.FinishCancelled {
		t.Fatalf("unread stream cancelled while running: finish %s, want cancelled (%+v)", last.final.Finish, last.final)
	}
	ran := unread + steps + more // steps the cancelled stream was part of, at most
	if left := s.SeqCtx() - len(p); ran >= left {
		t.Fatalf("the stream had room for only %d tokens and ran %d steps: the cancel came too late to prove anything", left, ran)
	}
	if got := last.final.Usage.CompletionTokens; got < unread || got > ran {
		t.Errorf("cancelled stream generated %d tokens in %d steps, want at least the %d before the other request", got, ran, unread)
	}
	if st, ok := waitStats(s, func(st sched.Stats) bool { return st.InFlight == 0 && st.Running == 0 }); !ok {
		t.Errorf("after both streams ended: %+v", st)
	}
}

func TestQueueOverflow(t *testing.T) {
	block := make(chan struct{})
	var once sync.Once
	s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 1}, QueueSize: 2,
		StepHook: func() { once.Do(func() { <-block }) }})
	p := prompt(t, "hello")
	var chans []<-chan sched.Event
	// One request runs (stalled in the hook), two wait in the queue.
	first, err := s.Submit(context.Background(), sched.Request{Prompt: p, MaxTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	chans = append(chans, first)
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Running == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 2; i++ {
		ch, err := s.Submit(context.Background(), sched.Request{Prompt: p, MaxTokens: 2})
		if err != nil {
			t.Fatalf("queued request %d: %v", i, err)
		}
		chans = append(chans, ch)
	}
	if _, err := s.Submit(context.Background(), sched.Request{Prompt: p, MaxTokens: 2}); !errors.Is(err, sched.ErrOverloaded) {
		t.Fatalf("full queue: %v", err)
	}
	if st := s.Stats(); !st.Busy || st.Queued != 2 {
		t.Errorf("stats while stalled: %+v", st)
	}
	close(block)
	for _, ch := range chans {
		if r := collect(t, ch); r.final.Err != nil {
			t.Error(r.final.Err)
		}
	}
}

func TestPrefixReuse(t *testing.T) {
	s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 2}})
	system := "You are a helpful assistant. Answer briefly and politely. "
	a := run(t, s, sched.Request{Prompt: prompt(t, system+"What is two plus two?"), MaxTokens: 8, IgnoreEOS: true})
	if a.final.Usage.CachedTokens != 0 {
		t.Fatalf("first request reused %d tokens", a.final.Usage.CachedTokens)
	}
	p2 := prompt(t, system+"Name a colour.")
	b := run(t, s, sched.Request{Prompt: p2, MaxTokens: 8, IgnoreEOS: true})
	sys := len(prompt(t, system)) - 2
	if b.final.Usage.CachedTokens < sys {
		t.Errorf("shared system prompt (~%d tokens) reused only %d", sys, b.final.Usage.CachedTokens)
	}
	// Reuse must not change the output: compare with a fresh scheduler.
	fresh := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 2}})
	c := run(t, fresh, sched.Request{Prompt: p2, MaxTokens: 8, IgnoreEOS: true})
	if fmt.Sprint(c.tokens) != fmt.Sprint(b.tokens) {
		t.Errorf("output with reused prefix %v != fresh %v", b.tokens, c.tokens)
	}
	// Multi-turn: the same conversation extended reuses everything before.
	turn2 := prompt(t, system+"Name a colour."+b.text+" And another?")
	d := run(t, s, sched.Request{Prompt: turn2, MaxTokens: 4, IgnoreEOS: true})
	if d.final.Usage.CachedTokens < len(p2) {
		t.Errorf("multi-turn reused %d of the %d-token first turn", d.final.Usage.CachedTokens, len(p2))
	}
}

func TestLogprobs(t *testing.T) {
	s := newSched(t, sched.Config{})
	ch, _ := s.Submit(context.Background(), sched.Request{Prompt: prompt(t, "hello"), MaxTokens: 4, IgnoreEOS: true, Logprobs: true, TopLogprobs: 3})
	n := 0
	for ev := range ch {
		for _, lp := range ev.Logprobs {
			n++
			if lp.Logprob > 0 || len(lp.Top) != 3 || lp.Top[0].Token != lp.Token || lp.Top[0].Logprob < lp.Top[1].Logprob {
				t.Errorf("greedy logprobs %+v", lp)
			}
		}
	}
	if n != 4 {
		t.Errorf("%d logprob entries, want 4", n)
	}
}

func TestConcurrentCallers(t *testing.T) {
	s := newSched(t, sched.Config{Context: engine.ContextParams{Sequences: 4, SeqCtx: 128}, QueueSize: 64})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 48; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch, err := s.Submit(ctx, sched.Request{Prompt: prompt(t, prompts[i%len(prompts)]), MaxTokens: 4 + i%7,
				Sampling: engine.SamplingParams{Temperature: float32(i%3) * 0.5, Seed: uint32(i)}, Stop: []string{"zz"}})
			if errors.Is(err, sched.ErrOverloaded) {
				return
			}
			if err != nil {
				errs <- err
				return
			}
			for ev := range ch {
				if i%5 == 0 { // some callers walk away mid-stream
					cancel()
				}
				if ev.Done && ev.Err != nil {
					errs <- ev.Err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st, ok := waitStats(s, func(st sched.Stats) bool { return st.Running == 0 && st.Queued == 0 }); !ok {
		t.Errorf("after all callers: %+v", st)
	}
}

// TestCloseEndsStreams: Close ends a running and a queued request with ErrClosed. The steps
// are gated, so the running one is far from its end when Close comes.
func TestCloseEndsStreams(t *testing.T) {
	g := newStepGate()
	s, err := sched.New(sched.Config{Name: "closing", Model: tiny(t), StepHook: g.hook,
		Context: engine.ContextParams{SeqCtx: 512, Sequences: 1, Batch: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	g.openAtEnd(t)
	ch, err := s.Submit(context.Background(), sched.Request{Prompt: prompt(t, "a"), IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	queued, err := s.Submit(context.Background(), sched.Request{Prompt: prompt(t, "b"), IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	g.step(t, 1)
	if ev := <-ch; ev.Done || len(ev.Tokens) != 1 {
		t.Fatalf("first event of the running request: %+v", ev)
	}
	if st := s.Stats(); st.Queued != 1 {
		t.Fatalf("the second request is not queued behind the only slot: %+v", st)
	}
	// The loop now waits before its next step. Close, then let that step through: the loop
	// sees Close right after it.
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	for {
		if _, err := s.Submit(context.Background(), sched.Request{Prompt: prompt(t, "c")}); errors.Is(err, sched.ErrClosed) {
			break
		}
		runtime.Gosched()
	}
	g.open()
	<-closed
	for name, c := range map[string]<-chan sched.Event{"running": ch, "queued": queued} {
		r := collect(t, c)
		if !errors.Is(r.final.Err, sched.ErrClosed) || r.final.Finish != sched.FinishError {
			t.Errorf("%s request after Close: %+v, want ErrClosed", name, r.final)
		}
		if name == "queued" && r.events != 1 {
			t.Errorf("the queued request produced %d events before Close, want only the final one", r.events-1)
		}
	}
	if _, err := s.Submit(context.Background(), sched.Request{Prompt: prompt(t, "c")}); !errors.Is(err, sched.ErrClosed) {
		t.Errorf("submit after close: %v", err)
	}
	s.Close() // idempotent
}

func TestEmbedder(t *testing.T) {
	e := sched.NewEmbedder(tiny(t), engine.ContextParams{SeqCtx: 64, Sequences: 2, Batch: 64, Threads: 1, Pooling: engine.PoolingMean})
	defer e.Close()
	in := [][]engine.Token{prompt(t, "cat"), prompt(t, "dog"), prompt(t, "a long sentence about the weather"), prompt(t, "cat")}
	out, err := e.Embed(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 4 || len(out[0]) != tiny(t).Info().Embd {
		t.Fatalf("shape %d x %d", len(out), len(out[0]))
	}
	var cos, cosOther float64
	for i := range out[0] {
		cos += float64(out[0][i] * out[3][i])
		cosOther += float64(out[0][i] * out[2][i])
	}
	// Batch composition changes kernel shapes, so equality is up to float noise.
	if cos < 0.9999 {
		t.Errorf("same input in two batches: cosine %v", cos)
	}
	if cosOther > 0.9999 {
		t.Errorf("different inputs: cosine %v", cosOther)
	}
	if _, err := e.Embed(context.Background(), [][]engine.Token{make([]engine.Token, 65)}); !errors.Is(err, sched.ErrContextOverflow) {
		t.Errorf("too long: %v", err)
	}
	if _, err := e.Embed(context.Background(), [][]engine.Token{{}}); !errors.Is(err, sched.ErrInvalidRequest) {
		t.Errorf("empty: %v", err)
	}
}

// TestPackKeepsRunningSlotsAdjacent: a stream cancelled between others leaves a hole
// in the running slots; the scheduler moves the last stream into it (one KV buffer
// copy) and every stream goes on exactly as it would have alone.
func TestPackKeepsRunningSlotsAdjacent(t *testing.T) {
	slow := func() { time.Sleep(time.Millisecond) } // streams outlive the test's steps
	s := newSched(t, sched.Config{Name: "tiny-pack", Context: engine.ContextParams{Sequences: 4}, StepHook: slow})
	solo := newSched(t, sched.Config{Name: "tiny-pack-solo", Context: engine.ContextParams{Sequences: 1}})
	const n = 80
	texts := prompts[:4]
	ctxB, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	chans := make([]<-chan sched.Event, len(texts))
	firsts := make([]sched.Event, len(texts))
	for i, p := range texts {
		ctx := context.Background()
		if i == 1 {
			ctx = ctxB
		}
		ch, err := s.Submit(ctx, sched.Request{Prompt: prompt(t, p), MaxTokens: n, IgnoreEOS: true})
		if err != nil {
			t.Fatal(err)
		}
		firsts[i], chans[i] = <-ch, ch // running: the next request takes the slot beside it
	}
	// Stats are published after the step that sent the events: wait for them.
	if st, ok := waitStats(s, func(st sched.Stats) bool { return st.Running == 4 }); !ok || st.Runs != 1 {
		t.Fatalf("4 streams started one after another: running %d in %d runs of slots, want 4 in 1", st.Running, st.Runs)
	}
	cancelB()
	if r := collect(t, chans[1]); r.final.Finish != sched.FinishCancelled {
		t.Fatalf("cancelled stream finished %s", r.final.Finish)
	}
	// Two events of the last stream after the hole appeared: the step that moved it
	// has been published.
	read := append(firsts[3].Tokens, (<-chans[3]).Tokens...)
	read = append(read, (<-chans[3]).Tokens...)
	if st, ok := waitStats(s, func(st sched.Stats) bool { return st.Moves >= 1 && st.Runs == 1 }); !ok {
		t.Errorf("after a stream between others was cancelled: %d moves, running slots in %d runs; want >= 1 move and 1 run", st.Moves, st.Runs)
	}
	for _, i := range []int{0, 2, 3} {
		got := firsts[i].Tokens
		if i == 3 {
			got = read
		}
		got = append(got, collect(t, chans[i]).tokens...)
		want := run(t, solo, sched.Request{Prompt: prompt(t, texts[i]), MaxTokens: n, IgnoreEOS: true})
		if !equalTokens(got, want.tokens) {
			t.Errorf("stream %d (%q) beside the move: %v\nalone: %v", i, texts[i], got, want.tokens)
		}
	}
}

// waitStats polls s's published stats until cond holds (true) or gateTimeout passes (false),
// and returns the last stats read. The snapshot is published after each step, so a test that
// has just read an event may see the stats of the step before.
func waitStats(s *sched.Scheduler, cond func(sched.Stats) bool) (sched.Stats, bool) {
	deadline := time.Now().Add(gateTimeout)
	for {
		st := s.Stats()
		if cond(st) {
			return st, true
		}
		if time.Now().After(deadline) {
			return st, false
		}
		time.Sleep(time.Millisecond)
	}
}

func equalTokens(a, b []engine.Token) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// collectSteppingOf submits r and reads its stream to the end, letting the scheduler step.
func (g *stepGate) collectSteppingOf(t testing.TB, s *sched.Scheduler, r sched.Request) result {
	t.Helper()
	ch, err := s.Submit(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := g.collectStepping(t, ch)
	return res
}
