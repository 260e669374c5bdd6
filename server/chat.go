package server

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// chat serves POST /v1/chat/completions.
func (l *Local) chat(ctx *fasthttp.RequestCtx) {
	p, err := decodeChat(ctx.PostBody(), l.lim)
	if !l.accept(ctx, err) {
		return
	}
	text, err := l.b.RenderChat(p.Messages)
	if err != nil {
		writeError(ctx, err, "messages")
		return
	}
	// The rendered template holds control tokens as text: parse them.
	toks, err := l.b.Tokenize(text, true, true)
	if err != nil {
		writeError(ctx, err, "messages")
		return
	}
	g, err := startGeneration(l.b, &p.genParams, [][]engine.Token{toks})
	if err != nil {
		writeError(ctx, err, "messages")
		return
	}
	f := &chatFormat{b: l.b, id: "chatcmpl-" + newID(), created: time.Now().Unix(), model: l.b.Name(),
		includeUsage: p.IncludeUsage, logprobs: p.Logprobs}
	l.run(ctx, g, &p.genParams, f, "messages")
}

// chatFormat renders chat.completion responses and chat.completion.chunk events.
type chatFormat struct {
	b            Backend
	id           string
	created      int64
	model        string
	includeUsage bool
	logprobs     bool
}

func (f *chatFormat) chunk(choices []ChatChunkChoice) *ChatChunk {
	return &ChatChunk{ID: f.id, Object: "chat.completion.chunk", Created: f.created, Model: f.model,
		Choices: choices, Usage: usageField(f.includeUsage, nil)}
}

func (f *chatFormat) startChunks(n int) []any {
	out := make([]any, n)
	for i := range out {
		empty := ""
		out[i] = f.chunk([]ChatChunkChoice{{Index: i, Delta: ChatDelta{Role: "assistant", Content: &empty}}})
	}
	return out
}

func (f *chatFormat) deltaChunk(idx int, ev *sched.Event) (any, error) {
	if ev.Text == "" && len(ev.Logprobs) == 0 {
		return nil, nil
	}
	text := ev.Text
	c := ChatChunkChoice{Index: idx, Delta: ChatDelta{Content: &text}}
	if f.logprobs && len(ev.Logprobs) > 0 {
		lps, err := chatLogprobs(f.b, ev.Logprobs)
		if err != nil {
			return nil, err
		}
		c.Logprobs = &ChatLogprobs{Content: lps}
	}
	return f.chunk([]ChatChunkChoice{c}), nil
}

func (f *chatFormat) finishChunk(idx int, reason string) any {
	return f.chunk([]ChatChunkChoice{{Index: idx, Delta: ChatDelta{}, FinishReason: &reason}})
}

func (f *chatFormat) usageChunk(u *Usage) any {
	c := f.chunk([]ChatChunkChoice{})
	c.Usage = usageField(true, u)
	return c
}

func (f *chatFormat) response(choices []choiceResult, u *Usage) (any, error) {
	resp := &ChatCompletion{ID: f.id, Object: "chat.completion", Created: f.created, Model: f.model,
		Choices: make([]ChatChoice, len(choices)), Usage: u}
	for i := range choices {
		r := &choices[i]
		c := ChatChoice{Index: i, Message: ChatMessage{Role: "assistant", Content: r.text.String()}, FinishReason: finishReason(r.finish)}
		if f.logprobs {
			lps, err := chatLogprobs(f.b, r.logprobs)
			if err != nil {
				return nil, err
			}
			c.Logprobs = &ChatLogprobs{Content: lps}
		}
		resp.Choices[i] = c
	}
	return resp, nil
}
