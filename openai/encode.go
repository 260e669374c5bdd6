package openai

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"strings"
	"time"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/infer"
)

// Rendering of the core's results in OpenAI's format. A Stream renders one request's
// chunks; the non-streamed responses are built from a collected infer.Result.

// NewID returns 24 random hex characters (response ids, request ids).
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Card renders a model for /v1/models.
func Card(m infer.Model) ModelCard {
	return ModelCard{ID: m.ID, Object: "model", Created: m.Created.Unix(), OwnedBy: "hxp", Status: m.Status, ContextLength: m.ContextLength,
		ChatTemplate: m.ChatTemplate}
}

// Cards renders a model list.
func Cards(ms []infer.Model) ModelList {
	out := ModelList{Object: "list", Data: make([]ModelCard, len(ms))}
	for i, m := range ms {
		out.Data[i] = Card(m)
	}
	return out
}

// UsageOf renders usage (prompt_tokens_details.cached_tokens included).
func UsageOf(u infer.Usage) *Usage {
	return &Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.Total(),
		PromptTokensDetails: &PromptTokensDetails{CachedTokens: u.CachedTokens}}
}

// usageField renders the usage member of a chunk: absent without include_usage, null
// on ordinary chunks with it.
func usageField(include bool, u *Usage) json.RawMessage {
	if !include {
		return nil
	}
	if u == nil {
		return json.RawMessage("null")
	}
	b, _ := json.Marshal(u)
	return b
}

// Kind is the endpoint a Stream renders.
type Kind int

// Endpoints with generations.
const (
	KindChat Kind = iota
	KindCompletion
)

// Stream renders one generation's responses and chunks: chat.completion(.chunk) or
// text_completion.
type Stream struct {
	kind         Kind
	id           string
	created      int64
	model        string
	includeUsage bool
	logprobs     bool
	offsets      []int // completions' text offset per choice, for streamed logprobs
}

// NewStream starts rendering a generation (its id, start and model are sv's) with
// choices choices.
func NewStream(kind Kind, sv infer.Served, choices int, includeUsage, logprobs bool) *Stream {
	prefix := "chatcmpl-"
	if kind == KindCompletion {
		prefix = "cmpl-"
	}
	id := sv.ID
	if id == "" {
		id = NewID()
	}
	created := sv.Created
	if created.IsZero() {
		created = time.Now()
	}
	return &Stream{kind: kind, id: prefix + id, created: created.Unix(), model: sv.Model,
		includeUsage: includeUsage, logprobs: logprobs, offsets: make([]int, choices)}
}

func (s *Stream) chatChunk(choices []ChatChunkChoice) *ChatChunk {
	return &ChatChunk{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model,
		Choices: choices, Usage: usageField(s.includeUsage, nil)}
}

func (s *Stream) completionChunk(c CompletionChoice) *Completion {
	return &Completion{ID: s.id, Object: "text_completion", Created: s.created, Model: s.model,
		Choices: []CompletionChoice{c}, Usage: usageField(s.includeUsage, nil)}
}

// Start are the chunks sent before any output (chat: each choice's role).
func (s *Stream) Start(choices int) []any {
	if s.kind != KindChat {
		return nil
	}
	out := make([]any, choices)
	for i := range out {
		empty := ""
		out[i] = s.chatChunk([]ChatChunkChoice{{Index: i, Delta: ChatDelta{Role: "assistant", Content: &empty}}})
	}
	return out
}

// Delta is the chunk of an event's new output, or nil when it has none.
func (s *Stream) Delta(ev *infer.Event) any {
	if ev.Text == "" && ev.Reasoning == "" && len(ev.ToolCalls) == 0 && len(ev.Logprobs) == 0 {
		return nil
	}
	if s.kind == KindChat {
		c := ChatChunkChoice{Index: ev.Choice, Delta: chatDelta(ev)}
		if s.logprobs && len(ev.Logprobs) > 0 {
			c.Logprobs = &ChatLogprobs{Content: chatLogprobs(ev.Logprobs)}
		}
		return s.chatChunk([]ChatChunkChoice{c})
	}
	c := CompletionChoice{Index: ev.Choice, Text: ev.Text}
	if s.logprobs {
		c.Logprobs = legacyLogprobs(ev.Logprobs, &s.offsets[ev.Choice])
	}
	return s.completionChunk(c)
}

