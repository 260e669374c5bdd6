package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/sched"
)

// Request decoding: JSON into the wire types of types.go, then validation into the
// core's request types. Every problem is an *infer.Error (InvalidArgument) naming the
// field; nothing here calls the engine.

// Limits of request content, besides those of the scheduler.
const (
	maxMessages    = 4096
	maxPrompts     = 16
	maxEmbedInputs = 2048
	maxTopLogprobs = sched.MaxTopLogprobs
	// maxLegacyLogprobs bounds the integer logprobs of /v1/completions.
	maxLegacyLogprobs = sched.MaxTopLogprobs
	maxTools          = 128
)

// Limits are the server-configured bounds decoding applies.
type Limits struct {
	// MaxN is the largest n (default 4, at most infer.MaxChoices).
	MaxN int
}

func (l Limits) maxN() int {
	if l.MaxN <= 0 {
		return 4
	}
	return min(l.MaxN, infer.MaxChoices)
}

// ChatInput is a decoded chat request: the core's request and what only the wire format
// needs.
type ChatInput struct {
	infer.ChatRequest
	// IncludeUsage is stream_options.include_usage.
	IncludeUsage bool
}

// CompletionInput is a decoded completion request.
type CompletionInput struct {
	infer.CompletionRequest
	IncludeUsage bool
}

// EmbeddingsInput is a decoded embeddings request.
type EmbeddingsInput struct {
	infer.EmbedRequest
	// Base64 is encoding_format "base64".
	Base64 bool
}

// decoded counts the request bodies unmarshal has decoded (see Decoded).
var decoded atomic.Int64

// Decoded is for tests: request bodies decoded since start. Every decoder of this
// package (DecodeChat, DecodeCompletion, DecodeEmbeddings, DecodeTokenize,
// DecodeDetokenize, Unmarshal) counts one per call; PeekModel does not.
func Decoded() int64 { return decoded.Load() }

// unmarshal decodes a JSON object body into v.
func unmarshal(body []byte, v any) error {
	decoded.Add(1)
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return infer.Invalid("", "request body is empty; send a JSON object")
	}
	if trimmed[0] != '{' {
		return infer.Invalid("", "request body must be a JSON object")
	}
	if err := json.Unmarshal(trimmed, v); err != nil {
		return jsonError(err, "")
	}
	return nil
}

// Unmarshal decodes a JSON object body into v (for bodies outside the inference API,
// such as the admin API's), with the same errors as the request decoders.
func Unmarshal(body []byte, v any) error { return unmarshal(body, v) }

// jsonError turns encoding/json's errors into InvalidArgument errors naming the field.
func jsonError(err error, param string) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return infer.Invalid("", "request body is not valid JSON: %v (at byte %d)", se, se.Offset)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = param
		}
		return infer.Invalid(field, "%s: expected %s, got a JSON %s", orBody(field), te.Type.String(), te.Value)
	}
	return infer.Invalid(param, "request body: %v", err)
}

func orBody(field string) string {
	if field == "" {
		return "request body"
	}
	return field
}

// DecodeChat decodes and validates a chat completion request.
func DecodeChat(body []byte, lim Limits) (*ChatInput, error) {
	var r ChatRequest
	if err := unmarshal(body, &r); err != nil {
		return nil, err
	}
	return ValidateChat(&r, lim)
}

