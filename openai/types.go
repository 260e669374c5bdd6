// Package openai is the OpenAI wire format: the JSON request and response types,
// their decoding and validation into the core's request types (infer), and the
// rendering of the core's results, streamed chunks and errors, as pure functions over
// Go values. The REST transport serves it; route.Remote speaks it to other nodes. It
// imports no transport library.
package openai

import "encoding/json"

// Request types keep polymorphic fields (string-or-array) as json.RawMessage;
// decode.go resolves and validates them.

// ChatRequest is the body of POST /v1/chat/completions.
type ChatRequest struct {
	Model               string          `json:"model"`
	Messages            []ChatMessageIn `json:"messages"`
	Stream              bool            `json:"stream"`
	StreamOptions       *StreamOptions  `json:"stream_options"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	// TopK is an extension (vLLM's and llama-server's): sample from the k most likely
	// tokens; 0 or absent: off.
	TopK              *int            `json:"top_k,omitempty"`
	N                 *int            `json:"n"`
	Stop              json.RawMessage `json:"stop"`
	Seed              *int64          `json:"seed"`
	PresencePenalty   *float64        `json:"presence_penalty"`
	FrequencyPenalty  *float64        `json:"frequency_penalty"`
	Logprobs          *bool           `json:"logprobs"`
	TopLogprobs       *int            `json:"top_logprobs"`
	User              string          `json:"user"`
	ResponseFormat    *ResponseFormat `json:"response_format"`
	Tools             []Tool          `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	// Priority is HXP's extension: "interactive" (default) or "batch".
	Priority string `json:"priority,omitempty"`
	// ChatTemplateKwargs is vLLM's and llama-server's extension: an object of extra
	// chat template variables, e.g. {"enable_thinking": true}.
	ChatTemplateKwargs json.RawMessage `json:"chat_template_kwargs,omitempty"`

	// Accepted only when empty: HXP does not implement them.
	Functions json.RawMessage `json:"functions"`
	LogitBias json.RawMessage `json:"logit_bias"`
	Audio     json.RawMessage `json:"audio"`
}

// ChatMessageIn is one message of a chat request. Content is a string or an array of
// content parts ({"type":"text","text":...}).
type ChatMessageIn struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name"`
	ToolCalls  []ToolCall      `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
	// ReasoningContent is an assistant turn's thinking sent back by a client.
	ReasoningContent string `json:"reasoning_content"`
}

// Tool is one entry of tools: {"type":"function","function":{...}}.
type Tool struct {
	Type     string       `json:"type"`
	Function FunctionSpec `json:"function"`
}

// FunctionSpec describes a function the model may call.
type FunctionSpec struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ToolCall is a call made by the model, in requests (history) and responses.
type ToolCall struct {
	// Index orders streamed call deltas (chunks only).
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function FunctionCall `json:"function"`
}

// FunctionCall is the function part of a tool call; Arguments is a JSON text.
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// StreamOptions is the stream_options object.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// ResponseFormat is the response_format object.
type ResponseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *JSONSchema `json:"json_schema,omitempty"`
}

// JSONSchema is response_format.json_schema.
type JSONSchema struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema"`
	Strict      *bool           `json:"strict,omitempty"`
}

// CompletionRequest is the body of POST /v1/completions.
type CompletionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	Stream        bool            `json:"stream"`
	StreamOptions *StreamOptions  `json:"stream_options"`
	MaxTokens     *int            `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	// TopK is an extension, as ChatRequest's.
	TopK             *int            `json:"top_k,omitempty"`
	N                *int            `json:"n"`
	Stop             json.RawMessage `json:"stop"`
	Seed             *int64          `json:"seed"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	FrequencyPenalty *float64        `json:"frequency_penalty"`
	Logprobs         *int            `json:"logprobs"`
	User             string          `json:"user"`
	ResponseFormat   *ResponseFormat `json:"response_format"`
	// Priority is HXP's extension: "interactive" (default) or "batch".
	Priority string `json:"priority,omitempty"`

	// Accepted only when unset, empty or false: HXP does not implement them.
	Echo      bool            `json:"echo"`
	Suffix    *string         `json:"suffix"`
	BestOf    *int            `json:"best_of"`
	LogitBias json.RawMessage `json:"logit_bias"`
}

// EmbeddingRequest is the body of POST /v1/embeddings.
type EmbeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
	User           string          `json:"user"`
}

// TokenizeRequest is the body of POST /tokenize: a prompt, or chat messages rendered
// with the model's chat template.
type TokenizeRequest struct {
	Model            string          `json:"model"`
	Prompt           *string         `json:"prompt"`
	Messages         []ChatMessageIn `json:"messages"`
	AddSpecialTokens *bool           `json:"add_special_tokens"`
}

// DetokenizeRequest is the body of POST /detokenize.
type DetokenizeRequest struct {
	Model  string  `json:"model"`
	Tokens []int64 `json:"tokens"`
}

// Usage is the usage object of responses.
type Usage struct {
	PromptTokens        int                  `json:"prompt_tokens"`
	CompletionTokens    int                  `json:"completion_tokens"`
	TotalTokens         int                  `json:"total_tokens"`
	PromptTokensDetails *PromptTokensDetails `json:"prompt_tokens_details,omitempty"`
}

