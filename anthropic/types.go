// Package anthropic is the Anthropic Messages wire format: the JSON request and
// response types of POST /v1/messages and /v1/messages/count_tokens, their decoding
// and validation into the core's request types (infer), and the rendering of the
// core's results, streamed events and errors, as pure functions over Go values. The
// REST transport serves it. It imports no transport library.
package anthropic

import "encoding/json"

// Request types keep polymorphic fields (string-or-blocks) as json.RawMessage;
// decode.go resolves and validates them.

// MessagesRequest is the body of POST /v1/messages.
type MessagesRequest struct {
	Model string `json:"model"`
	// System is a string or an array of text blocks.
	System        json.RawMessage `json:"system"`
	Messages      []MessageIn     `json:"messages"`
	MaxTokens     *int            `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	TopK          *int            `json:"top_k"`
	StopSequences []string        `json:"stop_sequences"`
	Tools         []Tool          `json:"tools"`
	ToolChoice    *ToolChoice     `json:"tool_choice"`
	Stream        bool            `json:"stream"`
	// Metadata is accepted and dropped: its user_id is never logged or stored.
	Metadata json.RawMessage `json:"metadata"`
	// Thinking is accepted ({"type": "enabled"|"disabled"|"adaptive"}); a reasoning
	// model's thinking is returned as thinking blocks either way.
	Thinking *Thinking `json:"thinking"`
	// OutputConfig's format constrains the answer to a JSON schema.
	OutputConfig *OutputConfig `json:"output_config"`
}

// OutputConfig is the output_config object: a format, and an effort (accepted).
type OutputConfig struct {
	Format *OutputFormat `json:"format"`
	Effort string        `json:"effort"`
}

// OutputFormat is output_config.format: {"type": "json_schema", "schema": {...}}.
type OutputFormat struct {
	Type   string          `json:"type"`
	Schema json.RawMessage `json:"schema"`
}

// CountTokensRequest is the body of POST /v1/messages/count_tokens.
type CountTokensRequest struct {
	Model    string          `json:"model"`
	System   json.RawMessage `json:"system"`
	Messages []MessageIn     `json:"messages"`
	Tools    []Tool          `json:"tools"`
	// ToolChoice and Thinking are accepted as in MessagesRequest.
	ToolChoice *ToolChoice `json:"tool_choice"`
	Thinking   *Thinking   `json:"thinking"`
}

// MessageIn is one turn of a request (role user, assistant, or system: text only):
// Content is a string or an array of blocks.
type MessageIn struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// BlockIn is one content block of a request's message (or system prompt): text,
// tool_use (an assistant's call), tool_result (a user's answer to one), thinking.
type BlockIn struct {
	Type string  `json:"type"`
	Text *string `json:"text"`
	// tool_use
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
	// tool_result: Content is a string or an array of text blocks.
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
	// thinking
	Thinking  *string `json:"thinking"`
	Signature string  `json:"signature"`
}

// Tool is one entry of tools: a client tool described by its input's JSON Schema.
type Tool struct {
	// Type is "custom" or absent; server tools (web search, ...) are not supported.
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// ToolChoice is the tool_choice object.
type ToolChoice struct {
	// Type is auto, any, tool or none.
	Type string `json:"type"`
	// Name is the forced tool with type tool.
	Name                   string `json:"name"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use"`
}

// Thinking is the thinking object.
type Thinking struct {
	Type         string `json:"type"`
	BudgetTokens int    `json:"budget_tokens"`
}

// Message is the response of POST /v1/messages, and the message of message_start.
type Message struct {
	ID           string  `json:"id"`
	Type         string  `json:"type"`
	Role         string  `json:"role"`
	Model        string  `json:"model"`
	Content      []Block `json:"content"`
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        Usage   `json:"usage"`
}

// Block is one content block of a response: text, thinking or tool_use. Text and
// Thinking are pointers so that a block start carries its empty field.
type Block struct {
	Type      string          `json:"type"`
	Text      *string         `json:"text,omitempty"`
	Thinking  *string         `json:"thinking,omitempty"`
	Signature *string         `json:"signature,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
}

// Usage counts a request's tokens. InputTokens is the whole prompt (the prompt
// cache of the KV store is not billed apart).
type Usage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

// TokenCount is the response of POST /v1/messages/count_tokens.
type TokenCount struct {
	InputTokens int `json:"input_tokens"`
}

// Event is one Server-Sent Event of a stream: its name (the "event:" line) and data.
type Event struct {
	Name string
	Data any
}

// Stream event names (the "event:" line and the data's "type").
const (
	EventMessageStart = "message_start"
	EventBlockStart   = "content_block_start"
	EventBlockDelta   = "content_block_delta"
	EventBlockStop    = "content_block_stop"
	EventMessageDelta = "message_delta"
	EventMessageStop  = "message_stop"
	EventPing         = "ping"
	EventError        = "error"
)

// MessageStart is the data of message_start.
type MessageStart struct {
	Type    string   `json:"type"`
	Message *Message `json:"message"`
}

// BlockStart is the data of content_block_start.
type BlockStart struct {
	Type         string `json:"type"`
	Index        int    `json:"index"`
	ContentBlock Block  `json:"content_block"`
}

// BlockDelta is the data of content_block_delta.
type BlockDelta struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
	Delta Delta  `json:"delta"`
}

// Delta is a piece of a block: text_delta, thinking_delta or input_json_delta.
type Delta struct {
	Type        string  `json:"type"`
	Text        *string `json:"text,omitempty"`
	Thinking    *string `json:"thinking,omitempty"`
	PartialJSON *string `json:"partial_json,omitempty"`
}

// BlockStop is the data of content_block_stop.
type BlockStop struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
}

// MessageDelta is the data of message_delta: the stop reason and the final usage.
type MessageDelta struct {
	Type  string        `json:"type"`
	Delta MessageChange `json:"delta"`
	Usage Usage         `json:"usage"`
}

// MessageChange is the delta member of message_delta.
type MessageChange struct {
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

// TypeOnly is the data of events with nothing but their type (message_stop, ping).
type TypeOnly struct {
	Type string `json:"type"`
}
