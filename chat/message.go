// Package chat is the model side of a conversation: the messages, tools and tool
// calls that every front end decodes into, the model's own chat template (Jinja)
// that renders them into a prompt, and the parsers that read tool calls and
// reasoning back out of the model's text. It imports no transport, routing or
// tenancy package, and no cgo.
package chat

import "encoding/json"

// Roles of a message.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one turn of a conversation, as every front end hands it to the core.
type Message struct {
	// Role is system, user, assistant or tool ("developer" is decoded as system).
	Role string
	// Content is the text of the turn (text parts joined by newlines).
	Content string
	// Name is the optional participant name.
	Name string
	// ToolCalls are the calls an assistant turn made.
	ToolCalls []ToolCall
	// ToolCallID names the call a tool turn answers.
	ToolCallID string
	// Reasoning is an assistant turn's thinking, when a client sends it back.
	Reasoning string
}

// ToolCall is one function call made by the model.
type ToolCall struct {
	// ID identifies the call ("call_..."); a tool message answers it by this id.
	ID string
	// Name is the function's name.
	Name string
	// Arguments is the call's arguments as a JSON object text.
	Arguments string
}

// Tool is a function the model may call.
type Tool struct {
	// Name is the function's name ([a-zA-Z0-9_-], at most 64 characters).
	Name string
	// Description tells the model what the function does.
	Description string
	// Parameters is the JSON Schema of the arguments object (nil: no parameters).
	Parameters json.RawMessage
	// Strict asks for arguments that satisfy Parameters exactly (always enforced
	// when a call is forced; see ToolChoice).
	Strict bool
}

// ToolChoiceMode says whether the model may, must or must not call a tool.
type ToolChoiceMode int

// Tool choice modes (OpenAI's tool_choice).
const (
	// ToolAuto lets the model answer with text or call tools (the default with tools).
	ToolAuto ToolChoiceMode = iota
	// ToolNone forbids calls (tools are still shown to the template).
	ToolNone
	// ToolRequired forces at least one call of any offered tool.
	ToolRequired
	// ToolFunction forces a call of the function named in ToolChoice.Name.
	ToolFunction
)

// ToolChoice is the request's tool_choice.
type ToolChoice struct {
	Mode ToolChoiceMode
	// Name is the forced function with ToolFunction.
	Name string
}
