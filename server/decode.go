package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"unicode/utf8"

	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/sched"
)

// Request decoding: JSON into the wire types of schema.go, then validation into the
// plain values the handlers use. Every problem is an *APIError (400) naming the field;
// nothing here calls the engine.

// Limits of request content, besides those of the scheduler.
const (
	maxMessages    = 4096
	maxPrompts     = 16
	maxEmbedInputs = 2048
	maxTopLogprobs = sched.MaxTopLogprobs
	// maxLegacyLogprobs bounds the integer logprobs of /v1/completions.
	maxLegacyLogprobs = sched.MaxTopLogprobs
)

// limits are the server-configured bounds decoding applies.
type limits struct {
	MaxN int // largest n
}

// genParams are the generation settings shared by chat and completions.
type genParams struct {
	Model        string
	Stream       bool
	IncludeUsage bool
	MaxTokens    int // 0: until the sequence's context is full
	Sampling     engine.SamplingParams
	Stop         []string
	Logprobs     bool
	TopLogprobs  int
	N            int
}

// chatParams is a validated chat request.
type chatParams struct {
	genParams
	Messages []engine.ChatMessage
}

// prompt is one prompt of /v1/completions: text, or token ids when IsTokens.
type prompt struct {
	Text     string
	Tokens   []engine.Token
	IsTokens bool
}

// completionParams is a validated completion request.
type completionParams struct {
	genParams
	Prompts []prompt
}

// unmarshalBody decodes a JSON object body into v.
func unmarshalBody(body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return badRequest("", "request body is empty; send a JSON object")
	}
	if trimmed[0] != '{' {
		return badRequest("", "request body must be a JSON object")
	}
	if err := json.Unmarshal(trimmed, v); err != nil {
		return toAPIError(err, "")
	}
	return nil
}

// peekModel returns the "model" field of a JSON body (for routing), without
// validating anything else.
func peekModel(body []byte) (string, error) {
	var m struct {
		Model json.RawMessage `json:"model"`
	}
	if err := unmarshalBody(body, &m); err != nil {
		return "", err
	}
	if len(m.Model) == 0 || string(m.Model) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(m.Model, &s); err != nil {
		return "", badRequest("model", "model must be a string")
	}
	return s, nil
}

// decodeChat decodes and validates a chat completion request.
func decodeChat(body []byte, lim limits) (*chatParams, error) {
	var r ChatRequest
	if err := unmarshalBody(body, &r); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"tools", r.Tools}, {"functions", r.Functions}, {"logit_bias", r.LogitBias}, {"audio", r.Audio}} {
		if !emptyJSON(f.raw) {
			return nil, badRequest(f.name, "%s is not supported by this server", f.name)
		}
	}
	if r.MaxTokens != nil && r.MaxCompletionTokens != nil && *r.MaxTokens != *r.MaxCompletionTokens {
		return nil, badRequest("max_completion_tokens", "max_tokens (%d) and max_completion_tokens (%d) disagree; send one of them", *r.MaxTokens, *r.MaxCompletionTokens)
	}
	maxTok, maxName := r.MaxTokens, "max_tokens"
	if r.MaxCompletionTokens != nil {
		maxTok, maxName = r.MaxCompletionTokens, "max_completion_tokens"
	}
	g, err := decodeGen(genInput{
		model: r.Model, stream: r.Stream, streamOptions: r.StreamOptions, maxTokens: maxTok, maxTokensName: maxName,
		temperature: r.Temperature, topP: r.TopP, n: r.N, stop: r.Stop, seed: r.Seed,
		presence: r.PresencePenalty, frequency: r.FrequencyPenalty, responseFormat: r.ResponseFormat,
	}, lim)
	if err != nil {
		return nil, err
	}
	if r.TopLogprobs != nil {
		if *r.TopLogprobs < 0 || *r.TopLogprobs > maxTopLogprobs {
			return nil, badRequest("top_logprobs", "top_logprobs must be 0..%d, got %d", maxTopLogprobs, *r.TopLogprobs)
		}
		if r.Logprobs == nil || !*r.Logprobs {
			return nil, badRequest("top_logprobs", "top_logprobs needs logprobs: true")
		}
		g.TopLogprobs = *r.TopLogprobs
	}
	g.Logprobs = r.Logprobs != nil && *r.Logprobs
	msgs, err := decodeMessages(r.Messages)
	if err != nil {
		return nil, err
	}
	return &chatParams{genParams: *g, Messages: msgs}, nil
}