// ValidateChat validates a chat completion request that another wire format (gRPC)
// has mapped to this one, with exactly the rules of DecodeChat.
func ValidateChat(r *ChatRequest, lim Limits) (*ChatInput, error) {
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"functions", r.Functions}, {"logit_bias", r.LogitBias}, {"audio", r.Audio}} {
		if !EmptyJSON(f.raw) {
			return nil, infer.Invalid(f.name, "%s is not supported by this server", f.name)
		}
	}
	if r.MaxTokens != nil && r.MaxCompletionTokens != nil && *r.MaxTokens != *r.MaxCompletionTokens {
		return nil, infer.Invalid("max_completion_tokens", "max_tokens (%d) and max_completion_tokens (%d) disagree; send one of them", *r.MaxTokens, *r.MaxCompletionTokens)
	}
	maxTok, maxName := r.MaxTokens, "max_tokens"
	if r.MaxCompletionTokens != nil {
		maxTok, maxName = r.MaxCompletionTokens, "max_completion_tokens"
	}
	g, includeUsage, err := decodeGen(genInput{
		stream: r.Stream, streamOptions: r.StreamOptions, maxTokens: maxTok, maxTokensName: maxName,
		temperature: r.Temperature, topP: r.TopP, topK: r.TopK, n: r.N, stop: r.Stop, seed: r.Seed,
		presence: r.PresencePenalty, frequency: r.FrequencyPenalty, responseFormat: r.ResponseFormat, priority: r.Priority,
	}, lim)
	if err != nil {
		return nil, err
	}
	if r.TopLogprobs != nil {
		if *r.TopLogprobs < 0 || *r.TopLogprobs > maxTopLogprobs {
			return nil, infer.Invalid("top_logprobs", "top_logprobs must be 0..%d, got %d", maxTopLogprobs, *r.TopLogprobs)
		}
		if r.Logprobs == nil || !*r.Logprobs {
			return nil, infer.Invalid("top_logprobs", "top_logprobs needs logprobs: true")
		}
		g.TopLogprobs = *r.TopLogprobs
	}
	g.Logprobs = r.Logprobs != nil && *r.Logprobs
	if err := infer.CheckModelID(r.Model); err != nil {
		return nil, err
	}
	msgs, err := decodeMessages(r.Messages)
	if err != nil {
		return nil, err
	}
	tools, err := decodeTools(r.Tools)
	if err != nil {
		return nil, err
	}
	choice, err := decodeToolChoice(r.ToolChoice, tools)
	if err != nil {
		return nil, err
	}
	vars, err := decodeTemplateVars(r.ChatTemplateKwargs)
	if err != nil {
		return nil, err
	}
	return &ChatInput{ChatRequest: infer.ChatRequest{Model: r.Model, Messages: msgs, Tools: tools, ToolChoice: choice,
		ParallelToolCalls: r.ParallelToolCalls == nil || *r.ParallelToolCalls, TemplateVars: vars, GenParams: *g},
		IncludeUsage: includeUsage}, nil
}

// decodeTemplateVars validates chat_template_kwargs: an object whose keys are
// identifiers other than the variables the server sets.
func decodeTemplateVars(raw json.RawMessage) (chat.Vars, error) {
	const param = "chat_template_kwargs"
	vars, err := chat.ParseVars(raw)
	var ve *chat.VarError
	switch {
	case err == nil:
		return vars, nil
	case errors.As(err, &ve):
		return nil, infer.Invalid(param+"."+ve.Name, "%s.%s", param, err)
	}
	return nil, infer.Invalid(param, "%s %v", param, err)
}

