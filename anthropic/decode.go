package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/infer"
	"github.com/hxp-ai/hxp/openai"
	"github.com/hxp-ai/hxp/sched"
)

// Request decoding: JSON into the wire types of types.go, then validation into the
// core's request types. Every problem is an *infer.Error (InvalidArgument) naming the
// field in Anthropic's terms; nothing here calls the engine.

// Limits of request content, besides those of the scheduler.
const (
	maxMessages = 4096
	maxTools    = 128
	// maxToolName is the core's bound on a tool's name (Anthropic allows 128).
	maxToolName = 64
)

// DecodeMessages decodes and validates a POST /v1/messages body.
func DecodeMessages(body []byte) (*infer.ChatRequest, error) {
	var r MessagesRequest
	if err := openai.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	return ValidateMessages(&r)
}

// ValidateMessages validates a Messages request into the core's chat request.
// Defaults follow Anthropic: temperature 1, no top_p or top_k, a random seed (so only
// temperature 0 is deterministic).
func ValidateMessages(r *MessagesRequest) (*infer.ChatRequest, error) {
	if err := infer.CheckModelID(r.Model); err != nil {
		return nil, err
	}
	if r.MaxTokens == nil {
		return nil, infer.Invalid("max_tokens", "max_tokens is required: the most tokens to generate (at least 1)")
	}
	if *r.MaxTokens < 1 {
		return nil, infer.Invalid("max_tokens", "max_tokens must be at least 1, got %d", *r.MaxTokens)
	}
	g := infer.GenParams{N: 1, MaxTokens: *r.MaxTokens, Stream: r.Stream}
	g.Sampling.Seed = rand.Uint32()
	if err := decodeSampling(r, &g); err != nil {
		return nil, err
	}
	if err := checkThinking(r.Thinking); err != nil {
		return nil, err
	}
	if err := decodeFormat(r.OutputConfig, &g); err != nil {
		return nil, err
	}
	msgs, tools, choice, err := decodeConversation(r.System, r.Messages, r.Tools, r.ToolChoice)
	if err != nil {
		return nil, err
	}
	return &infer.ChatRequest{Model: r.Model, Messages: msgs, Tools: tools, ToolChoice: choice,
		ParallelToolCalls: r.ToolChoice == nil || !r.ToolChoice.DisableParallelToolUse, GenParams: g}, nil
}

// decodeSampling validates temperature (0..1), top_p (0..1), top_k (>= 0) and
// stop_sequences into g.
func decodeSampling(r *MessagesRequest, g *infer.GenParams) error {
	temp := 1.0
	if r.Temperature != nil {
		temp = *r.Temperature
		if !(temp >= 0 && temp <= 1) {
			return infer.Invalid("temperature", "temperature must be 0..1, got %v", temp)
		}
	}
	if r.TopP != nil {
		p := *r.TopP
		if !(p >= 0 && p <= 1) {
			return infer.Invalid("top_p", "top_p must be 0..1, got %v", p)
		}
		if p == 0 { // the smallest nucleus holds only the most likely token
			temp = 0
		} else if p < 1 {
			g.Sampling.TopP = float32(p)
		}
	}
	g.Sampling.Temperature = float32(temp)
	if r.TopK != nil {
		if *r.TopK < 0 {
			return infer.Invalid("top_k", "top_k must be at least 0 (0: off), got %d", *r.TopK)
		}
		g.Sampling.TopK = *r.TopK
	}
	if len(r.StopSequences) > sched.MaxStopStrings {
		return infer.Invalid("stop_sequences", "stop_sequences has %d strings; at most %d", len(r.StopSequences), sched.MaxStopStrings)
	}
	for i, s := range r.StopSequences {
		p := fmt.Sprintf("stop_sequences[%d]", i)
		if s == "" || len(s) > sched.MaxStopLen {
			return infer.Invalid(p, "%s must be 1..%d bytes, got %d", p, sched.MaxStopLen, len(s))
		}
		if err := infer.CheckText(s, p); err != nil {
			return err
		}
	}
	g.Stop = r.StopSequences
	return nil
}

