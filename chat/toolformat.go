package chat

import (
	"fmt"
	"regexp"
	"strings"
)

// ToolFormat is how a model family writes tool calls in its output.
type ToolFormat int

// Tool-call formats.
const (
	// ToolFormatGeneric is a JSON object for models whose template names no
	// format: {"tool_calls": [{"name": N, "arguments": {...}}, ...]}. The template
	// does not teach it: describe it to the model (GenericInstructions).
	ToolFormatGeneric ToolFormat = iota
	// ToolFormatHermes is Hermes-2-Pro's and Qwen 2.5/3's
	// <tool_call>{"name": N, "arguments": {...}}</tool_call>, one tag per call.
	ToolFormatHermes
	// ToolFormatLlama3 is Llama 3.1+'s {"name": N, "parameters": {...}},
	// optionally after <|python_tag|>; one object per call.
	ToolFormatLlama3
	// ToolFormatMistral is Mistral's [TOOL_CALLS][{"name": N, "arguments": {...}}, ...].
	// Its call ids are 9 letters and digits, as Mistral's templates require.
	ToolFormatMistral
)

var toolFormatNames = map[ToolFormat]string{
	ToolFormatGeneric: "generic",
	ToolFormatHermes:  "hermes",
	ToolFormatLlama3:  "llama3",
	ToolFormatMistral: "mistral",
}

// String is the format's configuration name.
func (f ToolFormat) String() string {
	if n, ok := toolFormatNames[f]; ok {
		return n
	}
	return fmt.Sprintf("ToolFormat(%d)", int(f))
}

// ParseToolFormat reads a model's tool_format setting: generic, hermes (also
// qwen), llama3 or mistral.
func ParseToolFormat(name string) (ToolFormat, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "qwen" {
		return ToolFormatHermes, nil
	}
	for f, s := range toolFormatNames {
		if s == n {
			return f, nil
		}
	}
	return 0, fmt.Errorf("tool_format %q is not a known format: use generic, hermes (or qwen), llama3 or mistral", name)
}

// DetectToolFormat tells a model's tool-call format from its chat template
// text; ToolFormatGeneric when the template names none of the others.
func DetectToolFormat(template string) ToolFormat {
	switch {
	case strings.Contains(template, "<tool_call>"):
		return ToolFormatHermes
	case strings.Contains(template, "[TOOL_CALLS]"):
		return ToolFormatMistral
	case strings.Contains(template, "<|python_tag|>"),
		strings.Contains(template, "<|start_header_id|>") && strings.Contains(template, `"parameters"`):
		return ToolFormatLlama3
	}
	return ToolFormatGeneric
}

// trigger is a text that opens tool calls in a format's output.
type trigger struct {
	text string
	// inObject: the trigger is the start of the call object itself.
	inObject bool
}

// formatSpec is the shape of a format's calls around the call objects.
type formatSpec struct {
	triggers []trigger
	// prefix are the literals after the trigger, before the first object.
	prefix []string
	// list: objects are in a JSON array ("[" in prefix, "," between, "]" after);
	// optionalList: a bare object may come instead of the array.
	list, optionalList bool
	// suffix are the literals after the last object (after "]" for a list).
	suffix []string
	// argsKey names the arguments in the call object.
	argsKey string
}

var specs = map[ToolFormat]formatSpec{
	ToolFormatGeneric: {
		triggers: []trigger{{text: `{"tool_calls"`}},
		prefix:   []string{":", "["}, list: true, suffix: []string{"}"}, argsKey: "arguments",
	},
	ToolFormatHermes: {
		triggers: []trigger{{text: "<tool_call>"}},
		suffix:   []string{"</tool_call>"}, argsKey: "arguments",
	},
	ToolFormatLlama3: {
		triggers: []trigger{{text: "<|python_tag|>"}, {text: `{"name"`, inObject: true}},
		argsKey:  "parameters",
	},
	ToolFormatMistral: {
		triggers: []trigger{{text: "[TOOL_CALLS]"}},
		prefix:   []string{"["}, list: true, optionalList: true, argsKey: "arguments",
	},
}