// decodeMessages validates chat messages; "developer" is treated as "system".
func decodeMessages(in []ChatMessageIn) ([]chat.Message, error) {
	if len(in) == 0 {
		return nil, infer.Invalid("messages", "messages must be a non-empty array")
	}
	if len(in) > maxMessages {
		return nil, infer.Invalid("messages", "too many messages: %d (at most %d)", len(in), maxMessages)
	}
	out := make([]chat.Message, len(in))
	for i, m := range in {
		p := fmt.Sprintf("messages[%d]", i)
		role := m.Role
		switch role {
		case chat.RoleSystem, chat.RoleUser, chat.RoleAssistant, chat.RoleTool:
		case "developer":
			role = chat.RoleSystem
		case "":
			return nil, infer.Invalid(p+".role", "%s.role is missing (system, developer, user, assistant or tool)", p)
		case "function":
			return nil, infer.Invalid(p+".role", "%s.role %q is not supported (use tools and role \"tool\")", p, m.Role)
		default:
			return nil, infer.Invalid(p+".role", "%s.role %q is not one of system, developer, user, assistant, tool", p, m.Role)
		}
		content, err := decodeContent(m.Content, p+".content")
		if err != nil {
			return nil, err
		}
		msg := chat.Message{Role: role, Content: content, Name: m.Name, Reasoning: m.ReasoningContent}
		if len(m.ToolCalls) > 0 && role != chat.RoleAssistant {
			return nil, infer.Invalid(p+".tool_calls", "%s.tool_calls is only allowed on assistant messages", p)
		}
		for j, tc := range m.ToolCalls {
			tp := fmt.Sprintf("%s.tool_calls[%d]", p, j)
			if tc.Type != "" && tc.Type != "function" {
				return nil, infer.Invalid(tp+".type", "%s.type %q is not supported (only \"function\")", tp, tc.Type)
			}
			if tc.Function.Name == "" {
				return nil, infer.Invalid(tp+".function.name", "%s.function.name is missing", tp)
			}
			msg.ToolCalls = append(msg.ToolCalls, chat.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
		}
		if role == chat.RoleTool {
			if m.ToolCallID == "" {
				return nil, infer.Invalid(p+".tool_call_id", "%s.tool_call_id is required on tool messages", p)
			}
			msg.ToolCallID = m.ToolCallID
		}
		out[i] = msg
	}
	return out, nil
}

// decodeContent accepts a string, null (empty) or an array of text parts.
func decodeContent(raw json.RawMessage, param string) (string, error) {
	if EmptyJSON(raw) {
		return "", nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", infer.Invalid(param, "%s: %v", param, err)
		}
		return checkText(s, param)
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", infer.Invalid(param, "%s must be a string or an array of {\"type\":\"text\",\"text\":...} parts", param)
	}
	var b bytes.Buffer
	for j, part := range parts {
		pp := fmt.Sprintf("%s[%d]", param, j)
		if part.Type != "text" {
			return "", infer.Invalid(pp+".type", "%s.type %q is not supported (only text parts)", pp, part.Type)
		}
		if part.Text == nil {
			return "", infer.Invalid(pp+".text", "%s.text is missing", pp)
		}
		if j > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(*part.Text)
	}
	return checkText(b.String(), param)
}

// checkText returns s unless the engine cannot take it (infer.CheckText).
func checkText(s, param string) (string, error) {
	if err := infer.CheckText(s, param); err != nil {
		return "", err
	}
	return s, nil
}

// decodeTools validates tools: function tools with unique, well-formed names and
// object parameter schemas.
func decodeTools(in []Tool) ([]chat.Tool, error) {
	if len(in) > maxTools {
		return nil, infer.Invalid("tools", "tools has %d entries; at most %d", len(in), maxTools)
	}
	out := make([]chat.Tool, 0, len(in))
	seen := map[string]bool{}
	for i, t := range in {
		p := fmt.Sprintf("tools[%d]", i)
		if t.Type != "function" {
			return nil, infer.Invalid(p+".type", "%s.type %q is not supported (only \"function\")", p, t.Type)
		}
		name := t.Function.Name
		if !validToolName(name) {
			return nil, infer.Invalid(p+".function.name", "%s.function.name %q must be 1..64 characters of a-z, A-Z, 0-9, _ and -", p, name)
		}
		if seen[name] {
			return nil, infer.Invalid(p+".function.name", "%s.function.name %q is used by two tools", p, name)
		}
		seen[name] = true
		params := t.Function.Parameters
		if EmptyJSON(params) {
			params = nil
		} else if b := bytes.TrimSpace(params); b[0] != '{' {
			return nil, infer.Invalid(p+".function.parameters", "%s.function.parameters must be a JSON Schema object", p)
		}
		out = append(out, chat.Tool{Name: name, Description: t.Function.Description, Parameters: params,
			Strict: t.Function.Strict != nil && *t.Function.Strict})
	}
	return out, nil
}

