package grpc

import (
	"encoding/json"
	"fmt"

	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/transport/grpc/hxpv1"
)

// Request mapping: a proto request is mapped field by field to the OpenAI wire
// request of the same name and validated by package openai (openai.Validate*), so the
// gRPC and REST APIs accept exactly the same requests and blame the same field names.
// What is checked here is only what the proto form adds: JSON text in string fields.

// chatRequest maps and validates a chat request.
func chatRequest(r *hxpv1.ChatRequest, stream bool, lim openai.Limits) (*infer.ChatRequest, error) {
	tools, err := toolsIn(r.GetTools())
	if err != nil {
		return nil, err
	}
	rf, err := formatIn(r.GetResponseFormat())
	if err != nil {
		return nil, err
	}
	w := &openai.ChatRequest{Model: r.GetModel(), Messages: messagesIn(r.GetMessages()), Stream: stream,
		MaxTokens: intPtr(r.MaxTokens), Temperature: r.Temperature, TopP: r.TopP, N: intPtr(r.N), Stop: stopIn(r.GetStop()),
		Seed: r.Seed, PresencePenalty: r.PresencePenalty, FrequencyPenalty: r.FrequencyPenalty, Logprobs: r.Logprobs,
		TopLogprobs: intPtr(r.TopLogprobs), User: r.GetUser(), ResponseFormat: rf, Tools: tools,
		ToolChoice: toolChoiceIn(r.GetToolChoice()), ParallelToolCalls: r.ParallelToolCalls, Priority: r.GetPriority()}
	in, err := openai.ValidateChat(w, lim)
	if err != nil {
		return nil, err
	}
	return &in.ChatRequest, nil
}

// completeRequest maps and validates a completion request.
func completeRequest(r *hxpv1.CompleteRequest, stream bool, lim openai.Limits) (*infer.CompletionRequest, error) {
	rf, err := formatIn(r.GetResponseFormat())
	if err != nil {
		return nil, err
	}
	w := &openai.CompletionRequest{Model: r.GetModel(), Prompt: promptsIn(r.GetPrompt()), Stream: stream,
		MaxTokens: intPtr(r.MaxTokens), Temperature: r.Temperature, TopP: r.TopP, N: intPtr(r.N), Stop: stopIn(r.GetStop()),
		Seed: r.Seed, PresencePenalty: r.PresencePenalty, FrequencyPenalty: r.FrequencyPenalty, Logprobs: intPtr(r.Logprobs),
		User: r.GetUser(), ResponseFormat: rf, Priority: r.GetPriority()}
	in, err := openai.ValidateCompletion(w, lim)
	if err != nil {
		return nil, err
	}
	return &in.CompletionRequest, nil
}

// embedRequest maps and validates an embeddings request.
func embedRequest(r *hxpv1.EmbedRequest) (*infer.EmbedRequest, error) {
	w := &openai.EmbeddingRequest{Model: r.GetModel(), Input: promptsIn(r.GetInput()), Dimensions: intPtr(r.Dimensions), User: r.GetUser()}
	in, err := openai.ValidateEmbeddings(w)
	if err != nil {
		return nil, err
	}
	return &in.EmbedRequest, nil
}

// tokenizeRequest maps and validates a tokenize request.
func tokenizeRequest(r *hxpv1.TokenizeRequest) (*infer.TokenizeRequest, error) {
	return openai.ValidateTokenize(&openai.TokenizeRequest{Model: r.GetModel(), Prompt: r.Prompt,
		Messages: messagesIn(r.GetMessages()), AddSpecialTokens: r.AddSpecialTokens})
}

// detokenizeRequest maps and validates a detokenize request. Proto has no absent
// list: no tokens is the empty text.
func detokenizeRequest(r *hxpv1.DetokenizeRequest) (*infer.DetokenizeRequest, error) {
	ids := make([]int64, len(r.GetTokens()))
	for i, t := range r.GetTokens() {
		ids[i] = int64(t)
	}
	return openai.ValidateDetokenize(&openai.DetokenizeRequest{Model: r.GetModel(), Tokens: ids})
}

