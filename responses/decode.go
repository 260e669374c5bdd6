package responses

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
)

// MaxItems bounds a request's input items, and a stored conversation's.
const MaxItems = 2048

// Input is a decoded POST /v1/responses body: the request as sent, this turn's input
// normalised to items, and whether the response is stored.
type Input struct {
	Request
	// Items are this turn's input items (a string input is one user message).
	Items []Item
	// Store is store, default true.
	Store bool
}

// Decode parses and checks a request body. The chat request is built by Chat once the
// history of previous_response_id is known.
func Decode(body []byte) (*Input, error) {
	var in Input
	if err := openai.Unmarshal(body, &in.Request); err != nil {
		return nil, err
	}
	in.Store = in.Request.Store == nil || *in.Request.Store
	items, err := decodeInput(in.Request.Input)
	if err != nil {
		return nil, err
	}
	in.Items = items
	if in.PreviousResponseID != "" && !strings.HasPrefix(in.PreviousResponseID, idPrefix) {
		return nil, infer.Invalid("previous_response_id", "previous_response_id must be a response id (resp_...), got %q", in.PreviousResponseID)
	}
	if len(in.Metadata) > 16 {
		return nil, infer.Invalid("metadata", "metadata has %d keys; at most 16 are allowed", len(in.Metadata))
	}
	return &in, nil
}

// itemIn is an input item as sent: a message's content is a string or a list of parts.
type itemIn struct {
	Item
	Content json.RawMessage `json:"content"`
}

// decodeInput normalises input (a string, or a list of items) to items.
func decodeInput(raw json.RawMessage) ([]Item, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, infer.Invalid("input", "input is required: a string or a list of input items")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, infer.Invalid("input", "input: %v", err)
		}
		return []Item{{Type: TypeMessage, Role: chat.RoleUser, Content: []Part{{Type: PartInputText, Text: s}}}}, nil
	}
	var in []itemIn
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, infer.Invalid("input", "input must be a string or a list of input items: %v", err)
	}
	if len(in) == 0 || len(in) > MaxItems {
		return nil, infer.Invalid("input", "input must have 1..%d items, got %d", MaxItems, len(in))
	}
	out := make([]Item, 0, len(in))
	for i, it := range in {
		param := fmt.Sprintf("input[%d]", i)
		item := it.Item
		if item.Type == "" && item.Role != "" {
			item.Type = TypeMessage
		}
		switch item.Type {
		case TypeMessage:
			parts, err := decodeParts(it.Content, param+".content")
			if err != nil {
				return nil, err
			}
			item.Content = parts
			switch item.Role {
			case chat.RoleUser, chat.RoleAssistant, chat.RoleSystem, "developer":
			default:
				return nil, infer.Invalid(param+".role", "role must be user, assistant, system or developer, got %q", item.Role)
			}
		case TypeFunctionCall:
			if item.CallID == "" || item.Name == "" {
				return nil, infer.Invalid(param, "a function_call item needs call_id and name")
			}
		case TypeFunctionCallOutput:
			if item.CallID == "" {
				return nil, infer.Invalid(param+".call_id", "a function_call_output item needs the call_id of its call")
			}
		case TypeReasoning:
			// Earlier turns' thinking is accepted and not sent to the model again.
		default:
			return nil, infer.Invalid(param+".type", "item type must be message, function_call, function_call_output or reasoning, got %q", item.Type)
		}
		out = append(out, item)
	}
	return out, nil
}

// decodeParts reads a message's content: a string, or input_text/output_text parts.
func decodeParts(raw json.RawMessage, param string) ([]Part, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, infer.Invalid(param, "%s: %v", param, err)
		}
		return []Part{{Type: PartInputText, Text: s}}, nil
	}
	var parts []Part
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, infer.Invalid(param, "%s must be a string or a list of content parts: %v", param, err)
	}
	for i, p := range parts {
		if p.Type != PartInputText && p.Type != PartOutputText {
			return nil, infer.Invalid(fmt.Sprintf("%s[%d].type", param, i), "content part type must be input_text or output_text (images and files are not supported), got %q", p.Type)
		}
		parts[i].Annotations = nil
	}
	return parts, nil
}

