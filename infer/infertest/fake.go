// Package infertest provides a fake infer.Service for tests of routing, admission and
// the front ends: deterministic, without cgo or a model.
package infertest

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
)

// Fake is an infer.Service serving one model. Generations answer each choice with
// Reply split into words (one event per word), and usage counts prompt bytes/4 (at
// least 1) and one completion token per word. Set Err to make every call fail with
// it, or Fail to decide per call. It is safe for concurrent use; change fields only
// before use or under its lock (Set).
type Fake struct {
	// Model is the model served ("fake" when empty).
	Model string
	// Status is the model's status ("ready" when empty).
	Status string
	// Reply is each choice's output ("hello from fake" when empty).
	Reply string
	// Delay is waited before each event (0: none).
	Delay time.Duration
	// Err, when set, is returned by every call.
	Err error
	// Fail, when set, is asked before every call (after Err) with the operation's
	// name: "chat", "complete", "embed", "tokenize", "detokenize".
	Fail func(op string) error
	// EventErr, when set, ends every choice with this error after its first event.
	EventErr error

	mu    sync.Mutex
	calls map[string]int
	// Running counts generations not yet ended.
	Running atomic.Int64
	// Last is the last request received (any of the request types).
	last any
}

func (f *Fake) model() string {
	if f.Model == "" {
		return "fake"
	}
	return f.Model
}

// Calls returns how many times op was called.
func (f *Fake) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Last returns the last request received.
func (f *Fake) Last() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *Fake) begin(op, model string, r any) error {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op]++
	f.last = r
	f.mu.Unlock()
	if model != "" && model != f.model() {
		return infer.ModelNotFound(model)
	}
	if f.Err != nil {
		return f.Err
	}
	if f.Fail != nil {
		return f.Fail(op)
	}
	return nil
}

// Models implements infer.Service.
func (f *Fake) Models(context.Context) []infer.Model {
	st := f.Status
	if st == "" {
		st = "ready"
	}
	return []infer.Model{{ID: f.model(), Created: time.Unix(1700000000, 0), Status: st, ContextLength: 4096}}
}

// Chat implements infer.Service.
func (f *Fake) Chat(ctx context.Context, r *infer.ChatRequest) (*infer.Generation, error) {
	if err := f.begin("chat", r.Model, r); err != nil {
		return nil, err
	}
	n := 0
	for _, m := range r.Messages {
		n += len(m.Content)
	}
	return f.generate(ctx, &r.GenParams, 1, n), nil
}

// Complete implements infer.Service.
func (f *Fake) Complete(ctx context.Context, r *infer.CompletionRequest) (*infer.Generation, error) {
	if err := f.begin("complete", r.Model, r); err != nil {
		return nil, err
	}
	n := 0
	for _, p := range r.Prompts {
		n += len(p.Text) + 4*len(p.Tokens)
	}
	return f.generate(ctx, &r.GenParams, max(len(r.Prompts), 1), n), nil
}

func (f *Fake) reply() []string {
	r := f.Reply
	if r == "" {
		r = "hello from fake"
	}
	words := strings.SplitAfter(r, " ")
	return words
}

func (f *Fake) generate(ctx context.Context, p *infer.GenParams, prompts, promptBytes int) *infer.Generation {
	n := max(p.N, 1)
	choices := prompts * n
	words := f.reply()
	if p.MaxTokens > 0 && p.MaxTokens < len(words) {
		words = words[:p.MaxTokens]
	}
	finish := infer.FinishStop
	if p.MaxTokens > 0 && p.MaxTokens < len(f.reply()) {
		finish = infer.FinishLength
	}
	gctx, cancel := context.WithCancel(ctx)
	f.Running.Add(1)
	served := infer.Served{Model: f.model()}
	return infer.NewGeneration(served, choices, cancel, func(emit func(infer.Event) bool) infer.Usage {
		defer f.Running.Add(-1)
		start := time.Now()
		u := infer.Usage{PromptTokens: prompts * max(promptBytes/4, 1)}
		for c := 0; c < choices; c++ {
			var ttft time.Duration
			var err error
			for i, w := range words {
				if f.Delay > 0 {
					select {
					case <-time.After(f.Delay):
					case <-gctx.Done():
					}
				}
				if gctx.Err() != nil {
					err = infer.ErrClientGone
					break
				}
				if i == 0 {
					ttft = time.Since(start)
				}
				u.CompletionTokens++
				if !emit(infer.Event{Choice: c, Text: w}) {
					return u
				}
				if f.EventErr != nil {
					err = f.EventErr
					break
				}
			}
			if !emit(infer.Event{Choice: c, Done: true, Finish: finish, TTFT: ttft, Err: err}) {
				return u
			}
		}
		return u
	})
}

// Embed implements infer.Service: vectors of width 4 derived from each input's length.
func (f *Fake) Embed(_ context.Context, r *infer.EmbedRequest) (*infer.Embeddings, error) {
	if err := f.begin("embed", r.Model, r); err != nil {
		return nil, err
	}
	out := &infer.Embeddings{Served: infer.Served{Model: f.model()}}
	for _, in := range r.Inputs {
		n := len(in.Text) + len(in.Tokens)
		out.Vectors = append(out.Vectors, []float32{1, 0, 0, float32(n)})
		out.Usage.PromptTokens += max(n/4, 1)
	}
	return out, nil
}

// Tokenize implements infer.Service: one token per byte of the prompt.
func (f *Fake) Tokenize(_ context.Context, r *infer.TokenizeRequest) (*infer.Tokens, error) {
	if err := f.begin("tokenize", r.Model, r); err != nil {
		return nil, err
	}
	text := r.Prompt
	for _, m := range r.Messages {
		text += m.Content
	}
	toks := make([]engine.Token, len(text))
	for i := range text {
		toks[i] = engine.Token(text[i])
	}
	return &infer.Tokens{Served: infer.Served{Model: f.model()}, Tokens: toks, MaxModelLen: 4096}, nil
}

// ApplyTemplate implements infer.Service: the conversation rendered with ChatML.
func (f *Fake) ApplyTemplate(_ context.Context, r *infer.ApplyTemplateRequest) (*infer.RenderedPrompt, error) {
	if err := f.begin("apply-template", r.Model, r); err != nil {
		return nil, err
	}
	tpl, err := chat.ParseTemplate(chat.ChatML)
	if err != nil {
		return nil, err
	}
	text, err := tpl.Render(chat.RenderInput{Messages: r.Messages, Tools: r.Tools, AddGenerationPrompt: r.AddGenerationPrompt})
	if err != nil {
		return nil, infer.Invalid("messages", "%v", err)
	}
	return &infer.RenderedPrompt{Served: infer.Served{Model: f.model()}, Prompt: text}, nil
}

// Detokenize implements infer.Service: each token is one byte.
func (f *Fake) Detokenize(_ context.Context, r *infer.DetokenizeRequest) (*infer.Text, error) {
	if err := f.begin("detokenize", r.Model, r); err != nil {
		return nil, err
	}
	b := make([]byte, len(r.Tokens))
	for i, t := range r.Tokens {
		b[i] = byte(t)
	}
	return &infer.Text{Served: infer.Served{Model: f.model()}, Text: string(b)}, nil
}

var _ infer.Service = (*Fake)(nil)