func validToolName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// decodeToolChoice accepts "none", "auto", "required" or
// {"type":"function","function":{"name"}} naming one of tools.
func decodeToolChoice(raw json.RawMessage, tools []chat.Tool) (chat.ToolChoice, error) {
	if EmptyJSON(raw) {
		return chat.ToolChoice{Mode: chat.ToolAuto}, nil
	}
	var s string
	if raw[0] == '"' {
		_ = json.Unmarshal(raw, &s)
		switch s {
		case "auto":
			return chat.ToolChoice{Mode: chat.ToolAuto}, nil
		case "none":
			return chat.ToolChoice{Mode: chat.ToolNone}, nil
		case "required":
			if len(tools) == 0 {
				return chat.ToolChoice{}, infer.Invalid("tool_choice", "tool_choice \"required\" needs tools")
			}
			return chat.ToolChoice{Mode: chat.ToolRequired}, nil
		}
		return chat.ToolChoice{}, infer.Invalid("tool_choice", "tool_choice %q is not one of none, auto, required, or a function object", s)
	}
	var o struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &o); err != nil || o.Type != "function" {
		return chat.ToolChoice{}, infer.Invalid("tool_choice", "tool_choice must be \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}")
	}
	for _, t := range tools {
		if t.Name == o.Function.Name {
			return chat.ToolChoice{Mode: chat.ToolFunction, Name: o.Function.Name}, nil
		}
	}
	return chat.ToolChoice{}, infer.Invalid("tool_choice.function.name", "tool_choice names %q, which is not among tools", o.Function.Name)
}

// DecodeCompletion decodes and validates a completion request.
func DecodeCompletion(body []byte, lim Limits) (*CompletionInput, error) {
	var r CompletionRequest
	if err := unmarshal(body, &r); err != nil {
		return nil, err
	}
	return ValidateCompletion(&r, lim)
}

// ValidateCompletion validates a mapped completion request as DecodeCompletion does.
func ValidateCompletion(r *CompletionRequest, lim Limits) (*CompletionInput, error) {
	switch {
	case r.Echo:
		return nil, infer.Invalid("echo", "echo is not supported by this server")
	case r.Suffix != nil && *r.Suffix != "":
		return nil, infer.Invalid("suffix", "suffix is not supported by this server")
	case r.BestOf != nil && *r.BestOf > 1:
		return nil, infer.Invalid("best_of", "best_of > 1 is not supported by this server")
	case !EmptyJSON(r.LogitBias):
		return nil, infer.Invalid("logit_bias", "logit_bias is not supported by this server")
	}
	g, includeUsage, err := decodeGen(genInput{
		stream: r.Stream, streamOptions: r.StreamOptions, maxTokens: r.MaxTokens, maxTokensName: "max_tokens",
		temperature: r.Temperature, topP: r.TopP, topK: r.TopK, n: r.N, stop: r.Stop, seed: r.Seed,
		presence: r.PresencePenalty, frequency: r.FrequencyPenalty, responseFormat: r.ResponseFormat, priority: r.Priority,
	}, lim)
	if err != nil {
		return nil, err
	}
	if r.Logprobs != nil {
		if *r.Logprobs < 0 || *r.Logprobs > maxLegacyLogprobs {
			return nil, infer.Invalid("logprobs", "logprobs must be 0..%d, got %d", maxLegacyLogprobs, *r.Logprobs)
		}
		g.Logprobs, g.TopLogprobs = true, *r.Logprobs
	}
	if err := infer.CheckModelID(r.Model); err != nil {
		return nil, err
	}
	prompts, err := decodePrompts(r.Prompt, "prompt", maxPrompts)
	if err != nil {
		return nil, err
	}
	if len(prompts)*g.N > infer.MaxChoices {
		return nil, infer.Invalid("n", "%d prompts x n=%d = %d choices; at most %d per request", len(prompts), g.N, len(prompts)*g.N, infer.MaxChoices)
	}
	return &CompletionInput{CompletionRequest: infer.CompletionRequest{Model: r.Model, Prompts: prompts, GenParams: *g},
		IncludeUsage: includeUsage}, nil
}

