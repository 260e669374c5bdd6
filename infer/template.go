package infer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/config"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/service"
)

// Chat template origins (Model.ChatTemplate).
const (
	TemplateOriginGGUF    = "gguf"
	TemplateOriginFile    = "file"
	TemplateOriginBuiltin = "builtin:" // followed by the llama.cpp template name
	TemplateOriginDefault = "default:" + service.DefaultTemplateName
)

// toolUseVariant is the GGUF's named template for requests with tools.
const toolUseVariant = "tool_use"

// variant is one parsed chat template with what it tells about the model's output.
type variant struct {
	tpl *chat.Template
	// format is how the model writes tool calls (the config's tool_format, else
	// detected from the template's text).
	format chat.ToolFormat
	// reasoning is the model's thinking block, nil when its template has none.
	reasoning *chat.Reasoning
}

// chatTemplate is how Local renders one model's conversations: its Jinja templates
// parsed once, or llama.cpp's built-in template named in the config (main nil).
type chatTemplate struct {
	origin  string
	main    *variant
	toolUse *variant // nil when the model has no tool_use variant
	// bos and eos are the vocabulary's special tokens as text; addBOS: the tokenizer
	// adds BOS itself.
	bos, eos string
	addBOS   bool
	// vars are the config's chat_template_kwargs, under each request's.
	vars chat.Vars
}

// loadTemplate parses the model's chat templates: the config's file, else its
// built-in name (rendered by llama.cpp), else the GGUF's own (and its tool_use
// variant), else ChatML.
func loadTemplate(src service.TemplateSource, cfg config.Model, info engine.ModelInfo) (*chatTemplate, error) {
	vars, err := chat.VarsOf(cfg.ChatTemplateKwargs)
	if err != nil {
		return nil, fmt.Errorf("model %s: chat_template_kwargs: %w", cfg.Name, err)
	}
	t := &chatTemplate{bos: info.BOSText, eos: info.EOSText, addBOS: info.AddBOS, vars: vars}
	text := src.Text
	switch src.Origin {
	case service.TemplateBuiltin:
		t.origin = TemplateOriginBuiltin + src.Text
		return t, nil
	case service.TemplateFromFile:
		t.origin = TemplateOriginFile
	case service.TemplateFromGGUF:
		t.origin = TemplateOriginGGUF
	default:
		t.origin, text = TemplateOriginDefault, chat.ChatML
	}
	if t.main, err = parseVariant(text, cfg.ToolFormat); err != nil {
		return nil, fmt.Errorf("model %s: its %s chat template: %w", cfg.Name, t.origin, err)
	}
	if tu, ok := src.Variants[toolUseVariant]; ok && src.Origin == service.TemplateFromGGUF {
		if t.toolUse, err = parseVariant(tu, cfg.ToolFormat); err != nil {
			return nil, fmt.Errorf("model %s: its %s chat template: %w", cfg.Name, toolUseVariant, err)
		}
	}
	return t, nil
}

