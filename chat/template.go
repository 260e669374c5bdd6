package chat

import (
	"fmt"
	"strings"
	"time"

	"github.com/ardanlabs/jinja"
)

// ChatML is the template used for a model that brings none (a base model), as
// llama-server does: each turn is "<|im_start|>ROLE\nCONTENT<|im_end|>\n", and the
// generation prompt is "<|im_start|>assistant\n". Tools are not described to the
// model by this template.
const ChatML = `{%- for message in messages -%}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%}`

// Limits of one rendering. A template comes from the operator (the model's GGUF
// or a file), not from clients, but a broken one must fail instead of hanging
// the server: these bound its loops, macro recursion and output. A template can
// still build one huge string in few steps (doubling a string in a loop); the
// output limit catches that only once the rendering is done.
const (
	// MaxRenderSteps bounds the loop iterations plus macro calls of one rendering.
	MaxRenderSteps = 1 << 20
	// MaxMacroDepth bounds macro recursion.
	MaxMacroDepth = 64
	// MaxRangeLength bounds range() results.
	MaxRangeLength = 1 << 16
	// MaxPromptBytes bounds the rendered prompt.
	MaxPromptBytes = 64 << 20
)

// Template is a parsed chat template, safe for concurrent use by many renderings.
type Template struct {
	tpl *jinja.Template
}

// ParseTemplate parses a Jinja chat template (a model's tokenizer.chat_template);
// parse it once when the model loads.
func ParseTemplate(src string) (*Template, error) {
	rewritten, err := rewriteTemplate(src)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	tpl, err := jinja.Compile(rewritten)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	return &Template{tpl: tpl}, nil
}

// RenderInput is what a chat template renders, with Hugging Face
// apply_chat_template's names: messages, tools, add_generation_prompt,
// bos_token, eos_token, strftime_now.
type RenderInput struct {
	Messages []Message
	// Tools are offered to the model; none renders tools as none (null), as
	// Hugging Face does.
	Tools               []Tool
	AddGenerationPrompt bool
	// BOS and EOS are the model's special tokens as text.
	BOS, EOS string
	// Now is the clock of strftime_now (time.Now when nil).
	Now func() time.Time
	// Extra are further template variables (chat_template_kwargs, for example
	// enable_thinking); they cannot replace the variables above.
	Extra Vars
}

// TemplateError is a rendering the template itself refused (raise_exception,
// or a type error such as iterating none): the request does not fit the
// model's template, so the API answers 400 with Message.
type TemplateError struct {
	Message string
}

func (e *TemplateError) Error() string { return "chat template: " + e.Message }

// ArgumentsError is an assistant tool call whose arguments are not a JSON
// object (the template needs them as an object).
type ArgumentsError struct {
	// MessageIndex and CallIndex locate the call in RenderInput.Messages.
	MessageIndex, CallIndex int
	Err                     error
}

func (e *ArgumentsError) Error() string {
	return fmt.Sprintf("messages[%d].tool_calls[%d].function.arguments: not a JSON object: %v",
		e.MessageIndex, e.CallIndex, e.Err)
}

func (e *ArgumentsError) Unwrap() error { return e.Err }

// Render renders in into the prompt text. A rendering the template refuses is a
// *TemplateError; invalid tool-call arguments are an *ArgumentsError.
func (t *Template) Render(in RenderInput) (string, error) {
	msgs, err := messagesValue(in.Messages)
	if err != nil {
		return "", err
	}
	tools, err := toolsValue(in.Tools)
	if err != nil {
		return "", err
	}
	st := &renderState{now: in.Now}
	if st.now == nil {
		st.now = time.Now
	}
	data := make(map[string]jinja.Value, len(in.Extra)+12)
	for k, v := range in.Extra {
		data[k] = jinja.FromGoValue(v)
	}
	data["messages"] = msgs
	data["tools"] = tools
	data["add_generation_prompt"] = jinja.NewBool(in.AddGenerationPrompt)
	data["bos_token"] = jinja.NewString(in.BOS)
	data["eos_token"] = jinja.NewString(in.EOS)
	st.install(data)
	out, err := t.tpl.RenderValues(data)
	if st.raised != nil {
		return "", st.raised
	}
	if st.limited != nil {
		return "", fmt.Errorf("chat template: %w", st.limited)
	}
	if err != nil {
		return "", &TemplateError{Message: err.Error()}
	}
	if len(out) > MaxPromptBytes {
		return "", fmt.Errorf("chat template: rendered prompt is %d bytes, over the %d-byte limit", len(out), MaxPromptBytes)
	}
	return out, nil
}