func (f ToolFormat) spec() formatSpec {
	if s, ok := specs[f]; ok {
		return s
	}
	return specs[ToolFormatGeneric]
}

// Triggers are the texts that open tool calls in the model's output: with
// tool_choice auto, start the (lazy) tool grammar when the model writes one.
// Every grammar from Grammar starts with one of them.
func (f ToolFormat) Triggers() []string {
	var out []string
	for _, t := range f.spec().triggers {
		out = append(out, t.text)
	}
	return out
}

// GenericInstructions is a system-prompt text that teaches ToolFormatGeneric to
// a model whose template describes no tool format.
const GenericInstructions = `To call tools, answer with only this JSON object: {"tool_calls": [{"name": "<function name>", "arguments": {<arguments>}}]}`

var (
	ruleName = regexp.MustCompile(`^[a-zA-Z0-9-]+$`)
	toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
)

// Grammar returns GBNF whose root rule matches the tool calls of tools in this
// format: one call, or one or more when parallel. argsRule names, for each
// tool, the rule (defined by the caller, from the tool's parameters schema)
// that its arguments object must match. The rules this adds are root and
// tool-call-*. The root starts with a trigger text (Triggers), so the same
// grammar serves a forced call (tool_choice required or a named function: pass
// only that tool) and a lazy one.
func (f ToolFormat) Grammar(tools []Tool, parallel bool, argsRule func(Tool) (string, error)) (string, error) {
	if len(tools) == 0 {
		return "", fmt.Errorf("tool grammar: no tools")
	}
	sp := f.spec()
	// § stands for the whitespace rule until the end (tool names cannot hold it).
	var alts []string
	for i, t := range tools {
		if !toolName.MatchString(t.Name) {
			return "", fmt.Errorf("tools[%d].function.name %q: use 1 to 64 letters, digits, '_' or '-'", i, t.Name)
		}
		rule, err := argsRule(t)
		if err != nil {
			return "", fmt.Errorf("tool grammar: tools[%d] (%s): %w", i, t.Name, err)
		}
		if !ruleName.MatchString(rule) {
			return "", fmt.Errorf("tool grammar: tools[%d] (%s): %q is not a GBNF rule name", i, t.Name, rule)
		}
		alts = append(alts, gbnfLiteral(quoteJSON(t.Name))+` § "," § `+gbnfLiteral(quoteJSON(sp.argsKey))+` § ":" § `+rule)
	}
	object := `"{" § "\"name\"" § ":" § tool-call-fn § "}"`
	var root, call string
	switch f {
	case ToolFormatHermes:
		call = `"<tool_call>" § ` + object + ` § "</tool_call>"`
		root = many("tool-call", "§", parallel)
	case ToolFormatLlama3:
		call = `"{\"name\"" § ":" § tool-call-fn § "}"`
		root = `"<|python_tag|>"? ` + many("tool-call", "§", parallel)
	case ToolFormatMistral:
		call = object
		root = `"[TOOL_CALLS]" § "[" § ` + many("tool-call", `§ "," §`, parallel) + ` § "]"`
	default:
		call = object
		root = `"{\"tool_calls\"" § ":" § "[" § ` + many("tool-call", `§ "," §`, parallel) + ` § "]" § "}"`
	}
	text := "root ::= " + root + "\n" +
		"tool-call ::= " + call + "\n" +
		"tool-call-fn ::= " + strings.Join(alts, " | ") + "\n" +
		"§ ::= | \" \" | \"\\n\"{1,2} [ \\t]{0,20}\n"
	return strings.ReplaceAll(text, "§", "tool-call-ws"), nil
}

// many is "item" or "item (sep item)*".
func many(item, sep string, repeat bool) string {
	if !repeat {
		return item
	}
	return item + " (" + sep + " " + item + ")*"
}

// quoteJSON is s as a JSON string literal.
func quoteJSON(s string) string {
	var b strings.Builder
	(&pyJSON{}).str(&b, s)
	return b.String()
}

// gbnfLiteral is s as a GBNF string literal.
func gbnfLiteral(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}
