package openai

import (
	"encoding/json"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
)

// Request encoding: the core's validated requests back into wire requests, for a
// client of another node (route.Remote). Decoding what they return gives the same
// request again, except that the seed is always sent (the sender chose it), so the
// decoded request has SeedFixed set.

// ChatRequestOf renders a chat request. Stream is r.Stream; the caller sets
// StreamOptions when it streams.
func ChatRequestOf(r *infer.ChatRequest) *ChatRequest {
	out := &ChatRequest{Model: r.Model, Messages: MessagesOf(r.Messages), Stream: r.Stream}
	g := genFieldsOf(&r.GenParams)
	out.MaxTokens, out.Temperature, out.TopP, out.TopK, out.N, out.Stop, out.Seed = g.maxTokens, g.temperature, g.topP, g.topK, g.n, g.stop, g.seed
	out.PresencePenalty, out.FrequencyPenalty, out.ResponseFormat, out.Priority = g.presence, g.frequency, g.responseFormat, g.priority
	out.ParallelToolCalls = ptr(r.ParallelToolCalls)
	if r.Logprobs {
		out.Logprobs = ptr(true)
		out.TopLogprobs = ptr(r.TopLogprobs)
	}
	out.Tools = toolsOf(r.Tools)
	out.ToolChoice = toolChoiceOf(r.ToolChoice)
	out.ChatTemplateKwargs = templateVarsOf(r.TemplateVars)
	return out
}

// templateVarsOf renders template variables as chat_template_kwargs (nil for none).
func templateVarsOf(v chat.Vars) json.RawMessage {
	if len(v) == 0 {
		return nil
	}
	b, _ := json.Marshal(v) // decoded from JSON: always encodable
	return b
}

// toolsOf renders tools as a request's tools.
func toolsOf(tools []chat.Tool) []Tool {
	var out []Tool
	for _, t := range tools {
		ft := Tool{Type: "function", Function: FunctionSpec{Name: t.Name, Description: t.Description, Parameters: t.Parameters}}
		if t.Strict {
			ft.Function.Strict = ptr(true)
		}
		out = append(out, ft)
	}
	return out
}

// ApplyTemplateRequestOf renders an /apply-template request.
func ApplyTemplateRequestOf(r *infer.ApplyTemplateRequest) *ApplyTemplateRequest {
	return &ApplyTemplateRequest{Model: r.Model, Messages: MessagesOf(r.Messages), Tools: toolsOf(r.Tools),
		AddGenerationPrompt: ptr(r.AddGenerationPrompt), ChatTemplateKwargs: templateVarsOf(r.TemplateVars)}
}

// MessagesOf renders chat messages as a request's messages.
func MessagesOf(msgs []chat.Message) []ChatMessageIn {
	out := make([]ChatMessageIn, len(msgs))
	for i, m := range msgs {
		content, _ := json.Marshal(m.Content)
		w := ChatMessageIn{Role: m.Role, Content: content, Name: m.Name, ToolCallID: m.ToolCallID, ReasoningContent: m.Reasoning}
		for _, tc := range m.ToolCalls {
			w.ToolCalls = append(w.ToolCalls, ToolCall{ID: tc.ID, Type: "function", Function: FunctionCall{Name: tc.Name, Arguments: tc.Arguments}})
		}
		out[i] = w
	}
	return out
}

// toolChoiceOf renders tool_choice; auto, the default, is left out.
func toolChoiceOf(c chat.ToolChoice) json.RawMessage {
	var v any
	switch c.Mode {
	case chat.ToolNone:
		v = "none"
	case chat.ToolRequired:
		v = "required"
	case chat.ToolFunction:
		type name struct {
			Name string `json:"name"`
		}
		v = struct {
			Type     string `json:"type"`
			Function name   `json:"function"`
		}{"function", name{c.Name}}
	default:
		return nil
	}
	b, _ := json.Marshal(v)
	return b
}