// limitError is a rendering stopped by one of the limits above: a broken
// template, not a bad request.
type limitError struct{ what string }

func (e *limitError) Error() string { return "rendering stopped: " + e.what }

// renderState holds one rendering's functions and counters.
type renderState struct {
	now    func() time.Time
	raised *TemplateError
	// limited is the limit that stopped the rendering.
	limited *limitError
	steps   int
	depth   int
}

func (st *renderState) step(n int) error {
	st.steps += n
	if st.steps > MaxRenderSteps {
		return st.limit(fmt.Sprintf("more than %d loop iterations and macro calls", MaxRenderSteps))
	}
	return nil
}

func (st *renderState) limit(what string) error {
	st.limited = &limitError{what}
	return st.limited
}

type callable = func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error)

// install puts the template's global functions into data.
func (st *renderState) install(data map[string]jinja.Value) {
	fns := map[string]callable{
		"raise_exception": func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			msg := "raise_exception called"
			if len(args) > 0 {
				msg = printable(args[0])
			}
			st.raised = &TemplateError{Message: msg}
			return jinja.Undefined(), st.raised
		},
		"strftime_now": func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			format := "%Y-%m-%d"
			if len(args) > 0 && args[0].IsString() {
				format = args[0].AsString()
			}
			return jinja.NewString(strftime(st.now(), format)), nil
		},
		"range": st.rangeFn,
		fnToJSON: func(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
			if len(args) == 0 {
				return jinja.NewString(""), nil
			}
			enc, err := newPyJSON(kwargs)
			if err != nil {
				return jinja.Undefined(), err
			}
			var b strings.Builder
			if err := enc.encode(&b, args[0], 0); err != nil {
				return jinja.Undefined(), err
			}
			return jinja.NewString(b.String()), nil
		},
		fnIter: func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			if len(args) != 1 {
				return jinja.NewList(args), st.step(len(args))
			}
			v := args[0]
			switch {
			case v.IsList():
				return v, st.step(v.AsList().Len())
			case v.IsDict():
				return v, st.step(v.AsDict().Len())
			case v.IsString():
				return v, st.step(len(v.AsString()))
			case v.IsUndefined():
				return v, nil
			}
			return jinja.Undefined(), fmt.Errorf("TypeError: %s object is not iterable", pyTypeName(v))
		},
		fnEnter: func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
			st.depth++
			if st.depth > MaxMacroDepth {
				return jinja.Undefined(), st.limit(fmt.Sprintf("macro calls nested deeper than %d", MaxMacroDepth))
			}
			return jinja.None(), st.step(1)
		},
		fnLeave: func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
			st.depth--
			return jinja.None(), nil
		},
	}
	for name, fn := range fns {
		data[name] = jinja.NewCallable(name, fn)
	}
}

func (st *renderState) rangeFn(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	var n [3]int64
	for i, a := range args {
		if i >= 3 || !a.IsInt() {
			return jinja.Undefined(), fmt.Errorf("TypeError: range takes 1 to 3 integers")
		}
		n[i] = a.AsInt()
	}
	start, stop, step := int64(0), n[0], int64(1)
	switch len(args) {
	case 0:
		return jinja.Undefined(), fmt.Errorf("TypeError: range expected at least 1 argument")
	case 2:
		start, stop = n[0], n[1]
	case 3:
		start, stop, step = n[0], n[1], n[2]
	}
	if step == 0 {
		return jinja.Undefined(), fmt.Errorf("ValueError: range() arg 3 must not be zero")
	}
	count := int64(0)
	if step > 0 && stop > start {
		count = (stop - start + step - 1) / step
	} else if step < 0 && stop < start {
		count = (start - stop - step - 1) / -step
	}
	if count > MaxRangeLength {
		return jinja.Undefined(), st.limit(fmt.Sprintf("range of %d items, over %d", count, MaxRangeLength))
	}
	items := make([]jinja.Value, count)
	for i := range items {
		items[i] = jinja.NewInt(start + int64(i)*step)
	}
	return jinja.NewList(items), nil
}

