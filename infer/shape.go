package infer

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/engine"
	"github.com/hxp-ai/hxp/grammar"
)

// SchemaParam is the request field blamed for a JSON schema the grammar converter
// refuses.
const SchemaParam = "response_format.json_schema.schema"

// shape is how a request's output is constrained (a grammar, lazy when it has
// triggers) and read back (a parser of tool calls and reasoning per choice).
type shape struct {
	grammar  string
	triggers []string
	// renderSpecial: the parser reads control tokens (a tool-call trigger that is
	// one, such as "[TOOL_CALLS]").
	renderSpecial bool
	// parse makes each choice's parser; nil: the output is content as generated.
	parse func() *chat.Parser
}

// sampling is s with the shape's grammar.
func (sh *shape) sampling(s engine.SamplingParams) engine.SamplingParams {
	s.Grammar, s.GrammarTriggers = sh.grammar, sh.triggers
	return s
}

// formatShape constrains the output to the request's response_format, for raw
// completions.
func formatShape(f Format) (*shape, error) {
	b := grammar.NewBuilder()
	rule, err := formatRule(b, f)
	if err != nil || rule == "" {
		return &shape{}, err
	}
	b.SetRoot(rule)
	g, err := b.Grammar()
	if err != nil {
		return nil, AsError(err, SchemaParam)
	}
	return &shape{grammar: g}, nil
}

// formatRule adds the rules of response_format to b and returns the name of the one
// matching the whole output; "" for text.
func formatRule(b *grammar.Builder, f Format) (string, error) {
	schema := []byte(`{"type": "object"}`) // json_object: any object
	switch f.Type {
	case FormatText:
		return "", nil
	case FormatJSONSchema:
		schema = f.Schema
	}
	rule, err := b.AddSchema("response", schema)
	if err != nil {
		return "", schemaError(err, SchemaParam)
	}
	return rule, nil
}

// schemaError is a schema the converter refuses, blamed on param (fail closed).
func schemaError(err error, param string) *Error {
	var ue *grammar.UnsupportedError
	var ie *grammar.InvalidError
	if errors.As(err, &ue) || errors.As(err, &ie) {
		return &Error{Kind: InvalidArgument, Param: param, Code: "unsupported_schema", Message: err.Error(), Err: err}
	}
	return AsError(err, param)
}

// chatShape is the shape of a chat request's answer to the rendered prompt rd:
//   - tool_choice none (or no tools): the format's grammar, if any; no calls parsed;
//   - required or a named function: the tool-call grammar from the first token;
//   - auto: the tool-call grammar, lazy on the format's trigger texts; with a
//     response_format, the calls or the format's JSON from the first token;
//   - a prompt that opened a thinking block: the grammar, lazy on the block's end.
func chatShape(r *ChatRequest, rd rendering) (*shape, error) {
	calls := len(r.Tools) > 0 && r.ToolChoice.Mode != chat.ToolNone
	forced := calls && (r.ToolChoice.Mode == chat.ToolRequired || r.ToolChoice.Mode == chat.ToolFunction)
	if forced && r.Format.Type != FormatText {
		return nil, Invalid("response_format", "response_format cannot be combined with tool_choice %q: the answer is a tool call",
			choiceName(r.ToolChoice))
	}
	b := grammar.NewBuilder()
	root, err := formatRule(b, r.Format)
	if err != nil {
		return nil, err
	}
	sh := &shape{}
	var offered []chat.Tool
	if calls {
		offered = r.Tools
		if r.ToolChoice.Mode == chat.ToolFunction {
			offered = nil
			for _, t := range r.Tools {
				if t.Name == r.ToolChoice.Name {
					offered = append(offered, t)
				}
			}
		}
		tools, err := toolRoot(b, rd.format, r.Tools, offered, r.ParallelToolCalls)
		if err != nil {
			return nil, err
		}
		switch {
		case root != "":
			root = tools + " | " + root
		case !forced:
			sh.triggers = []string{engine.TriggerPattern(rd.format.Triggers()...)}
			root = tools
		default:
			root = tools
		}
		sh.renderSpecial = rd.format == chat.ToolFormatLlama3 || rd.format == chat.ToolFormatMistral
	}
	inThought := rd.reasoning.PromptOpens(rd.text)
	if root != "" {
		if inThought && len(sh.triggers) == 0 {
			// The answer comes after the thinking block: constrain it from there.
			sh.triggers = []string{`[\s\S]*?` + regexp.QuoteMeta(rd.reasoning.Close) + `([\s\S]*)`}
			root = `[ \t\n]{0,4} (` + root + `)`
		}
		b.SetRoot(root)
		if sh.grammar, err = b.Grammar(); err != nil {
			return nil, AsError(err, "tools")
		}
	}
	if calls || rd.reasoning != nil {
		opts := chat.ParserOptions{Tools: offered, Reasoning: rd.reasoning, InReasoning: inThought}
		format := rd.format
		sh.parse = func() *chat.Parser { return format.NewParser(opts) }
	}
	return sh, nil
}