// decodePrompts accepts a string, an array of strings, an array of token ids, or an
// array of arrays of token ids.
func decodePrompts(raw json.RawMessage, param string, maxN int) ([]infer.Prompt, error) {
	if EmptyJSON(raw) {
		return nil, infer.Invalid(param, "%s is required", param)
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, infer.Invalid(param, "%s: %v", param, err)
		}
		if _, err := checkText(s, param); err != nil {
			return nil, err
		}
		return []infer.Prompt{{Text: s}}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, infer.Invalid(param, "%s must be a string, an array of strings, or an array of token ids", param)
	}
	if len(items) == 0 {
		return nil, infer.Invalid(param, "%s must not be an empty array", param)
	}
	// An array of numbers is one tokenized prompt.
	if t := bytes.TrimSpace(items[0]); len(t) > 0 && (t[0] == '-' || t[0] >= '0' && t[0] <= '9') {
		toks, err := decodeTokens(raw, param)
		if err != nil {
			return nil, err
		}
		return []infer.Prompt{{Tokens: toks, IsTokens: true}}, nil
	}
	if len(items) > maxN {
		return nil, infer.Invalid(param, "%s has %d entries; at most %d", param, len(items), maxN)
	}
	out := make([]infer.Prompt, len(items))
	for i, it := range items {
		p := fmt.Sprintf("%s[%d]", param, i)
		it = bytes.TrimSpace(it)
		switch {
		case len(it) > 0 && it[0] == '"':
			if err := json.Unmarshal(it, &s); err != nil {
				return nil, infer.Invalid(p, "%s: %v", p, err)
			}
			if _, err := checkText(s, p); err != nil {
				return nil, err
			}
			out[i] = infer.Prompt{Text: s}
		case len(it) > 0 && it[0] == '[':
			toks, err := decodeTokens(it, p)
			if err != nil {
				return nil, err
			}
			out[i] = infer.Prompt{Tokens: toks, IsTokens: true}
		default:
			return nil, infer.Invalid(p, "%s must be a string or an array of token ids", p)
		}
	}
	return out, nil
}

// decodeTokens decodes an array of token ids (range-checked against int32; the
// vocabulary is checked by the engine before use).
func decodeTokens(raw json.RawMessage, param string) ([]engine.Token, error) {
	var ids []int64
	if err := json.Unmarshal(raw, &ids); err != nil {
		return nil, infer.Invalid(param, "%s must be an array of integer token ids", param)
	}
	return toTokens(ids, param)
}

func toTokens(ids []int64, param string) ([]engine.Token, error) {
	toks := make([]engine.Token, len(ids))
	for i, id := range ids {
		if id < 0 || id > math.MaxInt32 {
			return nil, infer.Invalid(fmt.Sprintf("%s[%d]", param, i), "token id %d is out of range", id)
		}
		toks[i] = engine.Token(id)
	}
	return toks, nil
}

// genInput is what chat and completion requests share, before validation.
type genInput struct {
	stream              bool
	streamOptions       *StreamOptions
	maxTokens           *int
	maxTokensName       string
	temperature, topP   *float64
	topK                *int
	n                   *int
	stop                json.RawMessage
	seed                *int64
	presence, frequency *float64
	responseFormat      *ResponseFormat
	priority            string
}