// decodeMessages validates chat messages; "developer" is treated as "system".
func decodeMessages(in []ChatMessageIn) ([]engine.ChatMessage, error) {
	if len(in) == 0 {
		return nil, badRequest("messages", "messages must be a non-empty array")
	}
	if len(in) > maxMessages {
		return nil, badRequest("messages", "too many messages: %d (at most %d)", len(in), maxMessages)
	}
	out := make([]engine.ChatMessage, len(in))
	for i, m := range in {
		p := fmt.Sprintf("messages[%d]", i)
		role := m.Role
		switch role {
		case "system", "user", "assistant":
		case "developer":
			role = "system"
		case "":
			return nil, badRequest(p+".role", "%s.role is missing (system, developer, user or assistant)", p)
		case "tool", "function":
			return nil, badRequest(p+".role", "%s.role %q is not supported (this server has no tool calling)", p, m.Role)
		default:
			return nil, badRequest(p+".role", "%s.role %q is not one of system, developer, user, assistant", p, m.Role)
		}
		content, err := decodeContent(m.Content, p+".content")
		if err != nil {
			return nil, err
		}
		out[i] = engine.ChatMessage{Role: role, Content: content}
	}
	return out, nil
}

// decodeContent accepts a string, null (empty) or an array of text parts.
func decodeContent(raw json.RawMessage, param string) (string, error) {
	if emptyJSON(raw) {
		return "", nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", badRequest(param, "%s: %v", param, err)
		}
		return checkText(s, param)
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", badRequest(param, "%s must be a string or an array of {\"type\":\"text\",\"text\":...} parts", param)
	}
	var b bytes.Buffer
	for j, part := range parts {
		pp := fmt.Sprintf("%s[%d]", param, j)
		if part.Type != "text" {
			return "", badRequest(pp+".type", "%s.type %q is not supported (only text parts)", pp, part.Type)
		}
		if part.Text == nil {
			return "", badRequest(pp+".text", "%s.text is missing", pp)
		}
		if j > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(*part.Text)
	}
	return checkText(b.String(), param)
}

// checkText rejects text the engine cannot take (NUL bytes end C strings).
func checkText(s, param string) (string, error) {
	if bytes.IndexByte([]byte(s), 0) >= 0 {
		return "", badRequest(param, "%s contains a NUL character", param)
	}
	return s, nil
}

// decodeCompletion decodes and validates a completion request.
func decodeCompletion(body []byte, lim limits) (*completionParams, error) {
	var r CompletionRequest
	if err := unmarshalBody(body, &r); err != nil {
		return nil, err
	}
	switch {
	case r.Echo:
		return nil, badRequest("echo", "echo is not supported by this server")
	case r.Suffix != nil && *r.Suffix != "":
		return nil, badRequest("suffix", "suffix is not supported by this server")
	case r.BestOf != nil && *r.BestOf > 1:
		return nil, badRequest("best_of", "best_of > 1 is not supported by this server")
	case !emptyJSON(r.LogitBias):
		return nil, badRequest("logit_bias", "logit_bias is not supported by this server")
	}
	g, err := decodeGen(genInput{
		model: r.Model, stream: r.Stream, streamOptions: r.StreamOptions, maxTokens: r.MaxTokens, maxTokensName: "max_tokens",
		temperature: r.Temperature, topP: r.TopP, n: r.N, stop: r.Stop, seed: r.Seed,
		presence: r.PresencePenalty, frequency: r.FrequencyPenalty, responseFormat: r.ResponseFormat,
	}, lim)
	if err != nil {
		return nil, err
	}
	if r.Logprobs != nil {
		if *r.Logprobs < 0 || *r.Logprobs > maxLegacyLogprobs {
			return nil, badRequest("logprobs", "logprobs must be 0..%d, got %d", maxLegacyLogprobs, *r.Logprobs)
		}
		g.Logprobs, g.TopLogprobs = true, *r.Logprobs
	}
	prompts, err := decodePrompts(r.Prompt, "prompt", maxPrompts)
	if err != nil {
		return nil, err
	}
	if len(prompts)*g.N > MaxChoices {
		return nil, badRequest("n", "%d prompts x n=%d = %d choices; at most %d per request", len(prompts), g.N, len(prompts)*g.N, MaxChoices)
	}
	return &completionParams{genParams: *g, Prompts: prompts}, nil
}

// MaxChoices bounds the choices (prompts x n) of one request.
const MaxChoices = 16