// chatDelta is an event's output as a chat delta: content, reasoning_content, and
// tool_calls pieces as OpenAI streams them (index, then id, type and name, then
// argument fragments).
func chatDelta(ev *infer.Event) ChatDelta {
	var d ChatDelta
	if ev.Text != "" || ev.Reasoning == "" && len(ev.ToolCalls) == 0 {
		text := ev.Text
		d.Content = &text
	}
	if ev.Reasoning != "" {
		r := ev.Reasoning
		d.ReasoningContent = &r
	}
	for _, tc := range ev.ToolCalls {
		call := ToolCall{Index: &tc.Index, ID: tc.ID, Function: FunctionCall{Name: tc.Name, Arguments: tc.Arguments}}
		if tc.ID != "" {
			call.Type = "function"
		}
		d.ToolCalls = append(d.ToolCalls, call)
	}
	return d
}

// toolCalls renders a choice's calls in a message.
func toolCalls(calls []chat.ToolCall) []ToolCall {
	var out []ToolCall
	for _, c := range calls {
		out = append(out, ToolCall{ID: c.ID, Type: "function", Function: FunctionCall{Name: c.Name, Arguments: c.Arguments}})
	}
	return out
}

// Finish is the chunk that ends the choice of ev, the choice's last event: its
// finish_reason, and the matched stop string as stop_reason.
func (s *Stream) Finish(ev *infer.Event) any {
	r := ev.Finish.String()
	stop := stopReason(ev.Finish, ev.StopSequence)
	if s.kind == KindChat {
		return s.chatChunk([]ChatChunkChoice{{Index: ev.Choice, Delta: ChatDelta{}, FinishReason: &r, StopReason: stop}})
	}
	return s.completionChunk(CompletionChoice{Index: ev.Choice, FinishReason: &r, StopReason: stop})
}

// stopReason is a choice's stop_reason: the stop string that ended it, or nil.
func stopReason(finish infer.FinishReason, stop string) *string {
	if finish != infer.FinishStop || stop == "" {
		return nil
	}
	return &stop
}

// UsageChunk is the last chunk with stream_options.include_usage.
func (s *Stream) UsageChunk(u infer.Usage) any {
	if s.kind == KindChat {
		c := s.chatChunk([]ChatChunkChoice{})
		c.Usage = usageField(true, UsageOf(u))
		return c
	}
	c := s.completionChunk(CompletionChoice{})
	c.Choices = []CompletionChoice{}
	c.Usage = usageField(true, UsageOf(u))
	return c
}

// Response is the non-streamed response of a collected generation.
func (s *Stream) Response(r *infer.Result) any {
	if s.kind == KindChat {
		resp := &ChatCompletion{ID: s.id, Object: "chat.completion", Created: s.created, Model: s.model,
			Choices: make([]ChatChoice, len(r.Choices)), Usage: UsageOf(r.Usage)}
		for i := range r.Choices {
			c := &r.Choices[i]
			cc := ChatChoice{Index: i, Message: ChatMessage{Role: "assistant", Content: c.Text, ReasoningContent: c.Reasoning,
				ToolCalls: toolCalls(c.ToolCalls)}, FinishReason: c.Finish.String(), StopReason: stopReason(c.Finish, c.StopSequence)}
			if s.logprobs {
				cc.Logprobs = &ChatLogprobs{Content: chatLogprobs(c.Logprobs)}
			}
			resp.Choices[i] = cc
		}
		return resp
	}
	resp := &Completion{ID: s.id, Object: "text_completion", Created: s.created, Model: s.model,
		Choices: make([]CompletionChoice, len(r.Choices)), Usage: usageField(true, UsageOf(r.Usage))}
	for i := range r.Choices {
		c := &r.Choices[i]
		reason := c.Finish.String()
		cc := CompletionChoice{Index: i, Text: c.Text, FinishReason: &reason, StopReason: stopReason(c.Finish, c.StopSequence)}
		if s.logprobs {
			off := 0
			cc.Logprobs = legacyLogprobs(c.Logprobs, &off)
		}
		resp.Choices[i] = cc
	}
	return resp
}

