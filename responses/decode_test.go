package responses

import (
	"testing"

	"github.com/hxp-ai/hxp/chat"
	"github.com/hxp-ai/hxp/infer"
)

// TestRenameParam: errors about the chat request built from a Responses request name
// the Responses request's fields, a json_schema's as text.format's own.
func TestRenameParam(t *testing.T) {
	in := &Input{Items: []Item{userItem("hi")}}
	for from, to := range map[string]string{
		infer.SchemaParam:              "text.format.schema",
		"response_format.json_schema":  "text.format",
		"response_format.type":         "text.format.type",
		"max_completion_tokens":        "max_output_tokens",
		"messages":                     "input",
		"messages[0].content":          "input[0].content",
		"temperature":                  "temperature",
		"tools[0].function.parameters": "tools[0].parameters",
	} {
		err := in.RenameParam(infer.Invalid(from, "%s is wrong", from), nil, nil)
		e := infer.AsError(err, "")
		if e.Param != to || e.Message != to+" is wrong" || e.Kind != infer.InvalidArgument {
			t.Errorf("%s: param %q, message %q; want %q", from, e.Param, e.Message, to)
		}
	}
	if err := in.RenameParam(nil, nil, nil); err != nil {
		t.Errorf("nil: %v", err)
	}
}

func userItem(text string) Item {
	return Item{Type: TypeMessage, Role: chat.RoleUser, Content: []Part{{Type: PartInputText, Text: text}}}
}

// TestRenameParamMessages: a chat message's error names where the message came from
// when instructions, a stored conversation, dropped reasoning items and function
// calls joined into one assistant turn shift the chat message indices: the input
// item (counting this request's items only), instructions or previous_response_id;
// a call's and a call output's fields by their item's names.
func TestRenameParamMessages(t *testing.T) {
	call := func(id string) Item {
		return Item{Type: TypeFunctionCall, CallID: id, Name: "f", Arguments: "{}"}
	}
	history := []Item{userItem("earlier"), {Type: TypeMessage, Role: chat.RoleAssistant, Content: []Part{{Type: PartOutputText, Text: "ok"}}}, call("h1")}
	items := []Item{
		{Type: TypeReasoning}, // input[0]: not sent
		call("c1"),            // input[1]: joins the history's assistant turn (messages[3] with instructions)
		{Type: TypeFunctionCallOutput, CallID: "h1", Output: "x"}, // input[2]
		userItem("now"), // input[3]
		call("c2"),      // input[4]: a new assistant turn
		call("c3"),      // input[5]: joins it
	}
	withAll := &Input{Request: Request{Instructions: "Be brief."}, Items: items}
	noInstructions := &Input{Items: items}
	cases := []struct {
		name    string
		in      *Input
		history []Item
		sent    int // messages the server put before the conversation
		from    string
		to      string
	}{
		{"instructions", withAll, history, 0, "messages[0].content", "instructions"},
		{"history message", withAll, history, 0, "messages[1].content", "previous_response_id"},
		{"history call", withAll, history, 0, "messages[2].tool_calls[0].function.arguments", "previous_response_id"},
		{"input call joined to the history's turn", withAll, history, 0, "messages[2].tool_calls[1].function.arguments", "input[1].arguments"},
		{"call output", withAll, history, 0, "messages[3].content", "input[2].output"},
		{"call output id", withAll, history, 0, "messages[3].tool_call_id", "input[2].call_id"},
		{"user message after them", withAll, history, 0, "messages[4].content", "input[3].content"},
		{"first call of a turn", withAll, history, 0, "messages[5].tool_calls[0].function.name", "input[4].name"},
		{"second call of a turn", withAll, history, 0, "messages[5].tool_calls[1].id", "input[5].call_id"},
		{"no instructions, no history", noInstructions, nil, 0, "messages[2].content", "input[3].content"},
		{"no instructions, no history: call output", noInstructions, nil, 0, "messages[1].content", "input[2].output"},
		{"no instructions, no history: calls", noInstructions, nil, 0, "messages[3].tool_calls[1].function.arguments", "input[5].arguments"},
		{"no instructions: the first message is the history", noInstructions, history, 0, "messages[0].content", "previous_response_id"},
		{"a message the server put first", noInstructions, nil, 1, "messages[3].content", "input[3].content"},
		{"the server's own message", noInstructions, nil, 1, "messages[0].content", "input"},
		{"past the conversation", noInstructions, nil, 0, "messages[9].role", "input"},
	}
	for _, c := range cases {
		var sent *infer.ChatRequest
		if c.sent > 0 {
			msgs, _ := conversation(c.in, c.history)
			sent = &infer.ChatRequest{Messages: make([]chat.Message, len(msgs)+c.sent)}
		}
		e := infer.AsError(c.in.RenameParam(infer.Invalid(c.from, "%s: bad", c.from), c.history, sent), "")
		if e.Param != c.to || e.Message != c.to+": bad" {
			t.Errorf("%s: %s became param %q, message %q; want %q", c.name, c.from, e.Param, e.Message, c.to)
		}
	}
}