// Chat builds the core's chat request from the instructions, the history (the stored
// conversation previous_response_id continues, or nil) and this turn's items,
// validated exactly as chat completions are.
func Chat(in *Input, history []Item, lim openai.Limits) (*infer.ChatRequest, error) {
	if n := len(history) + len(in.Items); n > MaxItems {
		return nil, infer.Invalid("previous_response_id", "the conversation has %d items; at most %d are allowed: start a new one", n, MaxItems)
	}
	r := openai.ChatRequest{Model: in.Model, Temperature: in.Temperature, TopP: in.TopP, MaxCompletionTokens: in.MaxOutputTokens,
		Stream: in.Stream, ParallelToolCalls: in.ParallelToolCalls, ToolChoice: in.ToolChoice}
	r.Messages, _ = conversation(in, history)
	for i, t := range in.Tools {
		if t.Type == ToolFileSearch {
			continue // the server's own tool: see FileSearchOf
		}
		if t.Type != "function" {
			return nil, infer.Invalid(fmt.Sprintf("tools[%d].type", i), "only function and file_search tools are supported, got %q", t.Type)
		}
		r.Tools = append(r.Tools, openai.Tool{Type: "function", Function: openai.FunctionSpec{Name: t.Name,
			Description: t.Description, Parameters: t.Parameters, Strict: t.Strict}})
	}
	if f := in.format(); f != nil && f.Type != "text" {
		rf := &openai.ResponseFormat{Type: f.Type}
		if f.Type == "json_schema" {
			rf.JSONSchema = &openai.JSONSchema{Name: f.Name, Description: f.Description, Schema: f.Schema, Strict: f.Strict}
		}
		r.ResponseFormat = rf
	}
	ci, err := openai.ValidateChat(&r, lim)
	if err != nil {
		return nil, in.RenameParam(err, history, nil)
	}
	return &ci.ChatRequest, nil
}

func (in *Input) format() *Format {
	if in.Text == nil {
		return nil
	}
	return in.Text.Format
}

// renames are chat completions' fields with their names in this format, the
// longest first: a json_schema's fields are text.format's own here.
var renames = [][2]string{
	{"response_format.json_schema", "text.format"},
	{"response_format", "text.format"},
	{"max_completion_tokens", "max_output_tokens"},
	{"messages", "input"},
}

// RenameParam names this format's fields in an error that the chat validation or
// the core found in the chat request Chat built from in and history (a schema the
// grammar converter refuses is text.format.schema here, not
// response_format.json_schema.schema). A message is named by where it came from:
// instructions, previous_response_id (the stored conversation) or its input item,
// whose index counts this request's items only. sent is the chat request as sent,
// when the server put messages of its own before the conversation (Ground), else
// nil.
func (in *Input) RenameParam(err error, history []Item, sent *infer.ChatRequest) error {
	e := infer.AsError(err, "")
	if e == nil || e.Param == "" {
		return err
	}
	c := *e
	if k, head, rest, ok := messageParam(c.Param); ok {
		_, srcs := conversation(in, history)
		if sent != nil {
			k -= len(sent.Messages) - len(srcs) // messages put before the conversation
		}
		param, base := "input", "input" // a message outside the conversation: the server's
		if k >= 0 && k < len(srcs) {
			param, base = srcs[k].rename(rest), srcs[k].param
		}
		c.Message = strings.ReplaceAll(c.Message, c.Param, param)
		c.Message = strings.ReplaceAll(c.Message, head, base)
		c.Param = param
		return &c
	}
	for _, r := range renames {
		if strings.HasPrefix(c.Param, r[0]) {
			c.Param = r[1] + strings.TrimPrefix(c.Param, r[0])
			c.Message = strings.ReplaceAll(c.Message, r[0], r[1])
			break
		}
	}
	if strings.HasPrefix(c.Param, "tools[") { // function tools are flat here
		c.Param = strings.Replace(c.Param, "].function.", "].", 1)
		c.Message = strings.ReplaceAll(c.Message, "].function.", "].")
	}
	return &c
}