// PromptTokensDetails reports prompt tokens served from the KV cache.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// ChatCompletion is the response of a non-streamed chat completion.
type ChatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"` // "chat.completion"
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   *Usage       `json:"usage"`
}

// ChatChoice is one choice of a chat completion.
type ChatChoice struct {
	Index        int           `json:"index"`
	Message      ChatMessage   `json:"message"`
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason string        `json:"finish_reason"`
	// StopReason is vLLM's extension: the request's stop string that ended the
	// choice; absent when the model ended it, or max_tokens, or a tool call.
	StopReason *string `json:"stop_reason,omitempty"`
}

// ChatMessage is an assistant message of a response.
type ChatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// ReasoningContent is the thinking of a reasoning model, kept out of Content.
	ReasoningContent string     `json:"reasoning_content,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
}

// ChatLogprobs is choices[].logprobs of chat responses.
type ChatLogprobs struct {
	Content []TokenLogprob `json:"content"`
}

// TokenLogprob is one generated token with its log-probability and alternatives.
type TokenLogprob struct {
	Token       string       `json:"token"`
	Logprob     float64      `json:"logprob"`
	Bytes       []int        `json:"bytes"`
	TopLogprobs []TopLogprob `json:"top_logprobs"`
}

// TopLogprob is one alternative of a generated token.
type TopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// ChatChunk is one streamed chat completion chunk.
type ChatChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"` // "chat.completion.chunk"
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []ChatChunkChoice `json:"choices"`
	// Usage is absent, null (every chunk but the last with
	// stream_options.include_usage) or the usage object (the last such chunk).
	Usage json.RawMessage `json:"usage,omitempty"`
}

// ChatChunkChoice is one choice of a streamed chunk.
type ChatChunkChoice struct {
	Index        int           `json:"index"`
	Delta        ChatDelta     `json:"delta"`
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
	// StopReason is set on the chunk that ends the choice, as ChatChoice's.
	StopReason *string `json:"stop_reason,omitempty"`
}

// ChatDelta is the message delta of a chunk.
type ChatDelta struct {
	Role             string     `json:"role,omitempty"`
	Content          *string    `json:"content,omitempty"`
	ReasoningContent *string    `json:"reasoning_content,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
}

// Completion is the response (and, with object "text_completion", each streamed
// chunk) of /v1/completions.
type Completion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"` // "text_completion"
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []CompletionChoice `json:"choices"`
	// Usage is the usage object; in streamed chunks it is absent or null, as for chat.
	Usage json.RawMessage `json:"usage,omitempty"`
}

// CompletionChoice is one choice of a completion.
type CompletionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *CompletionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
	// StopReason is the matched stop string, as ChatChoice's.
	StopReason *string `json:"stop_reason,omitempty"`
}

// CompletionLogprobs is the legacy logprobs object of /v1/completions.
type CompletionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// EmbeddingResponse is the response of /v1/embeddings.
type EmbeddingResponse struct {
	Object string      `json:"object"` // "list"
	Data   []Embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  Usage       `json:"usage"`
}

// Embedding is one vector; Embedding is []float32 or, with encoding_format base64,
// a base64 string of little-endian float32s.
type Embedding struct {
	Object    string `json:"object"` // "embedding"
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

// ModelCard is one entry of GET /v1/models.
type ModelCard struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "model"
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Status is HXP's addition: loading, ready, failed, draining or closed.
	Status string `json:"status,omitempty"`
	// ContextLength is the context window of one request (0 while loading).
	ContextLength int `json:"context_length,omitempty"`
	// ChatTemplate is HXP's addition: which chat template renders conversations
	// ("gguf", "file", "builtin:NAME", or "default:chatml" for a model without one).
	ChatTemplate string `json:"chat_template,omitempty"`
}

// ModelList is the response of GET /v1/models.
type ModelList struct {
	Object string      `json:"object"` // "list"
	Data   []ModelCard `json:"data"`
}

// TokenizeResponse is the response of /tokenize.
type TokenizeResponse struct {
	Tokens      []int32 `json:"tokens"`
	Count       int     `json:"count"`
	MaxModelLen int     `json:"max_model_len"`
}

// ApplyTemplateRequest is the body of POST /apply-template (llama-server's name).
type ApplyTemplateRequest struct {
	Model    string          `json:"model"`
	Messages []ChatMessageIn `json:"messages"`
	Tools    []Tool          `json:"tools,omitempty"`
	// AddGenerationPrompt defaults to true.
	AddGenerationPrompt *bool `json:"add_generation_prompt,omitempty"`
	// ChatTemplateKwargs is as ChatRequest's.
	ChatTemplateKwargs json.RawMessage `json:"chat_template_kwargs,omitempty"`
}

// ApplyTemplateResponse is the response of /apply-template: the rendered prompt.
type ApplyTemplateResponse struct {
	Prompt string `json:"prompt"`
}

// DetokenizeResponse is the response of /detokenize.
type DetokenizeResponse struct {
	Prompt string `json:"prompt"`
}
