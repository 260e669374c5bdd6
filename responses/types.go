// Package responses is the wire format of OpenAI's Responses API (POST /v1/responses
// and its siblings): decoding a request into the core's chat request, rendering the
// response object and its streamed events, and the Store that keeps responses so a
// later request can continue a conversation by previous_response_id.
//
// It is pure: it imports the core (infer, chat) and the chat completions wire
// format it validates through (openai), never a transport.
package responses

import (
	"encoding/json"
)

// Request is the body of POST /v1/responses.
type Request struct {
	Model string `json:"model"`
	// Input is a string (one user message) or a list of input items.
	Input              json.RawMessage   `json:"input"`
	Instructions       string            `json:"instructions,omitempty"`
	Tools              []Tool            `json:"tools,omitempty"`
	ToolChoice         json.RawMessage   `json:"tool_choice,omitempty"`
	ParallelToolCalls  *bool             `json:"parallel_tool_calls,omitempty"`
	Text               *TextConfig       `json:"text,omitempty"`
	Reasoning          *Reasoning        `json:"reasoning,omitempty"`
	MaxOutputTokens    *int              `json:"max_output_tokens,omitempty"`
	Temperature        *float64          `json:"temperature,omitempty"`
	TopP               *float64          `json:"top_p,omitempty"`
	Stream             bool              `json:"stream,omitempty"`
	Store              *bool             `json:"store,omitempty"`
	PreviousResponseID string            `json:"previous_response_id,omitempty"`
	Metadata           map[string]string `json:"metadata,omitempty"`
}

// Tool is a function tool: {"type":"function","name":...,"parameters":...}, or the
// file_search tool: {"type":"file_search","vector_store_ids":[...],"max_num_results":n}.
type Tool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
	// VectorStoreIDs, MaxNumResults and Filters (on the files' attributes, as a
	// vector store search takes them) are file_search's.
	VectorStoreIDs []string        `json:"vector_store_ids,omitempty"`
	MaxNumResults  *int            `json:"max_num_results,omitempty"`
	Filters        json.RawMessage `json:"filters,omitempty"`
}

// TextConfig is the request's text options: the output format.
type TextConfig struct {
	Format *Format `json:"format,omitempty"`
}

// Format is text.format: "text", "json_object" or "json_schema" (with its name and
// schema inline, unlike chat completions' response_format).
type Format struct {
	Type        string          `json:"type"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// Reasoning is the request's reasoning options, accepted and echoed: the served
// model decides whether it thinks.
type Reasoning struct {
	Effort  *string `json:"effort"`
	Summary *string `json:"summary"`
}

// Item types.
const (
	TypeMessage            = "message"
	TypeFunctionCall       = "function_call"
	TypeFunctionCallOutput = "function_call_output"
	TypeReasoning          = "reasoning"
)

// Content part types.
const (
	PartInputText     = "input_text"
	PartOutputText    = "output_text"
	PartReasoningText = "reasoning_text"
)

// Item is one input or output item: a message, a function call, a function call's
// output, or a model's reasoning. Stored conversations are lists of items.
type Item struct {
	Type   string `json:"type"`
	ID     string `json:"id,omitempty"`
	Status string `json:"status,omitempty"`
	// Role and Content are a message's.
	Role    string `json:"role,omitempty"`
	Content []Part `json:"content,omitzero"`
	// CallID, Name and Arguments are a function call's; CallID and Output a
	// function call output's.
	CallID    string `json:"call_id,omitempty"`
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments,omitzero"`
	Output    string `json:"output,omitempty"`
	// Summary is a reasoning item's (always empty here: the thinking is its Content).
	Summary []Part `json:"summary,omitzero"`
	// Queries and Results are a file_search_call's.
	Queries []string           `json:"queries,omitempty"`
	Results []FileSearchResult `json:"results,omitzero"`
}

// Part is one content part of a message or reasoning item.
type Part struct {
	Type string `json:"type"`
	Text string `json:"text"`
	// Annotations are an output_text's (always empty here).
	Annotations []struct{} `json:"annotations,omitzero"`
}

// Response is the response object: what POST /v1/responses and GET
// /v1/responses/{id} return.
type Response struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Error              *ErrorInfo         `json:"error"`
	IncompleteDetails  *IncompleteDetails `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	Model              string             `json:"model"`
	Output             []Item             `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Reasoning          *Reasoning         `json:"reasoning,omitempty"`
	Store              bool               `json:"store"`
	Temperature        *float64           `json:"temperature"`
	TopP               *float64           `json:"top_p"`
	Text               TextConfig         `json:"text"`
	ToolChoice         json.RawMessage    `json:"tool_choice"`
	Tools              []Tool             `json:"tools"`
	Usage              *Usage             `json:"usage"`
	Metadata           map[string]string  `json:"metadata"`
}

// Response statuses.
const (
	StatusInProgress = "in_progress"
	StatusCompleted  = "completed"
	StatusIncomplete = "incomplete"
	StatusFailed     = "failed"
)

// ErrorInfo is a failed response's error.
type ErrorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// IncompleteDetails says why a response is incomplete ("max_output_tokens").
type IncompleteDetails struct {
	Reason string `json:"reason"`
}

// Usage counts a response's tokens.
type Usage struct {
	InputTokens         int                 `json:"input_tokens"`
	InputTokensDetails  InputTokensDetails  `json:"input_tokens_details"`
	OutputTokens        int                 `json:"output_tokens"`
	OutputTokensDetails OutputTokensDetails `json:"output_tokens_details"`
	TotalTokens         int                 `json:"total_tokens"`
}

// InputTokensDetails are the prompt tokens served from the prompt-prefix cache.
type InputTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// OutputTokensDetails count the reasoning tokens (not separated here: 0).
type OutputTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// ItemList is GET /v1/responses/{id}/input_items.
type ItemList struct {
	Object  string  `json:"object"`
	Data    []Item  `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// Deleted is DELETE /v1/responses/{id}.
type Deleted struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Deleted bool   `json:"deleted"`
}
