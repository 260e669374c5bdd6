package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

var testTools = []Tool{
	{Name: "get_weather", Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}}}`)},
	{Name: "search_docs"},
}

// outcome is what a response parses into, independent of how it was chunked.
type outcome struct {
	Content, Reasoning string
	Calls              []ToolCall
	// Order lists the event kinds in order, adjacent same-kind events merged.
	Order string
	Err   string
}

// parse feeds text cut at the given positions and checks the events against
// the parser's calls.
func parse(t *testing.T, f ToolFormat, opts ParserOptions, text string, cuts ...int) outcome {
	t.Helper()
	n := 0
	opts.NewID = func() string { n++; return fmt.Sprintf("id%d", n) }
	p := f.NewParser(opts)
	var events []Event
	last := 0
	for _, c := range append(cuts, len(text)) {
		events = append(events, p.Feed(text[last:c])...)
		last = c
	}
	tail, err := p.Close()
	events = append(events, tail...)
	var o outcome
	if err != nil {
		o.Err = err.Error()
	}
	args := map[int]string{}
	var order []string
	for _, e := range events {
		name := map[EventKind]string{EventContent: "content", EventReasoning: "reasoning", EventToolCall: "call", EventToolArgs: "args"}[e.Kind]
		if e.Kind == EventToolCall || len(order) == 0 || order[len(order)-1] != name {
			order = append(order, name)
		}
		switch e.Kind {
		case EventContent:
			o.Content += e.Text
		case EventReasoning:
			o.Reasoning += e.Text
		case EventToolCall:
			if e.Index != len(o.Calls) {
				t.Fatalf("call opened with index %d, want %d", e.Index, len(o.Calls))
			}
			o.Calls = append(o.Calls, ToolCall{ID: e.ID, Name: e.Name})
		case EventToolArgs:
			if e.Index >= len(o.Calls) {
				t.Fatalf("arguments for call %d before it was opened", e.Index)
			}
			args[e.Index] += e.Text
		}
	}
	for i := range o.Calls {
		o.Calls[i].Arguments = args[i]
	}
	if err == nil {
		if got := p.Calls(); !reflect.DeepEqual(got, o.Calls) && (len(got) != 0 || len(o.Calls) != 0) {
			t.Fatalf("Calls() = %+v, events say %+v", got, o.Calls)
		}
		for _, c := range o.Calls {
			if !json.Valid([]byte(c.Arguments)) {
				t.Fatalf("call %s arguments are not valid JSON: %q", c.Name, c.Arguments)
			}
		}
	}
	o.Order = strings.Join(order, ",")
	return o
}

func call(id, name, args string) ToolCall { return ToolCall{ID: id, Name: name, Arguments: args} }

var weatherCall = `{"name": "get_weather", "arguments": {"city": "Paris"}}`

// TestParserCases parses each output whole, then cut at every byte position
// and one byte at a time: the outcome must be the same.
func TestParserCases(t *testing.T) {
	think := &Reasoning{Open: "<think>", Close: "</think>"}
	cases := []struct {
		name   string
		format ToolFormat
		opts   ParserOptions
		text   string
		want   outcome
	}{
		{"hermes one call after text", ToolFormatHermes, ParserOptions{Tools: testTools},
			"Let me check.\n<tool_call>\n" + weatherCall + "\n</tool_call>",
			outcome{Content: "Let me check.", Calls: []ToolCall{call("id1", "get_weather", `{"city": "Paris"}`)}, Order: "content,call,args"}},
		{"hermes parallel calls", ToolFormatHermes, ParserOptions{Tools: testTools},
			"<tool_call>\n" + weatherCall + "\n</tool_call>\n<tool_call>\n{\"name\": \"search_docs\", \"arguments\": {\"query\": \"x\", \"limit\": 3}}\n</tool_call>\n",
			outcome{Calls: []ToolCall{call("id1", "get_weather", `{"city": "Paris"}`), call("id2", "search_docs", `{"query": "x", "limit": 3}`)}, Order: "call,args,call,args"}},
		{"hermes text only keeps trailing newline", ToolFormatHermes, ParserOptions{Tools: testTools},
			"Paris is sunny <tool not a call>\n",
			outcome{Content: "Paris is sunny <tool not a call>\n", Order: "content"}},
		{"qwen3 reasoning then call", ToolFormatHermes, ParserOptions{Tools: testTools, Reasoning: think},
			"<think>\nThe user wants weather.\n</think>\n\n<tool_call>\n" + weatherCall + "\n</tool_call>",
			outcome{Reasoning: "The user wants weather.", Calls: []ToolCall{call("id1", "get_weather", `{"city": "Paris"}`)}, Order: "reasoning,call,args"}},
		{"deepseek prompt opened the thinking", ToolFormatGeneric, ParserOptions{Reasoning: think, InReasoning: true},
			"Two plus two.\nIt is 4.\n</think>\n\nThe answer is 4.",
			outcome{Reasoning: "Two plus two.\nIt is 4.", Content: "The answer is 4.", Order: "reasoning,content"}},
		{"no thinking block although allowed", ToolFormatGeneric, ParserOptions{Reasoning: think},
			"<thin air> is not a tag",
			outcome{Content: "<thin air> is not a tag", Order: "content"}},
		{"reasoning cut off", ToolFormatGeneric, ParserOptions{Reasoning: think},
			"<think>still thinking",
			outcome{Reasoning: "still thinking", Order: "reasoning"}},
		{"llama3 parameters become arguments", ToolFormatLlama3, ParserOptions{Tools: testTools},
			`{"name": "get_weather", "parameters": {"city": "Paris"}}`,
			outcome{Calls: []ToolCall{call("id1", "get_weather", `{"city": "Paris"}`)}, Order: "call,args"}},
		{"llama3 python tag", ToolFormatLlama3, ParserOptions{Tools: testTools},
			`<|python_tag|>{"name": "search_docs", "parameters": {}}`,
			outcome{Calls: []ToolCall{call("id1", "search_docs", `{}`)}, Order: "call,args"}},
		{"mistral two calls", ToolFormatMistral, ParserOptions{Tools: testTools},
			`[TOOL_CALLS][` + weatherCall + `, {"name": "search_docs", "arguments": {"query": "ü"}, "id": "abcdefghi"}]`,
			outcome{Calls: []ToolCall{call("id1", "get_weather", `{"city": "Paris"}`), call("id2", "search_docs", `{"query": "ü"}`)}, Order: "call,args,call,args"}},
		{"mistral bare object", ToolFormatMistral, ParserOptions{Tools: testTools},
			`[TOOL_CALLS] ` + weatherCall,
			outcome{Calls: []ToolCall{call("id1", "get_weather", `{"city": "Paris"}`)}, Order: "call,args"}},
		{"generic", ToolFormatGeneric, ParserOptions{Tools: testTools},
			`{"tool_calls": [` + weatherCall + `]}`,
			outcome{Calls: []ToolCall{call("id1", "get_weather", `{"city": "Paris"}`)}, Order: "call,args"}},
		{"arguments before name", ToolFormatHermes, ParserOptions{Tools: testTools},
			`<tool_call>{"arguments": {"city": "Paris"}, "name": "get_weather"}</tool_call>`,
			outcome{Calls: []ToolCall{call("id1", "get_weather", `{"city": "Paris"}`)}, Order: "call,args"}},
		{"arguments as a JSON string", ToolFormatHermes, ParserOptions{Tools: testTools},
			`<tool_call>{"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}</tool_call>`,
			outcome{Calls: []ToolCall{call("id1", "get_weather", `{"city": "Paris"}`)}, Order: "call,args"}},
		{"closing tag missing at the end", ToolFormatHermes, ParserOptions{Tools: testTools},
			`<tool_call>` + weatherCall,
			outcome{Calls: []ToolCall{call("id1", "get_weather", `{"city": "Paris"}`)}, Order: "call,args"}},
		{"no tools: a call is content", ToolFormatHermes, ParserOptions{},
			`<tool_call>` + weatherCall + `</tool_call>`,
			outcome{Content: `<tool_call>` + weatherCall + `</tool_call>`, Order: "content"}},
		{"not JSON: content", ToolFormatHermes, ParserOptions{Tools: testTools},
			"<tool_call>not json</tool_call> ok",
			outcome{Content: "<tool_call>not json</tool_call> ok", Order: "content"}},
		{"function not offered: content", ToolFormatHermes, ParserOptions{Tools: testTools},
			`<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>`,
			outcome{Content: `<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>`, Order: "content"}},
		{"name not a string: content", ToolFormatLlama3, ParserOptions{Tools: testTools},
			`{"name": 5, "parameters": {}}`,
			outcome{Content: `{"name": 5, "parameters": {}}`, Order: "content"}},
		{"cut inside the arguments: error", ToolFormatHermes, ParserOptions{Tools: testTools},
			`<tool_call>{"name": "get_weather", "arguments": {"city": "Pa`,
			outcome{Calls: []ToolCall{call("id1", "get_weather", `{"city": "Pa`)}, Order: "call,args", Err: "tool call 0 (get_weather): the output ended inside the call"}},
		{"invalid arguments: error", ToolFormatHermes, ParserOptions{Tools: testTools},
			`<tool_call>{"name": "get_weather", "arguments": {"city" 1}}</tool_call>`,
			outcome{Calls: []ToolCall{call("id1", "get_weather", `{"city" 1}`)}, Order: "call,args", Err: "tool call 0 (get_weather): arguments are not a JSON object"}},
		{"unicode content", ToolFormatHermes, ParserOptions{Tools: testTools},
			"Grüße 👋, 你好 <tool_call>" + weatherCall + "</tool_call>",
			outcome{Content: "Grüße 👋, 你好", Calls: []ToolCall{call("id1", "get_weather", `{"city": "Paris"}`)}, Order: "content,call,args"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			whole := parse(t, c.format, c.opts, c.text)
			if !reflect.DeepEqual(whole, c.want) {
				t.Fatalf("parsed whole:\n got %+v\nwant %+v", whole, c.want)
			}
			for i := 1; i < len(c.text); i++ {
				if got := parse(t, c.format, c.opts, c.text, i); !reflect.DeepEqual(got, c.want) {
					t.Fatalf("cut at byte %d (%q | %q):\n got %+v\nwant %+v", i, c.text[:i], c.text[i:], got, c.want)
				}
			}
			bytes := make([]int, 0, len(c.text))
			for i := 1; i < len(c.text); i++ {
				bytes = append(bytes, i)
			}
			if got := parse(t, c.format, c.opts, c.text, bytes...); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("one byte at a time:\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// TestParserHoldsTriggerPrefix: text that may open a call is not sent until
// it is decided, and is sent as content once it is not a trigger.
func TestParserHoldsTriggerPrefix(t *testing.T) {
	p := ToolFormatHermes.NewParser(ParserOptions{Tools: testTools})
	if ev := p.Feed("Sure <tool_"); len(ev) != 1 || ev[0].Text != "Sure" {
		t.Fatalf("events %+v, want only the content before the possible trigger", ev)
	}
	if ev := p.Feed("box>"); len(ev) != 1 || ev[0].Text != " <tool_box>" {
		t.Fatalf("events %+v, want the held text once it is not a trigger", ev)
	}
}

// TestParserStreamsArguments: arguments are sent as they arrive, not at the
// end of the call.
func TestParserStreamsArguments(t *testing.T) {
	p := ToolFormatHermes.NewParser(ParserOptions{Tools: testTools})
	ev := p.Feed(`<tool_call>{"name": "get_weather", "arguments": {"ci`)
	if len(ev) != 2 || ev[0].Kind != EventToolCall || ev[0].Name != "get_weather" || ev[1].Kind != EventToolArgs || ev[1].Text != `{"ci` {
		t.Fatalf("events %+v, want the call opened and the first argument bytes", ev)
	}
	if ev := p.Feed(`ty": "Paris"}}`); len(ev) != 1 || ev[0].Text != `ty": "Paris"}` {
		t.Fatalf("events %+v, want the rest of the arguments", ev)
	}
}

var alnum = regexp.MustCompile(`^[a-zA-Z0-9]+$`)

// TestParserIDs: default ids are call_ and random characters (9 letters and
// digits for Mistral, whose template refuses others), unique per response.
func TestParserIDs(t *testing.T) {
	for _, f := range []ToolFormat{ToolFormatHermes, ToolFormatMistral} {
		p := f.NewParser(ParserOptions{Tools: testTools})
		seen := map[string]bool{}
		for range 200 {
			id := p.newID()
			if seen[id] {
				t.Fatalf("%s: id %s repeated", f, id)
			}
			seen[id] = true
			switch f {
			case ToolFormatMistral:
				if len(id) != 9 || !alnum.MatchString(id) {
					t.Fatalf("mistral id %q: want 9 letters and digits", id)
				}
			default:
				if !strings.HasPrefix(id, "call_") || len(id) != 29 || !alnum.MatchString(id[5:]) {
					t.Fatalf("id %q: want call_ and 24 letters and digits", id)
				}
			}
		}
	}
}

// TestParserErrorType: a call cut after it was sent is a *ToolCallError.
func TestParserErrorType(t *testing.T) {
	p := ToolFormatHermes.NewParser(ParserOptions{Tools: testTools})
	p.Feed(`<tool_call>{"name": "get_weather", "arguments": {`)
	_, err := p.Close()
	var tce *ToolCallError
	if !errors.As(err, &tce) || tce.Index != 0 || tce.Name != "get_weather" {
		t.Fatalf("Close error %v, want a *ToolCallError for call 0", err)
	}
}