// printable is how Jinja prints a value: strings as they are, others as Python.
func printable(v jinja.Value) string {
	if v.IsString() {
		return v.AsString()
	}
	return v.String()
}

func pyTypeName(v jinja.Value) string {
	switch {
	case v.IsNone():
		return "'NoneType'"
	case v.IsBool():
		return "'bool'"
	case v.IsInt():
		return "'int'"
	case v.IsFloat():
		return "'float'"
	}
	return "this"
}

// messagesValue gives the messages to the template with the field names chat
// templates read: role, content, name, tool_calls[{id, type, function: {name,
// arguments}}] with arguments as an object, tool_call_id, reasoning_content.
func messagesValue(msgs []Message) (jinja.Value, error) {
	items := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		d := jinja.NewDict()
		md := d.AsDict()
		md.Set("role", jinja.NewString(m.Role))
		md.Set("content", jinja.NewString(m.Content))
		if m.Name != "" {
			md.Set("name", jinja.NewString(m.Name))
		}
		if m.Reasoning != "" {
			md.Set("reasoning_content", jinja.NewString(m.Reasoning))
		}
		if len(m.ToolCalls) > 0 {
			calls := make([]jinja.Value, len(m.ToolCalls))
			for j, c := range m.ToolCalls {
				args, err := jsonValue([]byte(c.Arguments))
				if err == nil && !args.IsDict() {
					err = fmt.Errorf("got %s", strings.TrimSpace(c.Arguments))
				}
				if err != nil {
					return jinja.Undefined(), &ArgumentsError{MessageIndex: i, CallIndex: j, Err: err}
				}
				fn := jinja.NewDict()
				fn.AsDict().Set("name", jinja.NewString(c.Name))
				fn.AsDict().Set("arguments", args)
				call := jinja.NewDict()
				call.AsDict().Set("id", jinja.NewString(c.ID))
				call.AsDict().Set("type", jinja.NewString("function"))
				call.AsDict().Set("function", fn)
				calls[j] = call
			}
			md.Set("tool_calls", jinja.NewList(calls))
		}
		if m.ToolCallID != "" {
			md.Set("tool_call_id", jinja.NewString(m.ToolCallID))
		}
		items[i] = d
	}
	return jinja.NewList(items), nil
}

// toolsValue gives the tools as OpenAI's [{type: function, function: {name,
// description, parameters}}], parameters in their own key order; none is none.
func toolsValue(tools []Tool) (jinja.Value, error) {
	if len(tools) == 0 {
		return jinja.None(), nil
	}
	items := make([]jinja.Value, len(tools))
	for i, t := range tools {
		fn := jinja.NewDict()
		fn.AsDict().Set("name", jinja.NewString(t.Name))
		if t.Description != "" {
			fn.AsDict().Set("description", jinja.NewString(t.Description))
		}
		params := []byte(t.Parameters)
		if len(params) == 0 {
			params = []byte(`{"type": "object", "properties": {}}`)
		}
		pv, err := jsonValue(params)
		if err != nil {
			return jinja.Undefined(), fmt.Errorf("tools[%d].function.parameters: invalid JSON: %w", i, err)
		}
		fn.AsDict().Set("parameters", pv)
		tool := jinja.NewDict()
		tool.AsDict().Set("type", jinja.NewString("function"))
		tool.AsDict().Set("function", fn)
		items[i] = tool
	}
	return jinja.NewList(items), nil
}

// strftime formats t with a Python strftime format (the directives chat
// templates use; others are kept as written).
func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			b.WriteByte(format[i])
			continue
		}
		i++
		switch format[i] {
		case 'Y':
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			fmt.Fprintf(&b, "%02d", (t.Hour()+11)%12+1)
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'p':
			b.WriteString(t.Format("PM"))
		case 'b', 'h':
			b.WriteString(t.Format("Jan"))
		case 'B':
			b.WriteString(t.Format("January"))
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'A':
			b.WriteString(t.Format("Monday"))
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'Z':
			b.WriteString(t.Format("MST"))
		case 'z':
			b.WriteString(t.Format("-0700"))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}
