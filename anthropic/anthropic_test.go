package anthropic

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/infer"
)

// TestDecodeRejects: every invalid request is an InvalidArgument naming the field in
// Anthropic's terms.
func TestDecodeRejects(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	for _, c := range []struct{ body, param string }{
		{`[]`, ""},
		{`{` + msgs + `}`, "max_tokens"},
		{`{"max_tokens":0,` + msgs + `}`, "max_tokens"},
		{`{"max_tokens":8,"messages":[]}`, "messages"},
		{`{"max_tokens":8,"temperature":-0.1,` + msgs + `}`, "temperature"},
		{`{"max_tokens":8,"top_p":2,` + msgs + `}`, "top_p"},
		{`{"max_tokens":8,"top_k":-1,` + msgs + `}`, "top_k"},
		{`{"max_tokens":8,"stop_sequences":[""],` + msgs + `}`, "stop_sequences[0]"},
		{`{"max_tokens":8,"thinking":{"type":"maybe"},` + msgs + `}`, "thinking.type"},
		{`{"max_tokens":8,"output_config":{"format":{"type":"xml"}},` + msgs + `}`, "output_config.format.type"},
		{`{"max_tokens":8,"messages":[{"role":"tool","content":"x"}]}`, "messages[0].role"},
		{`{"max_tokens":8,"messages":[{"role":"user"}]}`, "messages[0].content"},
		{`{"max_tokens":8,"messages":[{"role":"user","content":[{"type":"text"}]}]}`, "messages[0].content[0].text"},
		{`{"max_tokens":8,"messages":[{"role":"user","content":"a\u0000b"}]}`, "messages[0].content"},
		{`{"max_tokens":8,"messages":[{"role":"user","content":[{"type":"tool_use","id":"t","name":"f"}]}]}`, "messages[0].content[0].type"},
		{`{"max_tokens":8,"messages":[{"role":"assistant","content":[{"type":"tool_use","name":"f"}]}]}`, "messages[0].content[0].id"},
		{`{"max_tokens":8,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":[1]}]}]}`, "messages[0].content[0].input"},
		{`{"max_tokens":8,"messages":[{"role":"user","content":[{"type":"tool_result"}]}]}`, "messages[0].content[0].tool_use_id"},
		{`{"max_tokens":8,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image"}]}]}]}`,
			"messages[0].content[0].content[0].type"},
		{`{"max_tokens":8,"system":[{"type":"image"}],` + msgs + `}`, "system[0].type"},
		{`{"max_tokens":8,"tools":[{"name":"bad name","input_schema":{}}],` + msgs + `}`, "tools[0].name"},
		{`{"max_tokens":8,"tools":[{"type":"web_search_20250305","name":"w"}],` + msgs + `}`, "tools[0].type"},
		{`{"max_tokens":8,"tools":[{"name":"f","input_schema":{}},{"name":"f","input_schema":{}}],` + msgs + `}`, "tools[1].name"},
		{`{"max_tokens":8,"tools":[{"name":"f","input_schema":"x"}],` + msgs + `}`, "tools[0].input_schema"},
		{`{"max_tokens":8,"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"tool","name":"g"},` + msgs + `}`, "tool_choice.name"},
		{`{"max_tokens":8,"tool_choice":{"type":"sometimes"},` + msgs + `}`, "tool_choice.type"},
	} {
		_, err := DecodeMessages([]byte(c.body))
		var e *infer.Error
		if !errors.As(err, &e) || e.Kind != infer.InvalidArgument || e.Param != c.param {
			t.Errorf("%s: got %v, want an invalid argument naming %q", c.body, err, c.param)
		}
	}
}