// applyTemplateRequest maps and validates an apply-template request.
func applyTemplateRequest(r *hxpv1.ApplyTemplateRequest) (*infer.ApplyTemplateRequest, error) {
	tools, err := toolsIn(r.GetTools())
	if err != nil {
		return nil, err
	}
	return openai.ValidateApplyTemplate(&openai.ApplyTemplateRequest{Model: r.GetModel(), Messages: messagesIn(r.GetMessages()),
		Tools: tools, AddGenerationPrompt: r.AddGenerationPrompt})
}

func intPtr(p *int32) *int {
	if p == nil {
		return nil
	}
	v := int(*p)
	return &v
}

// jsonOf encodes v, which is always encodable (strings, slices and maps of them).
func jsonOf(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("grpc: encode %T: %v", v, err))
	}
	return b
}

// messagesIn maps messages; nil stays nil (no messages).
func messagesIn(msgs []*hxpv1.Message) []openai.ChatMessageIn {
	if len(msgs) == 0 {
		return nil
	}
	out := make([]openai.ChatMessageIn, len(msgs))
	for i, m := range msgs {
		w := openai.ChatMessageIn{Role: m.GetRole(), Content: jsonOf(m.GetContent()), Name: m.GetName(),
			ToolCallID: m.GetToolCallId(), ReasoningContent: m.GetReasoningContent()}
		for _, tc := range m.GetToolCalls() {
			w.ToolCalls = append(w.ToolCalls, openai.ToolCall{ID: tc.GetId(), Type: tc.GetType(),
				Function: openai.FunctionCall{Name: tc.GetFunction().GetName(), Arguments: tc.GetFunction().GetArguments()}})
		}
		out[i] = w
	}
	return out
}

// schemaIn is a JSON Schema sent as JSON text ("" for none), checked to be JSON.
func schemaIn(text, param string) (json.RawMessage, error) {
	if text == "" {
		return nil, nil
	}
	if !json.Valid([]byte(text)) {
		return nil, infer.Invalid(param, "%s is not valid JSON text (send the JSON Schema as a JSON string)", param)
	}
	return json.RawMessage(text), nil
}

func toolsIn(tools []*hxpv1.Tool) ([]openai.Tool, error) {
	var out []openai.Tool
	for i, t := range tools {
		params, err := schemaIn(t.GetFunction().GetParameters(), fmt.Sprintf("tools[%d].function.parameters", i))
		if err != nil {
			return nil, err
		}
		out = append(out, openai.Tool{Type: t.GetType(), Function: openai.FunctionSpec{Name: t.GetFunction().GetName(),
			Description: t.GetFunction().GetDescription(), Parameters: params, Strict: t.GetFunction().Strict}})
	}
	return out, nil
}

// toolChoiceIn renders tool_choice as REST receives it; unset is auto.
func toolChoiceIn(c *hxpv1.ToolChoice) json.RawMessage {
	switch v := c.GetChoice().(type) {
	case *hxpv1.ToolChoice_Mode:
		return jsonOf(v.Mode)
	case *hxpv1.ToolChoice_Function:
		return jsonOf(map[string]any{"type": "function", "function": map[string]string{"name": v.Function}})
	}
	return nil
}

func formatIn(f *hxpv1.ResponseFormat) (*openai.ResponseFormat, error) {
	if f == nil {
		return nil, nil
	}
	out := &openai.ResponseFormat{Type: f.GetType()}
	if js := f.GetJsonSchema(); js != nil {
		schema, err := schemaIn(js.GetSchema(), "response_format.json_schema.schema")
		if err != nil {
			return nil, err
		}
		out.JSONSchema = &openai.JSONSchema{Name: js.GetName(), Description: js.GetDescription(), Schema: schema, Strict: js.Strict}
	}
	return out, nil
}

func stopIn(stop []string) json.RawMessage {
	if len(stop) == 0 {
		return nil
	}
	return jsonOf(stop)
}

// promptsIn renders prompts as an array of strings and token arrays, which the REST
// decoder reads as that many prompts; none is absent.
func promptsIn(ps []*hxpv1.Prompt) json.RawMessage {
	if len(ps) == 0 {
		return nil
	}
	items := make([]any, len(ps))
	for i, p := range ps {
		switch v := p.GetPrompt().(type) {
		case *hxpv1.Prompt_Tokens:
			ids := v.Tokens.GetIds()
			if ids == nil {
				ids = []int32{}
			}
			items[i] = ids
		default:
			items[i] = p.GetText()
		}
	}
	return jsonOf(items)
}
