package grpc

import (
	"context"
	"strconv"
	"strings"
	"time"

	gogrpc "google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/transport/grpc/hxpv1"
)

// Rendering of the core's results as proto messages.

func modelOf(m infer.Model) *hxpv1.Model {
	return &hxpv1.Model{Id: m.ID, Created: m.Created.Unix(), Status: m.Status, ContextLength: int32(m.ContextLength),
		ChatTemplate: m.ChatTemplate}
}

func finishOf(f infer.FinishReason) hxpv1.FinishReason {
	switch f {
	case infer.FinishLength:
		return hxpv1.FinishReason_FINISH_REASON_LENGTH
	case infer.FinishToolCalls:
		return hxpv1.FinishReason_FINISH_REASON_TOOL_CALLS
	}
	return hxpv1.FinishReason_FINISH_REASON_STOP
}

func usageOf(u infer.Usage) *hxpv1.Usage {
	return &hxpv1.Usage{PromptTokens: int32(u.PromptTokens), CompletionTokens: int32(u.CompletionTokens),
		TotalTokens: int32(u.Total()), CachedTokens: int32(u.CachedTokens)}
}

// tokenText is a token's text for display: invalid UTF-8 (part of a character)
// replaced; the raw bytes travel beside it.
func tokenText(b []byte) string { return strings.ToValidUTF8(string(b), "\uFFFD") }

func logprobsOf(lps []infer.TokenLogprob) []*hxpv1.TokenLogprob {
	if len(lps) == 0 {
		return nil
	}
	out := make([]*hxpv1.TokenLogprob, len(lps))
	for i, lp := range lps {
		t := &hxpv1.TokenLogprob{Token: tokenText(lp.Bytes), Bytes: lp.Bytes, Logprob: float64(lp.Logprob)}
		for _, top := range lp.Top {
			t.TopLogprobs = append(t.TopLogprobs, &hxpv1.TopLogprob{Token: tokenText(top.Bytes), Bytes: top.Bytes, Logprob: float64(top.Logprob)})
		}
		out[i] = t
	}
	return out
}

// responseOf renders a collected generation.
func responseOf(id string, res *infer.Result) *hxpv1.GenerateResponse {
	out := &hxpv1.GenerateResponse{Id: id, Model: res.Model, Usage: usageOf(res.Usage), Choices: make([]*hxpv1.Choice, len(res.Choices))}
	for i, c := range res.Choices {
		ch := &hxpv1.Choice{Index: int32(i), Text: c.Text, FinishReason: finishOf(c.Finish), Logprobs: logprobsOf(c.Logprobs),
			ReasoningContent: c.Reasoning}
		for _, tc := range c.ToolCalls {
			ch.ToolCalls = append(ch.ToolCalls, &hxpv1.ToolCall{Id: tc.ID, Type: "function",
				Function: &hxpv1.FunctionCall{Name: tc.Name, Arguments: tc.Arguments}})
		}
		out.Choices[i] = ch
	}
	return out
}

// deltaOf is the chunk of an event's output, or nil when it has none.
func deltaOf(ev *infer.Event) *hxpv1.GenerateChunk {
	if ev.Text == "" && ev.Reasoning == "" && len(ev.ToolCalls) == 0 && len(ev.Logprobs) == 0 {
		return nil
	}
	c := &hxpv1.GenerateChunk{Index: int32(ev.Choice), Text: ev.Text, ReasoningContent: ev.Reasoning, Logprobs: logprobsOf(ev.Logprobs)}
	for _, d := range ev.ToolCalls {
		tc := &hxpv1.ToolCallDelta{Index: int32(d.Index), Id: d.ID, Function: &hxpv1.FunctionCall{Name: d.Name, Arguments: d.Arguments}}
		if d.ID != "" || d.Name != "" {
			tc.Type = "function"
		}
		c.ToolCalls = append(c.ToolCalls, tc)
	}
	return c
}

func embeddingsOf(e *infer.Embeddings) *hxpv1.EmbedResponse {
	out := &hxpv1.EmbedResponse{Model: e.Model, Usage: usageOf(e.Usage), Data: make([]*hxpv1.Embedding, len(e.Vectors))}
	for i, v := range e.Vectors {
		out.Data[i] = &hxpv1.Embedding{Index: int32(i), Embedding: v}
	}
	return out
}

// Response metadata of how a call was served (REST's response headers).
const (
	// FallbackHeader names the model that answered when it is a fallback of the one
	// asked for.
	FallbackHeader = "x-hxp-fallback"
	// CacheHeader is hit or miss for a cacheable request.
	CacheHeader = "x-hxp-cache"
	// RequestIDHeader is the call's request id (the client's, when valid).
	RequestIDHeader = "x-request-id"
)

// servedMetadata is the response metadata of sv: the fallback model, the cache
// result and the caller's rate-limit state; asked is the model requested.
func servedMetadata(sv *infer.Served, asked string) metadata.MD {
	md := metadata.MD{}
	if sv.Model != "" && sv.Model != asked {
		md.Set(FallbackHeader, sv.Model)
	}
	switch sv.Cache {
	case infer.CacheHit:
		md.Set(CacheHeader, "hit")
	case infer.CacheMiss:
		md.Set(CacheHeader, "miss")
	}
	if q := sv.Quota; q != nil {
		for _, b := range []struct {
			name string
			b    infer.Bucket
		}{{"requests", q.Requests}, {"tokens", q.Tokens}} {
			if b.b.Limit == 0 {
				continue
			}
			md.Set("x-ratelimit-limit-"+b.name, strconv.FormatInt(b.b.Limit, 10))
			md.Set("x-ratelimit-remaining-"+b.name, strconv.FormatInt(b.b.Remaining, 10))
			md.Set("x-ratelimit-reset-"+b.name, b.b.Reset.Round(time.Millisecond).String())
		}
	}
	return md
}

// served sends the served metadata of a unary call with its response, and records
// a fallback model in the access record.
func served(ctx context.Context, sv *infer.Served, asked string) {
	if sv.Model != "" && sv.Model != asked {
		callOf(ctx).setModel(sv.Model)
	}
	if md := servedMetadata(sv, asked); md.Len() > 0 {
		_ = gogrpc.SetHeader(ctx, md) // fails only once the header was sent
	}
}