// decodeGen validates the shared generation fields. Defaults follow OpenAI:
// temperature 1, top_p 1, n 1, no stop, a random seed.
func decodeGen(in genInput, lim Limits) (*infer.GenParams, bool, error) {
	g := &infer.GenParams{Stream: in.stream, N: 1}
	switch in.priority {
	case "", "interactive":
	case "batch":
		g.Batch = true
	default:
		return nil, false, infer.Invalid("priority", "priority %q is not one of interactive, batch", in.priority)
	}
	includeUsage := false
	if in.streamOptions != nil {
		if !in.stream {
			return nil, false, infer.Invalid("stream_options", "stream_options is only allowed with stream: true")
		}
		includeUsage = in.streamOptions.IncludeUsage
	}
	if in.maxTokens != nil {
		if *in.maxTokens < 1 {
			return nil, false, infer.Invalid(in.maxTokensName, "%s must be at least 1, got %d", in.maxTokensName, *in.maxTokens)
		}
		g.MaxTokens = *in.maxTokens
	}
	if in.n != nil {
		maxN := lim.maxN()
		if *in.n < 1 || *in.n > maxN {
			return nil, false, infer.Invalid("n", "n must be 1..%d, got %d", maxN, *in.n)
		}
		g.N = *in.n
	}
	temp, topP := 1.0, 1.0
	if in.temperature != nil {
		temp = *in.temperature
		if !(temp >= 0 && temp <= 2) {
			return nil, false, infer.Invalid("temperature", "temperature must be 0..2, got %v", temp)
		}
	}
	if in.topP != nil {
		topP = *in.topP
		if !(topP >= 0 && topP <= 1) {
			return nil, false, infer.Invalid("top_p", "top_p must be 0..1, got %v", topP)
		}
	}
	if in.topK != nil {
		if *in.topK < 0 {
			return nil, false, infer.Invalid("top_k", "top_k must be at least 0 (0: off), got %d", *in.topK)
		}
		g.Sampling.TopK = *in.topK
	}
	if topP == 0 { // the smallest nucleus holds only the most likely token
		temp = 0
	}
	g.Sampling.Temperature = float32(temp)
	if topP < 1 {
		g.Sampling.TopP = float32(topP)
	}
	for _, p := range []struct {
		name string
		v    *float64
		dst  *float32
	}{{"presence_penalty", in.presence, &g.Sampling.PresencePenalty}, {"frequency_penalty", in.frequency, &g.Sampling.FrequencyPenalty}} {
		if p.v != nil {
			if !(*p.v >= -2 && *p.v <= 2) {
				return nil, false, infer.Invalid(p.name, "%s must be -2..2, got %v", p.name, *p.v)
			}
			*p.dst = float32(*p.v)
		}
	}
	if in.seed != nil {
		g.Sampling.Seed = uint32(*in.seed) // the low 32 bits: llama.cpp's seed width
		g.SeedFixed = true
	} else {
		g.Sampling.Seed = rand.Uint32()
	}
	stop, err := decodeStop(in.stop)
	if err != nil {
		return nil, false, err
	}
	g.Stop = stop
	if rf := in.responseFormat; rf != nil {
		switch rf.Type {
		case "", "text":
		case "json_object":
			g.Format.Type = infer.FormatJSONObject
		case "json_schema":
			if rf.JSONSchema == nil || EmptyJSON(rf.JSONSchema.Schema) {
				return nil, false, infer.Invalid("response_format.json_schema", "response_format.json_schema with a schema is required for type json_schema")
			}
			g.Format = infer.Format{Type: infer.FormatJSONSchema, Name: rf.JSONSchema.Name, Schema: rf.JSONSchema.Schema,
				Strict: rf.JSONSchema.Strict != nil && *rf.JSONSchema.Strict}
		default:
			return nil, false, infer.Invalid("response_format.type", "response_format.type %q is not supported; use \"text\", \"json_object\" or \"json_schema\"", rf.Type)
		}
	}
	return g, includeUsage, nil
}

// decodeStop accepts null, a string or an array of strings.
func decodeStop(raw json.RawMessage) ([]string, error) {
	if EmptyJSON(raw) {
		return nil, nil
	}
	var list []string
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, infer.Invalid("stop", "stop: %v", err)
		}
		list = []string{s}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil, infer.Invalid("stop", "stop must be a string or an array of strings")
	}
	if len(list) > sched.MaxStopStrings {
		return nil, infer.Invalid("stop", "stop has %d strings; at most %d", len(list), sched.MaxStopStrings)
	}
	for i, s := range list {
		if s == "" || len(s) > sched.MaxStopLen {
			return nil, infer.Invalid(fmt.Sprintf("stop[%d]", i), "stop strings must be 1..%d bytes, stop[%d] has %d", sched.MaxStopLen, i, len(s))
		}
	}
	return list, nil
}