// decodeFormat maps output_config.format (json_schema) to the core's format.
func decodeFormat(c *OutputConfig, g *infer.GenParams) error {
	if c == nil || c.Format == nil {
		return nil
	}
	if c.Format.Type != "json_schema" {
		return infer.Invalid("output_config.format.type", "output_config.format.type %q is not supported (json_schema)", c.Format.Type)
	}
	if openai.EmptyJSON(c.Format.Schema) || bytes.TrimSpace(c.Format.Schema)[0] != '{' {
		return infer.Invalid("output_config.format.schema", "output_config.format.schema must be a JSON Schema object")
	}
	g.Format = infer.Format{Type: infer.FormatJSONSchema, Schema: c.Format.Schema}
	return nil
}

// checkThinking accepts the thinking object's known types.
func checkThinking(t *Thinking) error {
	if t == nil {
		return nil
	}
	switch t.Type {
	case "enabled", "disabled", "adaptive":
		return nil
	}
	return infer.Invalid("thinking.type", "thinking.type %q is not one of enabled, disabled, adaptive", t.Type)
}

// DecodeCountTokens decodes and validates a POST /v1/messages/count_tokens body into
// a tokenize request of the conversation and tools as Messages renders them.
func DecodeCountTokens(body []byte) (*infer.TokenizeRequest, error) {
	var r CountTokensRequest
	if err := openai.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	if err := infer.CheckModelID(r.Model); err != nil {
		return nil, err
	}
	if err := checkThinking(r.Thinking); err != nil {
		return nil, err
	}
	msgs, tools, _, err := decodeConversation(r.System, r.Messages, r.Tools, r.ToolChoice)
	if err != nil {
		return nil, err
	}
	return &infer.TokenizeRequest{Model: r.Model, Messages: msgs, Tools: tools, AddSpecial: true}, nil
}

// decodeConversation validates what Messages and count_tokens share: the system
// prompt and messages as chat messages, the tools and the tool choice.
func decodeConversation(system json.RawMessage, in []MessageIn, wireTools []Tool, wireChoice *ToolChoice) (
	[]chat.Message, []chat.Tool, chat.ToolChoice, error) {
	msgs, err := decodeMessages(system, in)
	if err != nil {
		return nil, nil, chat.ToolChoice{}, err
	}
	tools, err := decodeTools(wireTools)
	if err != nil {
		return nil, nil, chat.ToolChoice{}, err
	}
	choice, err := decodeToolChoice(wireChoice, tools)
	if err != nil {
		return nil, nil, chat.ToolChoice{}, err
	}
	return msgs, tools, choice, nil
}

