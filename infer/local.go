package infer

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
	"github.com/hxp-ai/hxp/service"
)

// Backend is one model served in this process, as Local uses it; *service.Service
// implements it. Every method returns an error wrapping service.ErrNotReady or
// sched.ErrClosed when the model is not serving.
type Backend interface {
	// Name is the model id.
	Name() string
	// Ready is nil when the model serves requests.
	Ready() error
	// State is the model's lifecycle state.
	State() service.State
	// SeqCtx is one request's context window in tokens (0 when not ready).
	SeqCtx() int
	// RenderChat applies the chat template, ending with the assistant's turn.
	RenderChat(msgs []engine.ChatMessage) (string, error)
	// Tokenize converts text to tokens.
	Tokenize(text string, addSpecial, parseSpecial bool) ([]engine.Token, error)
	// Detokenize converts tokens to text.
	Detokenize(toks []engine.Token) (string, error)
	// TokenBytes is the raw text of one token.
	TokenBytes(t engine.Token) ([]byte, error)
	// Submit starts a generation (see sched.Scheduler.Submit).
	Submit(ctx context.Context, r sched.Request) (<-chan sched.Event, error)
	// Embed returns one L2-normalised vector per tokenized input.
	Embed(ctx context.Context, inputs [][]engine.Token) ([][]float32, error)
	// MaxEmbedTokens is the longest embeddings input.
	MaxEmbedTokens() int
	// Info is the model's metadata.
	Info() engine.ModelInfo
	// TemplateSource is the model's chat template and its origin, read at load.
	TemplateSource() service.TemplateSource
	// Config is the model's config entry (its tool_format).
	Config() config.Model
	// Created is when the model service was created.
	Created() time.Time
}

var _ Backend = (*service.Service)(nil)

// Local is the Service of one model served in this process. It serves requests for
// its own model and for no model named; other names are NotFound.
type Local struct {
	b Backend

	mu   sync.Mutex
	tmpl *chatTemplate // parsed on first use once the model is ready
}

var _ Service = (*Local)(nil)

// NewLocal returns the service of backend b.
func NewLocal(b Backend) *Local { return &Local{b: b} }

// Name is the model's id.
func (l *Local) Name() string { return l.b.Name() }

// Ready is nil when the model serves requests (the router's health check).
func (l *Local) Ready() error { return l.b.Ready() }

// Models implements Service.
func (l *Local) Models(context.Context) []Model {
	m := Model{ID: l.b.Name(), Created: l.b.Created(), Status: l.b.State().String(), ContextLength: l.b.SeqCtx()}
	if l.b.Ready() == nil {
		if t, err := l.template(); err == nil {
			m.ChatTemplate = t.origin
		}
	}
	return []Model{m}
}

// template is the model's chat template, parsed on first use (the model is ready).
func (l *Local) template() (*chatTemplate, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tmpl == nil {
		t, err := loadTemplate(l.b.TemplateSource(), l.b.Config(), l.b.Info())
		if err != nil {
			return nil, AsError(err, "")
		}
		l.tmpl = t
	}
	return l.tmpl, nil
}

// render renders a conversation with the model's template.
func (l *Local) render(msgs []chat.Message, tools []chat.Tool, vars chat.Vars, addGen, teach bool) (*chatTemplate, rendering, error) {
	t, err := l.template()
	if err != nil {
		return nil, rendering{}, err
	}
	rd, err := t.render(l.b, msgs, tools, vars.Over(t.vars), addGen, teach)
	return t, rd, err
}

// Waker is a Backend that loads on demand: service.Service, whose model may be
// unloaded after unload_after idle. Wake starts the load and waits for it up to the
// model's load_wait; Ready then says whether it is serving. A Wake error (the model
// does not fit the free memory now) is the request's answer.
type Waker interface {
	Wake(ctx context.Context) error
}

var _ Waker = (*service.Service)(nil)

// accept checks that r asks for this model and that it is ready, loading it first
// when it was unloaded for idleness.
func (l *Local) accept(ctx context.Context, model string) error {
	if model != "" && model != l.b.Name() {
		return ModelNotFound(model)
	}
	if w, ok := l.b.(Waker); ok {
		if err := w.Wake(ctx); err != nil {
			return AsError(err, "")
		}
	}
	if err := l.b.Ready(); err != nil {
		return AsError(err, "")
	}
	return nil
}

func (l *Local) served() Served { return Served{Model: l.b.Name()} }