// messageParam splits "messages[K]REST" into K, "messages[K]" and REST.
func messageParam(param string) (k int, head, rest string, ok bool) {
	idx, ok := strings.CutPrefix(param, "messages[")
	if !ok {
		return 0, "", "", false
	}
	num, rest, ok := strings.Cut(idx, "]")
	k, err := strconv.Atoi(num)
	if !ok || err != nil || k < 0 {
		return 0, "", "", false
	}
	return k, param[:len(param)-len(rest)], rest, true
}

// source is where one message of the chat request came from.
type source struct {
	// param is "instructions", "previous_response_id" or this request's "input[i]".
	param string
	// calls are the sources of an assistant turn's tool calls (consecutive
	// function_call items join one turn).
	calls []string
	// output: the message is a function_call_output item.
	output bool
}

// rename names a chat message's field (REST after "messages[K]") in this format.
func (s source) rename(rest string) string {
	if tail, ok := strings.CutPrefix(rest, ".tool_calls["); ok {
		num, field, _ := strings.Cut(tail, "]")
		if j, err := strconv.Atoi(num); err == nil && j >= 0 && j < len(s.calls) {
			if s.calls[j] == paramHistory {
				return paramHistory
			}
			return s.calls[j] + callFields.Replace(field)
		}
	}
	switch {
	case s.param == paramInstructions || s.param == paramHistory:
		return s.param
	case s.output:
		return s.param + outputFields.Replace(rest)
	}
	return s.param + rest
}

const (
	paramInstructions = "instructions"
	paramHistory      = "previous_response_id"
)

// callFields and outputFields are a chat tool call's and tool message's fields as a
// function_call's and a function_call_output's.
var (
	callFields   = strings.NewReplacer(".function.arguments", ".arguments", ".function.name", ".name", ".id", ".call_id", ".function", "")
	outputFields = strings.NewReplacer(".content", ".output", ".tool_call_id", ".call_id")
)

// conversation is the chat messages of the instructions, the history and this
// turn's items, and where each came from.
func conversation(in *Input, history []Item) ([]openai.ChatMessageIn, []source) {
	var msgs []openai.ChatMessageIn
	var srcs []source
	if in.Instructions != "" {
		msgs = append(msgs, openai.ChatMessageIn{Role: chat.RoleSystem, Content: jsonString(in.Instructions)})
		srcs = append(srcs, source{param: paramInstructions})
	}
	msgs, srcs = appendMessages(msgs, srcs, history, func(int) string { return paramHistory })
	return appendMessages(msgs, srcs, in.Items, func(i int) string { return fmt.Sprintf("input[%d]", i) })
}

// appendMessages converts items to chat messages: consecutive function calls join
// one assistant turn, a call's output is a tool message, reasoning is dropped.
// param names item i in srcs.
func appendMessages(msgs []openai.ChatMessageIn, srcs []source, items []Item, param func(i int) string) ([]openai.ChatMessageIn, []source) {
	for i, it := range items {
		switch it.Type {
		case TypeMessage:
			role := it.Role
			if role == "developer" {
				role = chat.RoleSystem
			}
			var b strings.Builder
			for _, p := range it.Content {
				b.WriteString(p.Text)
			}
			msgs = append(msgs, openai.ChatMessageIn{Role: role, Content: jsonString(b.String())})
			srcs = append(srcs, source{param: param(i)})
		case TypeFunctionCall:
			call := openai.ToolCall{ID: it.CallID, Type: "function", Function: openai.FunctionCall{Name: it.Name, Arguments: it.Arguments}}
			if n := len(msgs); n > 0 && msgs[n-1].Role == chat.RoleAssistant {
				msgs[n-1].ToolCalls = append(msgs[n-1].ToolCalls, call)
				srcs[n-1].calls = append(srcs[n-1].calls, param(i))
				continue
			}
			msgs = append(msgs, openai.ChatMessageIn{Role: chat.RoleAssistant, Content: jsonString(""), ToolCalls: []openai.ToolCall{call}})
			srcs = append(srcs, source{param: param(i), calls: []string{param(i)}})
		case TypeFunctionCallOutput:
			msgs = append(msgs, openai.ChatMessageIn{Role: chat.RoleTool, ToolCallID: it.CallID, Content: jsonString(it.Output)})
			srcs = append(srcs, source{param: param(i), output: true})
		}
	}
	return msgs, srcs
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}