// decodeMessages turns the system prompt and the messages into chat messages: the
// system prompt first; a user turn's tool_result blocks become tool messages (in
// their place among its text); an assistant turn's tool_use blocks become its tool
// calls and its thinking blocks its reasoning.
func decodeMessages(system json.RawMessage, in []MessageIn) ([]chat.Message, error) {
	if len(in) == 0 {
		return nil, infer.Invalid("messages", "messages must be a non-empty array")
	}
	if len(in) > maxMessages {
		return nil, infer.Invalid("messages", "too many messages: %d (at most %d)", len(in), maxMessages)
	}
	out := make([]chat.Message, 0, len(in)+1)
	if !openai.EmptyJSON(system) {
		text, err := decodeText(system, "system")
		if err != nil {
			return nil, err
		}
		out = append(out, chat.Message{Role: chat.RoleSystem, Content: text})
	}
	for i, m := range in {
		p := fmt.Sprintf("messages[%d]", i)
		blocks, err := decodeBlocks(m.Content, p+".content")
		if err != nil {
			return nil, err
		}
		switch m.Role {
		case chat.RoleUser:
			out, err = appendUser(out, blocks, p+".content")
		case chat.RoleAssistant:
			out, err = appendAssistant(out, blocks, p+".content")
		case chat.RoleSystem:
			var text string
			if text, err = decodeText(m.Content, p+".content"); err == nil {
				out = append(out, chat.Message{Role: chat.RoleSystem, Content: text})
			}
		case "":
			err = infer.Invalid(p+".role", "%s.role is missing (user, assistant or system)", p)
		default:
			err = infer.Invalid(p+".role", "%s.role %q is not one of user, assistant, system", p, m.Role)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// appendUser adds a user turn: its text blocks joined as one user message, each
// tool_result block a tool message, in their order.
func appendUser(out []chat.Message, blocks []BlockIn, param string) ([]chat.Message, error) {
	var text []string
	results := 0
	flush := func() {
		if len(text) > 0 {
			out = append(out, chat.Message{Role: chat.RoleUser, Content: strings.Join(text, "\n")})
			text = nil
		}
	}
	for j, b := range blocks {
		p := fmt.Sprintf("%s[%d]", param, j)
		switch b.Type {
		case "text":
			text = append(text, *b.Text)
		case "tool_result":
			content, err := decodeText(b.Content, p+".content")
			if err != nil {
				return nil, err
			}
			if b.IsError {
				content = "Error: " + content
			}
			flush()
			out = append(out, chat.Message{Role: chat.RoleTool, Content: content, ToolCallID: b.ToolUseID})
			results++
		default:
			return nil, infer.Invalid(p+".type", "%s.type %q is not allowed in a user message (text or tool_result)", p, b.Type)
		}
	}
	if results == 0 && len(text) == 0 {
		text = []string{""}
	}
	flush()
	return out, nil
}

// appendAssistant adds an assistant turn: its text, tool calls and thinking.
func appendAssistant(out []chat.Message, blocks []BlockIn, param string) ([]chat.Message, error) {
	msg := chat.Message{Role: chat.RoleAssistant}
	var text, thoughts []string
	for j, b := range blocks {
		p := fmt.Sprintf("%s[%d]", param, j)
		switch b.Type {
		case "text":
			text = append(text, *b.Text)
		case "thinking":
			thoughts = append(thoughts, *b.Thinking)
		case "redacted_thinking": // encrypted by another server: nothing to show the model
		case "tool_use":
			msg.ToolCalls = append(msg.ToolCalls, chat.ToolCall{ID: b.ID, Name: b.Name, Arguments: string(b.Input)})
		default:
			return nil, infer.Invalid(p+".type", "%s.type %q is not allowed in an assistant message (text, thinking or tool_use)", p, b.Type)
		}
	}
	msg.Content, msg.Reasoning = strings.Join(text, "\n"), strings.Join(thoughts, "\n")
	return append(out, msg), nil
}

// decodeBlocks accepts a string (one text block) or an array of content blocks, and
// checks each block's fields for its type.
func decodeBlocks(raw json.RawMessage, param string) ([]BlockIn, error) {
	if openai.EmptyJSON(raw) {
		return nil, infer.Invalid(param, "%s is required: a string or an array of content blocks", param)
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, infer.Invalid(param, "%s: %v", param, err)
		}
		if err := infer.CheckText(s, param); err != nil {
			return nil, err
		}
		return []BlockIn{{Type: "text", Text: &s}}, nil
	}
	var blocks []BlockIn
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return nil, infer.Invalid(param, "%s must be a string or an array of content blocks ({\"type\":\"text\",\"text\":...}, tool_use, tool_result)", param)
	}
	for j := range blocks {
		if err := checkBlock(&blocks[j], fmt.Sprintf("%s[%d]", param, j)); err != nil {
			return nil, err
		}
	}
	return blocks, nil
}

// checkBlock validates one block's fields (tool_use input defaults to {}).
func checkBlock(b *BlockIn, p string) error {
	switch b.Type {
	case "text":
		if b.Text == nil {
			return infer.Invalid(p+".text", "%s.text is missing", p)
		}
		return infer.CheckText(*b.Text, p+".text")
	case "thinking":
		if b.Thinking == nil {
			return infer.Invalid(p+".thinking", "%s.thinking is missing", p)
		}
		return infer.CheckText(*b.Thinking, p+".thinking")
	case "redacted_thinking":
		return nil
	case "tool_use":
		if b.ID == "" {
			return infer.Invalid(p+".id", "%s.id is missing (tool_result blocks answer the call by it)", p)
		}
		if b.Name == "" {
			return infer.Invalid(p+".name", "%s.name is missing", p)
		}
		if openai.EmptyJSON(b.Input) {
			b.Input = json.RawMessage("{}")
		} else if t := bytes.TrimSpace(b.Input); t[0] != '{' {
			return infer.Invalid(p+".input", "%s.input must be a JSON object", p)
		}
		return nil
	case "tool_result":
		if b.ToolUseID == "" {
			return infer.Invalid(p+".tool_use_id", "%s.tool_use_id is missing (the id of the tool_use block it answers)", p)
		}
		return nil
	case "":
		return infer.Invalid(p+".type", "%s.type is missing", p)
	}
	return infer.Invalid(p+".type", "%s.type %q is not supported by this server (text, tool_use, tool_result, thinking)", p, b.Type)
}

// decodeText accepts a string, null (empty) or an array of text blocks (joined by
// newlines): the system prompt and a tool_result's content.
func decodeText(raw json.RawMessage, param string) (string, error) {
	if openai.EmptyJSON(raw) {
		return "", nil
	}
	blocks, err := decodeBlocks(raw, param)
	if err != nil {
		return "", err
	}
	parts := make([]string, len(blocks))
	for j, b := range blocks {
		if b.Type != "text" {
			p := fmt.Sprintf("%s[%d]", param, j)
			return "", infer.Invalid(p+".type", "%s.type %q is not supported here (only text blocks)", p, b.Type)
		}
		parts[j] = *b.Text
	}
	return strings.Join(parts, "\n"), nil
}

// decodeTools validates tools: client tools with unique, well-formed names and an
// object input_schema.
func decodeTools(in []Tool) ([]chat.Tool, error) {
	if len(in) > maxTools {
		return nil, infer.Invalid("tools", "tools has %d entries; at most %d", len(in), maxTools)
	}
	out := make([]chat.Tool, 0, len(in))
	seen := map[string]bool{}
	for i, t := range in {
		p := fmt.Sprintf("tools[%d]", i)
		if t.Type != "" && t.Type != "custom" {
			return nil, infer.Invalid(p+".type", "%s.type %q is not supported: only client tools (type custom, with an input_schema)", p, t.Type)
		}
		if !validToolName(t.Name) {
			return nil, infer.Invalid(p+".name", "%s.name %q must be 1..%d characters of a-z, A-Z, 0-9, _ and -", p, t.Name, maxToolName)
		}
		if seen[t.Name] {
			return nil, infer.Invalid(p+".name", "%s.name %q is used by two tools", p, t.Name)
		}
		seen[t.Name] = true
		if openai.EmptyJSON(t.InputSchema) {
			return nil, infer.Invalid(p+".input_schema", "%s.input_schema is required: the JSON Schema of the tool's input", p)
		}
		if b := bytes.TrimSpace(t.InputSchema); b[0] != '{' {
			return nil, infer.Invalid(p+".input_schema", "%s.input_schema must be a JSON Schema object", p)
		}
		out = append(out, chat.Tool{Name: t.Name, Description: t.Description, Parameters: t.InputSchema})
	}
	return out, nil
}

func validToolName(s string) bool {
	if s == "" || len(s) > maxToolName {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

// decodeToolChoice maps tool_choice: auto (the default), any (some tool must be
// called), tool (the named one must be), none.
func decodeToolChoice(c *ToolChoice, tools []chat.Tool) (chat.ToolChoice, error) {
	if c == nil {
		return chat.ToolChoice{Mode: chat.ToolAuto}, nil
	}
	switch c.Type {
	case "auto":
		return chat.ToolChoice{Mode: chat.ToolAuto}, nil
	case "none":
		return chat.ToolChoice{Mode: chat.ToolNone}, nil
	case "any":
		if len(tools) == 0 {
			return chat.ToolChoice{}, infer.Invalid("tool_choice", "tool_choice \"any\" needs tools")
		}
		return chat.ToolChoice{Mode: chat.ToolRequired}, nil
	case "tool":
		for _, t := range tools {
			if t.Name == c.Name {
				return chat.ToolChoice{Mode: chat.ToolFunction, Name: c.Name}, nil
			}
		}
		return chat.ToolChoice{}, infer.Invalid("tool_choice.name", "tool_choice names %q, which is not among tools", c.Name)
	}
	return chat.ToolChoice{}, infer.Invalid("tool_choice.type", "tool_choice.type %q is not one of auto, any, tool, none", c.Type)
}