// Chat implements Service.
func (l *Local) Chat(ctx context.Context, r *ChatRequest) (*Generation, error) {
	if err := l.accept(ctx, r.Model); err != nil {
		return nil, err
	}
	t, rd, err := l.render(r.Messages, r.Tools, r.TemplateVars, true, r.ToolChoice.Mode != chat.ToolNone)
	if err != nil {
		return nil, err
	}
	sh, err := chatShape(r, rd)
	if err != nil {
		return nil, err
	}
	// The rendered template holds control tokens as text: parse them.
	toks, err := l.b.Tokenize(t.tokenizerText(rd.text, true), true, true)
	if err != nil {
		return nil, AsError(err, "messages")
	}
	return l.start(ctx, &r.GenParams, [][]engine.Token{toks}, "messages", sh)
}

// ApplyTemplate implements Service.
func (l *Local) ApplyTemplate(ctx context.Context, r *ApplyTemplateRequest) (*RenderedPrompt, error) {
	if err := l.accept(ctx, r.Model); err != nil {
		return nil, err
	}
	_, rd, err := l.render(r.Messages, r.Tools, r.TemplateVars, r.AddGenerationPrompt, len(r.Tools) > 0)
	if err != nil {
		return nil, err
	}
	return &RenderedPrompt{Served: l.served(), Prompt: rd.text}, nil
}

// Complete implements Service.
func (l *Local) Complete(ctx context.Context, r *CompletionRequest) (*Generation, error) {
	if err := l.accept(ctx, r.Model); err != nil {
		return nil, err
	}
	prompts := make([][]engine.Token, len(r.Prompts))
	for i, p := range r.Prompts {
		if p.IsTokens {
			prompts[i] = p.Tokens
			continue
		}
		// User text: never parse control tokens out of it.
		toks, err := l.b.Tokenize(p.Text, true, false)
		if err != nil {
			return nil, AsError(err, PromptParam(i, len(r.Prompts)))
		}
		prompts[i] = toks
	}
	sh, err := formatShape(r.Format)
	if err != nil {
		return nil, err
	}
	return l.start(ctx, &r.GenParams, prompts, "prompt", sh)
}

// PromptParam names prompt i of n in errors.
func PromptParam(i, n int) string {
	if n == 1 {
		return "prompt"
	}
	return fmt.Sprintf("prompt[%d]", i)
}

// start submits every choice (n per prompt) and returns their generation. When one
// submission fails, the ones already running are cancelled and the error returned.
func (l *Local) start(ctx context.Context, p *GenParams, prompts [][]engine.Token, param string, sh *shape) (*Generation, error) {
	s := sh.sampling(p.Sampling)
	n := max(p.N, 1)
	var tenant string
	var weight float64
	prio := sched.Interactive
	if c := CallerFrom(ctx); c != nil {
		tenant, weight, prio = c.ID, c.Weight, c.Priority
	}
	if p.Batch {
		prio = sched.Batch
	}
	gctx, cancel := context.WithCancel(ctx)
	chans := make([]<-chan sched.Event, 0, len(prompts)*n)
	for _, toks := range prompts {
		for j := 0; j < n; j++ {
			sj := s
			sj.Seed += uint32(j) // distinct choices from one seed, reproducibly
			ch, err := l.b.Submit(gctx, sched.Request{
				Prompt: toks, MaxTokens: p.MaxTokens, Sampling: sj, Stop: p.Stop,
				Logprobs: p.Logprobs, TopLogprobs: p.TopLogprobs, Tenant: tenant, Weight: weight, Priority: prio,
				RenderSpecial: sh.renderSpecial,
			})
			if err != nil {
				cancel()
				for _, c := range chans {
					go drain(c)
				}
				return nil, AsError(err, param)
			}
			chans = append(chans, ch)
		}
	}
	readers := make([]reader, len(chans))
	if sh.parse != nil {
		for i := range readers {
			readers[i].p = sh.parse()
		}
	}
	return NewGeneration(l.served(), len(chans), cancel, func(emit func(Event) bool) Usage {
		return l.relay(chans, readers, n, p.Logprobs, emit)
	}), nil
}

func drain(ch <-chan sched.Event) {
	for range ch {
	}
}

type indexed struct {
	idx int
	ev  sched.Event
}

// relay merges the choices' events in arrival order into emit, each choice's text
// read by its reader, and returns the usage: prompt tokens once per prompt,
// completion tokens of every choice.
func (l *Local) relay(chans []<-chan sched.Event, readers []reader, n int, logprobs bool, emit func(Event) bool) Usage {
	merged := make(chan indexed, len(chans))
	var wg sync.WaitGroup
	for i, ch := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range ch {
				merged <- indexed{idx: i, ev: ev}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(merged)
	}()
	var u Usage
	listening := true
	for ie := range merged {
		ev := &ie.ev
		if ev.Done {
			if ie.idx%n == 0 {
				u.PromptTokens += ev.Usage.PromptTokens
				u.CachedTokens += ev.Usage.CachedTokens
			}
			u.CompletionTokens += ev.Usage.CompletionTokens
		}
		if !listening {
			continue // the consumer left: the choices are cancelled, drain them
		}
		out := Event{Choice: ie.idx, Done: ev.Done, TTFT: ev.TimeToFirstToken, StopSequence: ev.StopSequence}
		readers[ie.idx].feed(&out, ev.Text)
		if logprobs && len(ev.Logprobs) > 0 {
			lps, err := l.logprobs(ev.Logprobs)
			if err != nil && !ev.Done {
				out.Done, out.Err = true, AsError(err, "")
			}
			out.Logprobs = lps
		}
		if ev.Done {
			switch {
			case ev.Err != nil:
				out.Err = ev.Err
			case ev.Finish == sched.FinishCancelled:
				out.Err = ErrClientGone
			case ev.Finish == sched.FinishLength:
				out.Finish = FinishLength
			}
			readers[ie.idx].close(&out)
		}
		if !out.Done && out.empty() {
			continue
		}
		listening = emit(out)
	}
	return u
}