// EmptyJSON reports whether a raw field is absent or null (for every JSON wire format).
func EmptyJSON(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// DecodeEmbeddings decodes and validates an embeddings request.
func DecodeEmbeddings(body []byte) (*EmbeddingsInput, error) {
	var r EmbeddingRequest
	if err := unmarshal(body, &r); err != nil {
		return nil, err
	}
	return ValidateEmbeddings(&r)
}

// ValidateEmbeddings validates a mapped embeddings request as DecodeEmbeddings does.
func ValidateEmbeddings(r *EmbeddingRequest) (*EmbeddingsInput, error) {
	if err := infer.CheckModelID(r.Model); err != nil {
		return nil, err
	}
	p := &EmbeddingsInput{EmbedRequest: infer.EmbedRequest{Model: r.Model}}
	switch r.EncodingFormat {
	case "", "float":
	case "base64":
		p.Base64 = true
	default:
		return nil, infer.Invalid("encoding_format", "encoding_format %q is not one of float, base64", r.EncodingFormat)
	}
	if r.Dimensions != nil {
		if *r.Dimensions < 1 {
			return nil, infer.Invalid("dimensions", "dimensions must be at least 1, got %d", *r.Dimensions)
		}
		p.Dimensions = *r.Dimensions
	}
	inputs, err := decodePrompts(r.Input, "input", maxEmbedInputs)
	if err != nil {
		return nil, err
	}
	for i, in := range inputs {
		if !in.IsTokens && in.Text == "" || in.IsTokens && len(in.Tokens) == 0 {
			return nil, infer.Invalid(fmt.Sprintf("input[%d]", i), "input[%d] is empty", i)
		}
	}
	p.Inputs = inputs
	return p, nil
}

// DecodeTokenize decodes and validates a /tokenize request.
func DecodeTokenize(body []byte) (*infer.TokenizeRequest, error) {
	var r TokenizeRequest
	if err := unmarshal(body, &r); err != nil {
		return nil, err
	}
	return ValidateTokenize(&r)
}

// ValidateTokenize validates a mapped /tokenize request as DecodeTokenize does.
func ValidateTokenize(r *TokenizeRequest) (*infer.TokenizeRequest, error) {
	if err := infer.CheckModelID(r.Model); err != nil {
		return nil, err
	}
	out := &infer.TokenizeRequest{Model: r.Model, AddSpecial: r.AddSpecialTokens == nil || *r.AddSpecialTokens}
	switch {
	case r.Prompt != nil && r.Messages != nil:
		return nil, infer.Invalid("messages", "send prompt or messages, not both")
	case r.Prompt != nil:
		if _, err := checkText(*r.Prompt, "prompt"); err != nil {
			return nil, err
		}
		out.Prompt = *r.Prompt
		return out, nil
	case r.Messages != nil:
		msgs, err := decodeMessages(r.Messages)
		if err != nil {
			return nil, err
		}
		out.Messages = msgs
		return out, nil
	}
	return nil, infer.Invalid("prompt", "prompt (a string) or messages (chat messages) is required")
}

// DecodeDetokenize decodes and validates a /detokenize request.
func DecodeDetokenize(body []byte) (*infer.DetokenizeRequest, error) {
	var r DetokenizeRequest
	if err := unmarshal(body, &r); err != nil {
		return nil, err
	}
	return ValidateDetokenize(&r)
}

// ValidateDetokenize validates a mapped /detokenize request as DecodeDetokenize does.
func ValidateDetokenize(r *DetokenizeRequest) (*infer.DetokenizeRequest, error) {
	if err := infer.CheckModelID(r.Model); err != nil {
		return nil, err
	}
	if r.Tokens == nil {
		return nil, infer.Invalid("tokens", "tokens (an array of token ids) is required")
	}
	toks, err := toTokens(r.Tokens, "tokens")
	if err != nil {
		return nil, err
	}
	return &infer.DetokenizeRequest{Model: r.Model, Tokens: toks}, nil
}

// PeekModel returns the "model" field of a JSON body without validating anything
// else. Only requests refused before their handler ran (no key) are peeked, so that
// metrics can count them per model; served requests are decoded once.
func PeekModel(body []byte) string {
	var m struct {
		Model string `json:"model"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	return m.Model
}