// minLogprob stands in for -Inf (a token the model or grammar ruled out), which JSON
// cannot carry; OpenAI reports such tokens with the same value.
const minLogprob = -9999.0

func finiteLogprob(lp float32) float64 {
	v := float64(lp)
	if math.IsNaN(v) || v < minLogprob {
		return minLogprob
	}
	return v
}

// tokenString shows a token's bytes as text; bytes that are not valid UTF-8 on their
// own (part of a character) become U+FFFD, the raw bytes are in the bytes field.
func tokenString(b []byte) string { return strings.ToValidUTF8(string(b), "\uFFFD") }

func byteInts(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

// chatLogprobs renders logprobs as chat's content[] entries.
func chatLogprobs(lps []infer.TokenLogprob) []TokenLogprob {
	out := make([]TokenLogprob, len(lps))
	for i, lp := range lps {
		e := TokenLogprob{Token: tokenString(lp.Bytes), Logprob: finiteLogprob(lp.Logprob), Bytes: byteInts(lp.Bytes),
			TopLogprobs: make([]TopLogprob, 0, len(lp.Top))}
		for _, alt := range lp.Top {
			e.TopLogprobs = append(e.TopLogprobs, TopLogprob{Token: tokenString(alt.Bytes), Logprob: finiteLogprob(alt.Logprob), Bytes: byteInts(alt.Bytes)})
		}
		out[i] = e
	}
	return out
}

// legacyLogprobs renders logprobs in /v1/completions' format; offset is the text
// offset of the first token and is advanced past the last.
func legacyLogprobs(lps []infer.TokenLogprob, offset *int) *CompletionLogprobs {
	out := &CompletionLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	for _, lp := range lps {
		out.Tokens = append(out.Tokens, tokenString(lp.Bytes))
		out.TokenLogprobs = append(out.TokenLogprobs, finiteLogprob(lp.Logprob))
		out.TextOffset = append(out.TextOffset, *offset)
		*offset += len(lp.Bytes)
		top := make(map[string]float64, len(lp.Top))
		for _, alt := range lp.Top {
			top[tokenString(alt.Bytes)] = finiteLogprob(alt.Logprob)
		}
		out.TopLogprobs = append(out.TopLogprobs, top)
	}
	return out
}

// EmbeddingsResponse renders embeddings; base64 is encoding_format "base64".
func EmbeddingsResponse(e *infer.Embeddings, base64 bool) *EmbeddingResponse {
	resp := &EmbeddingResponse{Object: "list", Model: e.Model, Data: make([]Embedding, len(e.Vectors)),
		Usage: Usage{PromptTokens: e.Usage.PromptTokens, TotalTokens: e.Usage.PromptTokens}}
	for i, v := range e.Vectors {
		var x any = v
		if base64 {
			x = encodeBase64(v)
		}
		resp.Data[i] = Embedding{Object: "embedding", Index: i, Embedding: x}
	}
	return resp
}

// encodeBase64 is OpenAI's base64 encoding: little-endian float32s.
func encodeBase64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// TokenizeResponseOf renders a tokenize result.
func TokenizeResponseOf(t *infer.Tokens) *TokenizeResponse {
	toks := make([]int32, len(t.Tokens))
	for i, x := range t.Tokens {
		toks[i] = int32(x)
	}
	return &TokenizeResponse{Tokens: toks, Count: len(toks), MaxModelLen: t.MaxModelLen}
}