func parseVariant(text, toolFormat string) (*variant, error) {
	tpl, err := chat.ParseTemplate(text)
	if err != nil {
		return nil, err
	}
	v := &variant{tpl: tpl, format: chat.DetectToolFormat(text), reasoning: chat.DetectReasoning(text)}
	if toolFormat != "" && toolFormat != config.DefaultToolFormat {
		if v.format, err = chat.ParseToolFormat(toolFormat); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// rendering is a rendered conversation and what reads the model's answer to it.
type rendering struct {
	text string
	// format and reasoning are those of the template that rendered it.
	format    chat.ToolFormat
	reasoning *chat.Reasoning
}

// render renders msgs and tools. teach: the model may call tools, so a template that
// describes no call format gets the generic format's instructions in a system
// message. Errors are *Error (InvalidArgument for what the template refuses).
func (t *chatTemplate) render(b Backend, msgs []chat.Message, tools []chat.Tool, vars chat.Vars, addGen, teach bool) (rendering, error) {
	v := t.main
	if len(tools) > 0 && t.toolUse != nil {
		v = t.toolUse
	}
	if v == nil { // llama.cpp's built-in template
		if len(vars) > 0 { // fail closed: a variable it cannot read is refused, not dropped
			return rendering{}, Invalid("chat_template_kwargs", "model %s uses llama.cpp's built-in %s template, which takes no template variables; remove chat_template_kwargs or give the model a Jinja template (chat_template_file)",
				b.Name(), strings.TrimPrefix(t.origin, TemplateOriginBuiltin))
		}
		return t.renderBuiltin(b, msgs, tools, addGen, teach)
	}
	if teach && len(tools) > 0 && v.format == chat.ToolFormatGeneric {
		msgs = withToolInstructions(msgs, tools)
	}
	text, err := v.tpl.Render(chat.RenderInput{Messages: msgs, Tools: tools, AddGenerationPrompt: addGen, BOS: t.bos, EOS: t.eos, Extra: vars})
	if err != nil {
		return rendering{}, templateError(err)
	}
	return rendering{text: text, format: v.format, reasoning: v.reasoning}, nil
}

// renderBuiltin renders with llama.cpp's built-in template, which knows roles and
// contents only: tools are described in a system message, calls in the history as
// their JSON.
func (t *chatTemplate) renderBuiltin(b Backend, msgs []chat.Message, tools []chat.Tool, addGen, teach bool) (rendering, error) {
	if !addGen {
		return rendering{}, Invalid("add_generation_prompt", "model %s uses llama.cpp's built-in %s template, which always adds the generation prompt",
			b.Name(), strings.TrimPrefix(t.origin, TemplateOriginBuiltin))
	}
	if teach && len(tools) > 0 {
		msgs = withToolInstructions(msgs, tools)
	}
	in := make([]engine.ChatMessage, len(msgs))
	for i, m := range msgs {
		content := m.Content
		for _, c := range m.ToolCalls {
			content += "\n" + generic([]chat.ToolCall{c})
		}
		in[i] = engine.ChatMessage{Role: m.Role, Content: content}
	}
	text, err := b.RenderChat(in)
	if err != nil {
		return rendering{}, AsError(err, "messages")
	}
	return rendering{text: text, format: chat.ToolFormatGeneric}, nil
}

// generic is calls written in the generic tool-call format.
func generic(calls []chat.ToolCall) string {
	type call struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	out := struct {
		ToolCalls []call `json:"tool_calls"`
	}{}
	for _, c := range calls {
		args := json.RawMessage(c.Arguments)
		if !json.Valid(args) {
			args = json.RawMessage("{}")
		}
		out.ToolCalls = append(out.ToolCalls, call{Name: c.Name, Arguments: args})
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// withToolInstructions adds the generic format's instructions and the tools to the
// conversation's system message (a new one first when it has none).
func withToolInstructions(msgs []chat.Message, tools []chat.Tool) []chat.Message {
	type fn struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
	}
	var b strings.Builder
	b.WriteString(chat.GenericInstructions)
	b.WriteString("\n\nAvailable tools:")
	for _, t := range tools {
		j, _ := json.Marshal(fn{Name: t.Name, Description: t.Description, Parameters: t.Parameters})
		b.WriteString("\n")
		b.Write(j)
	}
	out := make([]chat.Message, 0, len(msgs)+1)
	if len(msgs) > 0 && msgs[0].Role == chat.RoleSystem {
		sys := msgs[0]
		sys.Content += "\n\n" + b.String()
		return append(append(out, sys), msgs[1:]...)
	}
	return append(append(out, chat.Message{Role: chat.RoleSystem, Content: b.String()}), msgs...)
}

// tokenizerText is the prompt as the tokenizer should see it: without a leading BOS
// text when the tokenizer adds BOS itself (as llama-server does), so that the prompt
// does not start with two.
func (t *chatTemplate) tokenizerText(prompt string, addSpecial bool) string {
	if addSpecial && t.addBOS && t.bos != "" {
		return strings.TrimPrefix(prompt, t.bos)
	}
	return prompt
}

// templateError classifies a rendering error: what the template refuses is the
// request's fault (400), a template that broke a limit is the server's.
func templateError(err error) *Error {
	var te *chat.TemplateError
	var ae *chat.ArgumentsError
	switch {
	case errors.As(err, &te):
		return &Error{Kind: InvalidArgument, Param: "messages", Code: "chat_template_error", Message: err.Error(), Err: err}
	case errors.As(err, &ae):
		return &Error{Kind: InvalidArgument, Param: fmt.Sprintf("messages[%d].tool_calls[%d].function.arguments", ae.MessageIndex, ae.CallIndex),
			Message: err.Error(), Err: err}
	case strings.HasPrefix(err.Error(), "tools["):
		return &Error{Kind: InvalidArgument, Param: "tools", Message: err.Error(), Err: err}
	}
	return AsError(fmt.Errorf("rendering the chat template: %w", err), "messages")
}
