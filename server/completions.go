package server

import (
	"fmt"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// completions serves POST /v1/completions.
func (l *Local) completions(ctx *fasthttp.RequestCtx) {
	p, err := decodeCompletion(ctx.PostBody(), l.lim)
	if !l.accept(ctx, err) {
		return
	}
	prompts := make([][]engine.Token, len(p.Prompts))
	for i, pr := range p.Prompts {
		if pr.IsTokens {
			prompts[i] = pr.Tokens
			continue
		}
		// User text: never parse control tokens out of it.
		toks, err := l.b.Tokenize(pr.Text, true, false)
		if err != nil {
			writeError(ctx, err, promptParam(i, len(p.Prompts)))
			return
		}
		prompts[i] = toks
	}
	g, err := startGeneration(l.b, &p.genParams, prompts)
	if err != nil {
		writeError(ctx, err, "prompt")
		return
	}
	f := &completionFormat{b: l.b, id: "cmpl-" + newID(), created: time.Now().Unix(), model: l.b.Name(),
		includeUsage: p.IncludeUsage, logprobs: p.Logprobs, offsets: make([]int, len(prompts)*p.N)}
	l.run(ctx, g, &p.genParams, f, "prompt")
}

func promptParam(i, n int) string {
	if n == 1 {
		return "prompt"
	}
	return fmt.Sprintf("prompt[%d]", i)
}

// completionFormat renders text_completion responses and chunks.
type completionFormat struct {
	b            Backend
	id           string
	created      int64
	model        string
	includeUsage bool
	logprobs     bool
	offsets      []int // text offset per choice, for streamed logprobs
}

func (f *completionFormat) chunk(c CompletionChoice) *Completion {
	return &Completion{ID: f.id, Object: "text_completion", Created: f.created, Model: f.model,
		Choices: []CompletionChoice{c}, Usage: usageField(f.includeUsage, nil)}
}

func (f *completionFormat) startChunks(int) []any { return nil }

func (f *completionFormat) deltaChunk(idx int, ev *sched.Event) (any, error) {
	if ev.Text == "" && len(ev.Logprobs) == 0 {
		return nil, nil
	}
	c := CompletionChoice{Index: idx, Text: ev.Text}
	if f.logprobs {
		lp, err := legacyLogprobs(f.b, ev.Logprobs, &f.offsets[idx])
		if err != nil {
			return nil, err
		}
		c.Logprobs = lp
	}
	return f.chunk(c), nil
}

func (f *completionFormat) finishChunk(idx int, reason string) any {
	return f.chunk(CompletionChoice{Index: idx, FinishReason: &reason})
}

func (f *completionFormat) usageChunk(u *Usage) any {
	c := f.chunk(CompletionChoice{})
	c.Choices = []CompletionChoice{}
	c.Usage = usageField(true, u)
	return c
}

func (f *completionFormat) response(choices []choiceResult, u *Usage) (any, error) {
	resp := &Completion{ID: f.id, Object: "text_completion", Created: f.created, Model: f.model,
		Choices: make([]CompletionChoice, len(choices)), Usage: usageField(true, u)}
	for i := range choices {
		r := &choices[i]
		reason := finishReason(r.finish)
		c := CompletionChoice{Index: i, Text: r.text.String(), FinishReason: &reason}
		if f.logprobs {
			off := 0
			lp, err := legacyLogprobs(f.b, r.logprobs, &off)
			if err != nil {
				return nil, err
			}
			c.Logprobs = lp
		}
		resp.Choices[i] = c
	}
	return resp, nil
}
