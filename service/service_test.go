package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/internal/testmodel"
	"github.com/hxp-ai/hxp/sched"
)

func TestMain(m *testing.M) {
	engine.SetLogger(zerolog.Nop())
	os.Exit(m.Run())
}

func tinyConfig(t testing.TB, name string) config.Model {
	c := &config.Config{Models: []config.Model{{Name: name, Path: testmodel.Path(t, "tiny"), CPUCores: 1,
		Parallel: 2, CtxPerSeq: 256, Batch: 128}}}
	c.ApplyDefaults(1)
	return c.Models[0]
}

func load(t *testing.T, cfg config.Model, opts Options) *Service {
	t.Helper()
	s := New(cfg, zerolog.Nop(), opts)
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func collect(ch <-chan sched.Event) (string, sched.Event) {
	var b strings.Builder
	var last sched.Event
	for ev := range ch {
		b.WriteString(ev.Text)
		last = ev
	}
	return b.String(), last
}

func TestLoadAndGenerate(t *testing.T) {
	s := New(tinyConfig(t, "tiny"), zerolog.Nop(), Options{})
	if err := s.Ready(); !errors.Is(err, ErrNotReady) || s.State() != StateNew {
		t.Fatalf("before load: %v %s", err, s.State())
	}
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Ready() != nil || s.State() != StateReady || s.Progress() != 1 || s.SeqCtx() != 256 || s.Info().VocabSize == 0 {
		t.Fatalf("after load: %v %s %v %d", s.Ready(), s.State(), s.Progress(), s.SeqCtx())
	}
	if s.ChatTemplate() == "" {
		t.Error("the generated model's chat template was not picked up")
	}
	text, err := s.RenderChat([]engine.ChatMessage{{Role: "user", Content: "hi"}})
	if err != nil || !strings.Contains(text, "hi") {
		t.Fatalf("RenderChat = %q, %v", text, err)
	}
	toks, err := s.Tokenize("hello world", true, false)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Submit(context.Background(), sched.Request{Prompt: toks, MaxTokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, last := collect(ch); !last.Done || last.Usage.CompletionTokens == 0 {
		t.Errorf("final event %+v", last)
	}
	if s.InFlight() != 0 {
		t.Errorf("in flight after the stream closed: %d", s.InFlight())
	}
	vecs, err := s.Embed(context.Background(), [][]engine.Token{toks})
	if err != nil || len(vecs) != 1 || len(vecs[0]) != s.Info().Embd {
		t.Fatalf("Embed: %v", err)
	}
	s.Close()
	if _, err := s.Submit(context.Background(), sched.Request{Prompt: toks}); !errors.Is(err, sched.ErrClosed) {
		t.Errorf("submit after close: %v", err)
	}
}

func TestLoadFailures(t *testing.T) {
	missing := tinyConfig(t, "missing")
	missing.Path = filepath.Join(t.TempDir(), "nope.gguf")
	small := tinyConfig(t, "small")
	small.MemoryLimitGB = 0.0001
	kv := tinyConfig(t, "kv") // weights fit, the KV cache of 64 x 2048 does not
	kv.MemoryLimitGB, kv.Parallel, kv.CtxPerSeq, kv.Batch = 0.01, 64, 2048, 128
	tmpl := tinyConfig(t, "tmpl")
	tmpl.ChatTemplate = "no-such-template"
	off := tinyConfig(t, "off")
	off.Embeddings = "off"
	for _, tc := range []struct {
		cfg  config.Model
		want string
	}{
		{missing, "nope.gguf"},
		{small, "memory_limit_gb"},
		{kv, "KV cache"},
		{tmpl, "chat_template"},
	} {
		s := New(tc.cfg, zerolog.Nop(), Options{})
		err := s.Load(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: load error %v, want mention of %q", tc.cfg.Name, err, tc.want)
		}
		if s.State() != StateFailed || !errors.Is(s.Ready(), ErrNotReady) || s.Err() == nil {
			t.Errorf("%s: state %s ready %v", tc.cfg.Name, s.State(), s.Ready())
		}
		s.Close()
	}
	s := load(t, off, Options{})
	if _, err := s.Embed(context.Background(), [][]engine.Token{{1}}); !errors.Is(err, ErrEmbeddingsOff) {
		t.Errorf("embeddings off: %v", err)
	}
}

func TestLoadCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := New(tinyConfig(t, "c"), zerolog.Nop(), Options{})
	if err := s.Load(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled load: %v", err)
	}
	s.Close()
}

// Drain waits for a generation in flight, which then finishes normally.
func TestDrainWaitsForInFlight(t *testing.T) {
	s := load(t, tinyConfig(t, "d"), Options{StepHook: func() { time.Sleep(2 * time.Millisecond) }})
	toks, _ := s.Tokenize("hello", true, false)
	ch, err := s.Submit(context.Background(), sched.Request{Prompt: toks, MaxTokens: 40, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		text string
		last sched.Event
	}
	got := make(chan result, 1)
	go func() { text, last := collect(ch); got <- result{text, last} }()
	if err := s.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Submit(context.Background(), sched.Request{Prompt: toks}); !errors.Is(err, sched.ErrClosed) {
		t.Errorf("submit while draining: %v", err)
	}
	r := <-got
	text, last := r.text, r.last
	if last.Finish != sched.FinishLength || last.Usage.CompletionTokens != 40 || text == "" {
		t.Errorf("drained generation ended %s after %d tokens", last.Finish, last.Usage.CompletionTokens)
	}
}

// A drain that runs out of time reports it; Close then ends the generation.
func TestDrainDeadlineThenClose(t *testing.T) {
	s := load(t, tinyConfig(t, "d2"), Options{StepHook: func() { time.Sleep(5 * time.Millisecond) }})
	toks, _ := s.Tokenize("hello", true, false)
	ch, err := s.Submit(context.Background(), sched.Request{Prompt: toks, MaxTokens: 200, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	got := make(chan sched.Event, 1)
	go func() { _, last := collect(ch); got <- last }()
	if err := s.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("drain: %v", err)
	}
	s.Close()
	if last := <-got; !errors.Is(last.Err, sched.ErrClosed) {
		t.Errorf("generation after close ended with %+v", last)
	}
}

// A caller that cancels and stops reading does not leak the forwarding goroutine:
// the generation still leaves the in-flight count.
func TestCancelWithoutReading(t *testing.T) {
	s := load(t, tinyConfig(t, "cw"), Options{})
	toks, _ := s.Tokenize("hello", true, false)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := s.Submit(ctx, sched.Request{Prompt: toks, MaxTokens: 100, IgnoreEOS: true}); err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(30 * time.Second)
	for s.InFlight() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("generation never left the in-flight count")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGroupLoadsAll(t *testing.T) {
	bad := tinyConfig(t, "bad")
	bad.Path = filepath.Join(t.TempDir(), "missing.gguf")
	g := NewGroup([]config.Model{tinyConfig(t, "a"), tinyConfig(t, "b"), bad}, zerolog.Nop(), Options{})
	defer g.Close()
	err := g.LoadAll(context.Background(), 1) // a 1-byte budget: loads run one at a time
	if err == nil || !strings.Contains(err.Error(), "missing.gguf") {
		t.Errorf("LoadAll error %v", err)
	}
	if g.Get("a").State() != StateReady || g.Get("b").State() != StateReady || g.Get("bad").State() != StateFailed {
		t.Errorf("states %s %s %s", g.Get("a").State(), g.Get("b").State(), g.Get("bad").State())
	}
	if len(g.Services()) != 3 || g.Get("zzz") != nil {
		t.Error("lookup")
	}
}

func TestMemGate(t *testing.T) {
	g := newMemGate(10)
	ctx := context.Background()
	if err := g.acquire(ctx, 6); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- g.acquire(ctx, 6) }()
	waitGate(t, g, 1)
	select {
	case err := <-got:
		t.Fatalf("second load admitted beyond the budget (%v)", err)
	default:
	}
	g.release(6)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	g.release(6)
	// A load larger than the budget runs when it is alone.
	if err := g.acquire(ctx, 100); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { got <- g.acquire(cctx, 1) }()
	waitGate(t, g, 1)
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
}

func waitGate(t *testing.T, g *memGate, waiting int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		w := g.waiting
		g.mu.Unlock()
		if w == waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting = %d, want %d", w, waiting)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAvailableMemory(t *testing.T) {
	if m := AvailableMemory(); m < 1<<20 {
		t.Errorf("AvailableMemory = %d", m)
	}
}

// TestHandOver: once an instance is handed over to its replacement and drained, a
// request made to it (a route that resolved it just before a switch-over) is served
// by the replacement; without a hand-over it fails as shutting down.
func TestHandOver(t *testing.T) {
	old, next := load(t, tinyConfig(t, "tiny"), Options{}), load(t, tinyConfig(t, "tiny"), Options{})
	old.HandOver(next)
	if err := old.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	old.Close()
	toks, err := old.Tokenize("Once upon a time", true, false)
	if err != nil {
		t.Fatalf("tokenize on a handed-over instance: %v", err)
	}
	ch, err := old.Submit(context.Background(), sched.Request{Prompt: toks, MaxTokens: 4, IgnoreEOS: true})
	if err != nil {
		t.Fatalf("submit on a handed-over instance: %v", err)
	}
	if _, last := collect(ch); last.Err != nil || last.Usage.CompletionTokens != 4 {
		t.Fatalf("served by the replacement: %+v", last)
	}
	if st := next.Stats(); st.PromptEvaluated == 0 {
		t.Errorf("the replacement evaluated nothing: %+v", st)
	}

	alone := load(t, tinyConfig(t, "tiny"), Options{})
	alone.Close()
	if _, err := alone.Submit(context.Background(), sched.Request{Prompt: toks, MaxTokens: 4}); err == nil {
		t.Error("a closed instance without a hand-over accepted a request")
	}
}