// decodePrompts accepts a string, an array of strings, an array of token ids, or an
// array of arrays of token ids.
func decodePrompts(raw json.RawMessage, param string, maxN int) ([]prompt, error) {
	if emptyJSON(raw) {
		return nil, badRequest(param, "%s is required", param)
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, badRequest(param, "%s: %v", param, err)
		}
		if _, err := checkText(s, param); err != nil {
			return nil, err
		}
		return []prompt{{Text: s}}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, badRequest(param, "%s must be a string, an array of strings, or an array of token ids", param)
	}
	if len(items) == 0 {
		return nil, badRequest(param, "%s must not be an empty array", param)
	}
	// An array of numbers is one tokenized prompt.
	if t := bytes.TrimSpace(items[0]); len(t) > 0 && (t[0] == '-' || t[0] >= '0' && t[0] <= '9') {
		toks, err := decodeTokens(raw, param)
		if err != nil {
			return nil, err
		}
		return []prompt{{Tokens: toks, IsTokens: true}}, nil
	}
	if len(items) > maxN {
		return nil, badRequest(param, "%s has %d entries; at most %d", param, len(items), maxN)
	}
	out := make([]prompt, len(items))
	for i, it := range items {
		p := fmt.Sprintf("%s[%d]", param, i)
		it = bytes.TrimSpace(it)
		switch {
		case len(it) > 0 && it[0] == '"':
			if err := json.Unmarshal(it, &s); err != nil {
				return nil, badRequest(p, "%s: %v", p, err)
			}
			if _, err := checkText(s, p); err != nil {
				return nil, err
			}
			out[i] = prompt{Text: s}
		case len(it) > 0 && it[0] == '[':
			toks, err := decodeTokens(it, p)
			if err != nil {
				return nil, err
			}
			out[i] = prompt{Tokens: toks, IsTokens: true}
		default:
			return nil, badRequest(p, "%s must be a string or an array of token ids", p)
		}
	}
	return out, nil
}

// decodeTokens decodes an array of token ids (range-checked against int32; the
// vocabulary is checked by the engine before use).
func decodeTokens(raw json.RawMessage, param string) ([]engine.Token, error) {
	var ids []int64
	if err := json.Unmarshal(raw, &ids); err != nil {
		return nil, badRequest(param, "%s must be an array of integer token ids", param)
	}
	return toTokens(ids, param)
}

func toTokens(ids []int64, param string) ([]engine.Token, error) {
	toks := make([]engine.Token, len(ids))
	for i, id := range ids {
		if id < 0 || id > math.MaxInt32 {
			return nil, badRequest(fmt.Sprintf("%s[%d]", param, i), "token id %d is out of range", id)
		}
		toks[i] = engine.Token(id)
	}
	return toks, nil
}

// genInput is what chat and completion requests share, before validation.
type genInput struct {
	model               string
	stream              bool
	streamOptions       *StreamOptions
	maxTokens           *int
	maxTokensName       string
	temperature, topP   *float64
	n                   *int
	stop                json.RawMessage
	seed                *int64
	presence, frequency *float64
	responseFormat      *ResponseFormat
}

// decodeGen validates the shared generation fields. Defaults follow OpenAI:
// temperature 1, top_p 1, n 1, no stop, a random seed.
func decodeGen(in genInput, lim limits) (*genParams, error) {
	g := &genParams{Model: in.model, Stream: in.stream, N: 1}
	if !utf8.ValidString(in.model) || len(in.model) > 256 {
		return nil, badRequest("model", "model is not a valid model id")
	}
	if in.streamOptions != nil {
		if !in.stream {
			return nil, badRequest("stream_options", "stream_options is only allowed with stream: true")
		}
		g.IncludeUsage = in.streamOptions.IncludeUsage
	}
	if in.maxTokens != nil {
		if *in.maxTokens < 1 {
			return nil, badRequest(in.maxTokensName, "%s must be at least 1, got %d", in.maxTokensName, *in.maxTokens)
		}
		g.MaxTokens = *in.maxTokens
	}
	if in.n != nil {
		maxN := max(1, min(lim.MaxN, MaxChoices))
		if *in.n < 1 || *in.n > maxN {
			return nil, badRequest("n", "n must be 1..%d, got %d", maxN, *in.n)
		}
		g.N = *in.n
	}
	temp, topP := 1.0, 1.0
	if in.temperature != nil {
		temp = *in.temperature
		if !(temp >= 0 && temp <= 2) {
			return nil, badRequest("temperature", "temperature must be 0..2, got %v", temp)
		}
	}
	if in.topP != nil {
		topP = *in.topP
		if !(topP >= 0 && topP <= 1) {
			return nil, badRequest("top_p", "top_p must be 0..1, got %v", topP)
		}
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
				return nil, badRequest(p.name, "%s must be -2..2, got %v", p.name, *p.v)
			}
			*p.dst = float32(*p.v)
		}
	}
	if in.seed != nil {
		g.Sampling.Seed = uint32(*in.seed) // the low 32 bits: llama.cpp's seed width
	} else {
		g.Sampling.Seed = rand.Uint32()
	}
	stop, err := decodeStop(in.stop)
	if err != nil {
		return nil, err
	}
	g.Stop = stop
	if rf := in.responseFormat; rf != nil {
		switch rf.Type {
		case "", "text":
		case "json_object":
			g.Sampling.Grammar = JSONGrammar
		default:
			return nil, badRequest("response_format.type", "response_format.type %q is not supported; use \"text\" or \"json_object\"", rf.Type)
		}
	}
	return g, nil
}