// TestDecodeConversation: the system prompt (string, blocks, or a system message),
// text blocks, tool_result blocks in their place among a user's text, an assistant's
// thinking and tool_use blocks, and the tool settings.
func TestDecodeConversation(t *testing.T) {
	r, err := DecodeMessages([]byte(`{"model":"m","max_tokens":8,"system":[{"type":"text","text":"a"},{"type":"text","text":"b"}],
		"messages":[
			{"role":"user","content":"q"},
			{"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"text","text":"t"},
				{"type":"tool_use","id":"toolu_1","name":"f","input":{"x":1}},{"type":"tool_use","id":"toolu_2","name":"f"}]},
			{"role":"user","content":[{"type":"text","text":"before"},{"type":"tool_result","tool_use_id":"toolu_1","content":"one"},
				{"type":"tool_result","tool_use_id":"toolu_2","is_error":true,"content":[{"type":"text","text":"failed"}]},
				{"type":"text","text":"after"}]},
			{"role":"system","content":"late"}],
		"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true},
		"metadata":{"user_id":"u"},"output_config":{"format":{"type":"json_schema","schema":{"type":"object"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []chat.Message{
		{Role: chat.RoleSystem, Content: "a\nb"},
		{Role: chat.RoleUser, Content: "q"},
		{Role: chat.RoleAssistant, Content: "t", Reasoning: "hmm", ToolCalls: []chat.ToolCall{
			{ID: "toolu_1", Name: "f", Arguments: `{"x":1}`}, {ID: "toolu_2", Name: "f", Arguments: `{}`}}},
		{Role: chat.RoleUser, Content: "before"},
		{Role: chat.RoleTool, Content: "one", ToolCallID: "toolu_1"},
		{Role: chat.RoleTool, Content: "Error: failed", ToolCallID: "toolu_2"},
		{Role: chat.RoleUser, Content: "after"},
		{Role: chat.RoleSystem, Content: "late"},
	}
	got, _ := json.Marshal(r.Messages)
	if w, _ := json.Marshal(want); string(got) != string(w) {
		t.Errorf("messages\n got %s\nwant %s", got, w)
	}
	if r.ToolChoice.Mode != chat.ToolRequired || r.ParallelToolCalls || len(r.Tools) != 1 ||
		r.Format.Type != infer.FormatJSONSchema || r.Sampling.Temperature != 1 || r.MaxTokens != 8 {
		t.Errorf("choice %+v parallel %v tools %d format %+v params %+v", r.ToolChoice, r.ParallelToolCalls, len(r.Tools), r.Format, r.GenParams)
	}
	tr, err := DecodeCountTokens([]byte(`{"model":"m","messages":[{"role":"user","content":"q"}],"tools":[{"name":"f","input_schema":{}}]}`))
	if err != nil || !tr.AddSpecial || len(tr.Messages) != 1 || len(tr.Tools) != 1 {
		t.Errorf("count_tokens: %+v %v", tr, err)
	}
}

// TestErrorTable: every kind has its own row; statuses and types follow Anthropic
// (529 overloaded_error), and the field at fault is named in the message.
func TestErrorTable(t *testing.T) {
	for k := infer.Internal; k <= infer.Cancelled; k++ {
		if _, ok := errorKinds[k]; !ok {
			t.Errorf("kind %s has no row", k)
		}
	}
	for _, c := range []struct {
		err    error
		status int
		typ    string
	}{
		{infer.Invalid("max_tokens", "is required"), 400, TypeInvalidRequest},
		{infer.ModelNotFound("x"), 404, TypeNotFound},
		{&infer.Error{Kind: infer.Unauthenticated, Message: "no"}, 401, TypeAuthentication},
		{&infer.Error{Kind: infer.Overloaded, Message: "full"}, 529, TypeOverloaded},
		{&infer.Error{Kind: infer.QuotaExceeded, Message: "budget"}, 429, TypeRateLimit},
		{&infer.Error{Kind: infer.DeadlineExceeded, Message: "late"}, 504, TypeTimeout},
		{errors.New("boom"), 500, TypeAPI},
	} {
		status, body := ErrorOf(c.err)
		if status != c.status || body.Type != "error" || body.Error.Type != c.typ || body.Error.Message == "" {
			t.Errorf("%v: %d %+v", c.err, status, body)
		}
	}
	if _, body := ErrorOf(infer.Invalid("max_tokens", "is required")); !strings.HasPrefix(body.Error.Message, "max_tokens: ") {
		t.Errorf("param not named: %q", body.Error.Message)
	}
}

// TestStopReasons: the core's finish and matched stop string as stop_reason and
// stop_sequence.
func TestStopReasons(t *testing.T) {
	for _, c := range []struct {
		finish infer.FinishReason
		stop   string
		reason string
		seq    any
	}{
		{infer.FinishStop, "", StopEndTurn, nil},
		{infer.FinishStop, "END", StopSequence, "END"},
		{infer.FinishLength, "", StopMaxTokens, nil},
		{infer.FinishToolCalls, "", StopToolUse, nil},
	} {
		r, s := reason(c.finish, c.stop)
		var seq any
		if s != nil {
			seq = *s
		}
		if *r != c.reason || seq != c.seq {
			t.Errorf("%v %q: %q %v", c.finish, c.stop, *r, seq)
		}
	}
	// A collected call cut by max_tokens has the input {}; a broken one otherwise is
	// the server's error.
	cut := &infer.Result{Choices: []infer.ChoiceResult{{Finish: infer.FinishLength,
		ToolCalls: []chat.ToolCall{{ID: "c", Name: "f", Arguments: `{"x":`}}}}}
	m, err := NewStream("m").Response(cut)
	if err != nil || len(m.Content) != 1 || string(m.Content[0].Input) != "{}" || *m.StopReason != StopMaxTokens {
		t.Errorf("cut call: %+v %v", m, err)
	}
	cut.Choices[0].Finish = infer.FinishToolCalls
	if _, err := NewStream("m").Response(cut); infer.KindOf(err) != infer.Internal {
		t.Errorf("broken call: %v", err)
	}
}