func choiceName(c chat.ToolChoice) string {
	if c.Mode == chat.ToolFunction {
		return "function " + c.Name
	}
	return "required"
}

// toolRoot adds to b the rules of offered's calls in format f (each tool's
// arguments from its parameters schema) and returns the body of the rule matching
// the calls. all are the request's tools, for naming the one at fault.
func toolRoot(b *grammar.Builder, f chat.ToolFormat, all, offered []chat.Tool, parallel bool) (string, error) {
	args := map[string]string{}
	for i, t := range all {
		if !contains(offered, t.Name) {
			continue
		}
		params := []byte(t.Parameters)
		if len(params) == 0 {
			params = []byte(`{"type": "object", "properties": {}}`)
		}
		rule, err := b.AddSchema("tool-"+t.Name+"-args", params)
		if err != nil {
			return "", schemaError(err, fmt.Sprintf("tools[%d].function.parameters", i))
		}
		args[t.Name] = rule
	}
	text, err := f.Grammar(offered, parallel, func(t chat.Tool) (string, error) { return args[t.Name], nil })
	if err != nil {
		return "", Invalid("tools", "%v", err)
	}
	var root string
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		name, body, _ := strings.Cut(line, " ::= ")
		if name == "root" {
			root = body
			continue
		}
		if got := b.AddRule(name, body); got != name {
			return "", AsError(fmt.Errorf("tool grammar: rule %s is taken (renamed %s)", name, got), "tools")
		}
	}
	return root, nil
}

func contains(tools []chat.Tool, name string) bool {
	for _, t := range tools {
		if t.Name == name {
			return true
		}
	}
	return false
}

// reader turns one choice's generated text into events through its parser.
type reader struct {
	p *chat.Parser
}

// feed parses text into out.
func (rd *reader) feed(out *Event, text string) {
	if rd.p == nil {
		out.Text += text
		return
	}
	apply(out, rd.p.Feed(text))
}

// close ends the choice's output into its last event: calls make the finish
// tool_calls; a call cut by max_tokens keeps length; one left unfinished otherwise
// fails the choice.
func (rd *reader) close(out *Event) {
	if rd.p == nil {
		return
	}
	evs, err := rd.p.Close()
	apply(out, evs)
	switch {
	case err != nil && out.Finish != FinishLength && out.Err == nil:
		out.Err = Errorf(Internal, "", "the model's output ended inside a tool call: %v", err)
	case err == nil && len(rd.p.Calls()) > 0 && out.Finish == FinishStop:
		out.Finish = FinishToolCalls
	}
}

// apply adds parser events to out.
func apply(out *Event, evs []chat.Event) {
	for _, e := range evs {
		switch e.Kind {
		case chat.EventContent:
			out.Text += e.Text
		case chat.EventReasoning:
			out.Reasoning += e.Text
		case chat.EventToolCall:
			out.ToolCalls = append(out.ToolCalls, ToolCallDelta{Index: e.Index, ID: e.ID, Name: e.Name})
		case chat.EventToolArgs:
			if n := len(out.ToolCalls); n > 0 && out.ToolCalls[n-1].Index == e.Index {
				out.ToolCalls[n-1].Arguments += e.Text
			} else {
				out.ToolCalls = append(out.ToolCalls, ToolCallDelta{Index: e.Index, Arguments: e.Text})
			}
		}
	}
}