// decodeStop accepts null, a string or an array of strings.
func decodeStop(raw json.RawMessage) ([]string, error) {
	if emptyJSON(raw) {
		return nil, nil
	}
	var list []string
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, badRequest("stop", "stop: %v", err)
		}
		list = []string{s}
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil, badRequest("stop", "stop must be a string or an array of strings")
	}
	if len(list) > sched.MaxStopStrings {
		return nil, badRequest("stop", "stop has %d strings; at most %d", len(list), sched.MaxStopStrings)
	}
	for i, s := range list {
		if s == "" || len(s) > sched.MaxStopLen {
			return nil, badRequest(fmt.Sprintf("stop[%d]", i), "stop strings must be 1..%d bytes, stop[%d] has %d", sched.MaxStopLen, i, len(s))
		}
	}
	return list, nil
}

// emptyJSON reports whether a raw field is absent or null.
func emptyJSON(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// embedParams is a validated embeddings request: texts or token ids per input.
type embedParams struct {
	Model  string
	Inputs []prompt
	Base64 bool
	Dims   int // 0: the model's width
}

// decodeEmbeddings decodes and validates an embeddings request.
func decodeEmbeddings(body []byte) (*embedParams, error) {
	var r EmbeddingRequest
	if err := unmarshalBody(body, &r); err != nil {
		return nil, err
	}
	p := &embedParams{Model: r.Model}
	switch r.EncodingFormat {
	case "", "float":
	case "base64":
		p.Base64 = true
	default:
		return nil, badRequest("encoding_format", "encoding_format %q is not one of float, base64", r.EncodingFormat)
	}
	if r.Dimensions != nil {
		if *r.Dimensions < 1 {
			return nil, badRequest("dimensions", "dimensions must be at least 1, got %d", *r.Dimensions)
		}
		p.Dims = *r.Dimensions
	}
	inputs, err := decodePrompts(r.Input, "input", maxEmbedInputs)
	if err != nil {
		return nil, err
	}
	for i, in := range inputs {
		if !in.IsTokens && in.Text == "" || in.IsTokens && len(in.Tokens) == 0 {
			return nil, badRequest(fmt.Sprintf("input[%d]", i), "input[%d] is empty", i)
		}
	}
	p.Inputs = inputs
	return p, nil
}

// decodeTokenize decodes and validates a /tokenize request.
func decodeTokenize(body []byte) (*TokenizeRequest, []engine.ChatMessage, error) {
	var r TokenizeRequest
	if err := unmarshalBody(body, &r); err != nil {
		return nil, nil, err
	}
	switch {
	case r.Prompt != nil && r.Messages != nil:
		return nil, nil, badRequest("messages", "send prompt or messages, not both")
	case r.Prompt != nil:
		if _, err := checkText(*r.Prompt, "prompt"); err != nil {
			return nil, nil, err
		}
		return &r, nil, nil
	case r.Messages != nil:
		msgs, err := decodeMessages(r.Messages)
		return &r, msgs, err
	}
	return nil, nil, badRequest("prompt", "prompt (a string) or messages (chat messages) is required")
}

// decodeDetokenize decodes and validates a /detokenize request.
func decodeDetokenize(body []byte) (string, []engine.Token, error) {
	var r DetokenizeRequest
	if err := unmarshalBody(body, &r); err != nil {
		return "", nil, err
	}
	if r.Tokens == nil {
		return "", nil, badRequest("tokens", "tokens (an array of token ids) is required")
	}
	toks, err := toTokens(r.Tokens, "tokens")
	return r.Model, toks, err
}