// logprobs adds the alternatives' text to the scheduler's logprobs.
func (l *Local) logprobs(in []sched.TokenLogprob) ([]TokenLogprob, error) {
	out := make([]TokenLogprob, len(in))
	for i, lp := range in {
		e := TokenLogprob{Bytes: lp.Text, Logprob: lp.Logprob, Top: make([]TopLogprob, 0, len(lp.Top))}
		for _, alt := range lp.Top {
			tb, err := l.b.TokenBytes(alt.Token)
			if err != nil {
				return out[:i], err
			}
			e.Top = append(e.Top, TopLogprob{Bytes: tb, Logprob: alt.Logprob})
		}
		out[i] = e
	}
	return out, nil
}

// Embed implements Service.
func (l *Local) Embed(ctx context.Context, r *EmbedRequest) (*Embeddings, error) {
	if err := l.accept(ctx, r.Model); err != nil {
		return nil, err
	}
	if embd := l.b.Info().Embd; r.Dimensions != 0 && r.Dimensions != embd {
		return nil, Invalid("dimensions", "model %s produces %d-dimensional embeddings; other dimensions are not supported", l.b.Name(), embd)
	}
	inputs := make([][]engine.Token, len(r.Inputs))
	total := 0
	for i, in := range r.Inputs {
		param := fmt.Sprintf("input[%d]", i)
		toks := in.Tokens
		if !in.IsTokens {
			var err error
			if toks, err = l.b.Tokenize(in.Text, true, false); err != nil {
				return nil, AsError(err, param)
			}
		}
		if limit := l.b.MaxEmbedTokens(); len(toks) > limit {
			return nil, AsError(fmt.Errorf("%s has %d tokens, more than the %d this model embeds at once: %w", param, len(toks), limit, sched.ErrContextOverflow), param)
		}
		inputs[i] = toks
		total += len(toks)
	}
	vecs, err := l.b.Embed(ctx, inputs)
	if err != nil {
		return nil, AsError(err, "input")
	}
	for _, v := range vecs {
		for j, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				v[j] = 0 // no wire format carries NaN; a degenerate model must not fail the request
			}
		}
	}
	return &Embeddings{Served: l.served(), Vectors: vecs, Usage: Usage{PromptTokens: total}}, nil
}

// Tokenize implements Service: a prompt is tokenized as completions do (control-token
// text stays text), messages as chat does.
func (l *Local) Tokenize(ctx context.Context, r *TokenizeRequest) (*Tokens, error) {
	if err := l.accept(ctx, r.Model); err != nil {
		return nil, err
	}
	var toks []engine.Token
	if r.Messages != nil {
		t, rd, err := l.render(r.Messages, r.Tools, nil, true, len(r.Tools) > 0)
		if err != nil {
			return nil, err
		}
		if toks, err = l.b.Tokenize(t.tokenizerText(rd.text, r.AddSpecial), r.AddSpecial, true); err != nil {
			return nil, AsError(err, "messages")
		}
	} else {
		var err error
		if toks, err = l.b.Tokenize(r.Prompt, r.AddSpecial, false); err != nil {
			return nil, AsError(err, "prompt")
		}
	}
	if toks == nil {
		toks = []engine.Token{}
	}
	return &Tokens{Served: l.served(), Tokens: toks, MaxModelLen: l.b.SeqCtx()}, nil
}

// Detokenize implements Service. Ids outside the vocabulary are InvalidArgument; text
// that ends inside a UTF-8 character gets U+FFFD.
func (l *Local) Detokenize(ctx context.Context, r *DetokenizeRequest) (*Text, error) {
	if err := l.accept(ctx, r.Model); err != nil {
		return nil, err
	}
	text, err := l.b.Detokenize(r.Tokens)
	if err != nil {
		return nil, AsError(err, "tokens")
	}
	return &Text{Served: l.served(), Text: strings.ToValidUTF8(text, "\uFFFD")}, nil
}