// CompletionRequestOf renders a completion request. Stream is r.Stream; the caller
// sets StreamOptions when it streams.
func CompletionRequestOf(r *infer.CompletionRequest) *CompletionRequest {
	out := &CompletionRequest{Model: r.Model, Prompt: promptsOf(r.Prompts), Stream: r.Stream}
	g := genFieldsOf(&r.GenParams)
	out.MaxTokens, out.Temperature, out.TopP, out.TopK, out.N, out.Stop, out.Seed = g.maxTokens, g.temperature, g.topP, g.topK, g.n, g.stop, g.seed
	out.PresencePenalty, out.FrequencyPenalty, out.ResponseFormat, out.Priority = g.presence, g.frequency, g.responseFormat, g.priority
	if r.Logprobs {
		out.Logprobs = ptr(r.TopLogprobs)
	}
	return out
}

// EmbeddingRequestOf renders an embeddings request (vectors as floats).
func EmbeddingRequestOf(r *infer.EmbedRequest) *EmbeddingRequest {
	out := &EmbeddingRequest{Model: r.Model, Input: promptsOf(r.Inputs), EncodingFormat: "float"}
	if r.Dimensions > 0 {
		out.Dimensions = ptr(r.Dimensions)
	}
	return out
}

// TokenizeRequestOf renders a /tokenize request.
func TokenizeRequestOf(r *infer.TokenizeRequest) *TokenizeRequest {
	out := &TokenizeRequest{Model: r.Model, AddSpecialTokens: ptr(r.AddSpecial)}
	if r.Messages != nil {
		out.Messages = MessagesOf(r.Messages)
	} else {
		out.Prompt = ptr(r.Prompt)
	}
	return out
}

// DetokenizeRequestOf renders a /detokenize request.
func DetokenizeRequestOf(r *infer.DetokenizeRequest) *DetokenizeRequest {
	return &DetokenizeRequest{Model: r.Model, Tokens: tokenIDs(r.Tokens)}
}

// promptsOf renders prompts as the decoder reads them back: one text prompt as a
// string, one token prompt as an array of ids, several as an array of both.
func promptsOf(ps []infer.Prompt) json.RawMessage {
	one := func(p infer.Prompt) any {
		if p.IsTokens {
			return tokenIDs(p.Tokens)
		}
		return p.Text
	}
	var v any
	if len(ps) == 1 {
		v = one(ps[0])
	} else {
		items := make([]any, len(ps))
		for i, p := range ps {
			items[i] = one(p)
		}
		v = items
	}
	b, _ := json.Marshal(v)
	return b
}

func tokenIDs(toks []engine.Token) []int64 {
	ids := make([]int64, len(toks))
	for i, t := range toks {
		ids[i] = int64(t)
	}
	return ids
}

// genFields are the wire fields of the generation settings chat and completions share.
type genFields struct {
	maxTokens, n, topK  *int
	temperature, topP   *float64
	presence, frequency *float64
	stop                json.RawMessage
	seed                *int64
	responseFormat      *ResponseFormat
	priority            string
}

// genFieldsOf renders the shared generation settings. The seed is always sent: the
// receiving node must sample as the sender would have.
func genFieldsOf(g *infer.GenParams) genFields {
	f := genFields{n: ptr(max(g.N, 1)), temperature: ptr(float64(g.Sampling.Temperature)), seed: ptr(int64(g.Sampling.Seed))}
	if g.MaxTokens > 0 {
		f.maxTokens = ptr(g.MaxTokens)
	}
	if tp := g.Sampling.TopP; tp > 0 && tp < 1 {
		f.topP = ptr(float64(tp))
	}
	if k := g.Sampling.TopK; k > 0 {
		f.topK = ptr(k)
	}
	if p := g.Sampling.PresencePenalty; p != 0 {
		f.presence = ptr(float64(p))
	}
	if p := g.Sampling.FrequencyPenalty; p != 0 {
		f.frequency = ptr(float64(p))
	}
	if g.Batch {
		f.priority = "batch"
	}
	if len(g.Stop) > 0 {
		f.stop, _ = json.Marshal(g.Stop)
	}
	switch g.Format.Type {
	case infer.FormatJSONObject:
		f.responseFormat = &ResponseFormat{Type: "json_object"}
	case infer.FormatJSONSchema:
		s := &JSONSchema{Name: g.Format.Name, Schema: g.Format.Schema}
		if g.Format.Strict {
			s.Strict = ptr(true)
		}
		f.responseFormat = &ResponseFormat{Type: "json_schema", JSONSchema: s}
	}
	return f
}

func ptr[T any](v T) *T { return &v }
